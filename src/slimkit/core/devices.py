"""Devices: validate a user's device name, find where a model lives.

Shared by loading, training, compression and evaluation, so "cuda asked for but not available" reads
the same everywhere.
"""

from __future__ import annotations

import torch
from torch import nn

from slimkit.core.errors import ConfigError

COMPUTE_DEVICES = ("cpu", "cuda", "mps")


def resolve_device(device: str | torch.device) -> torch.device:
    """A ``torch.device`` that exists on this machine.

    Raises:
        ConfigError: not a device name, or a CUDA/MPS device that is not available.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device={device!r} is not a torch device (e.g. 'cpu', 'cuda', 'cuda:1')") from None
    if dev.type not in COMPUTE_DEVICES:
        # "meta" holds no data and the rest have no kernels here: the work would fail half-way
        raise ConfigError(
            f"device={device!r} cannot run slimkit's work; use one of {', '.join(COMPUTE_DEVICES)}"
        )
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} was asked for but CUDA is not available here; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device={device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device={device!r} was asked for but MPS is not available here; use --device cpu")
    return dev


def model_device(model: nn.Module, device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else the device of the model's first parameter (CPU for a parameterless model)."""
    if device is not None:
        return torch.device(device)
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")
