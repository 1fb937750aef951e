"""Small plumbing shared by the evaluators: where a model lives, eval mode for the duration of a run."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from slimkit.core.devices import model_device
from slimkit.models.limits import max_positions

__all__ = ["eval_mode", "max_positions", "model_device"]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run in eval mode without autograd, then restore the caller's train/eval state.

    Dropout left on would make every metric random; restoring keeps an evaluation inside a training
    loop from silently switching training off.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)
