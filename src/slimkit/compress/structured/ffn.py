"""The FFN blocks of any discovered causal LM: neuron masks, and physical removal of neurons.

Discovery (:mod:`slimkit.models.discovery`) names every decoder block's MLP linears by role: gated
``gate, up -> down`` (LLaMA, Mistral, Qwen) or ungated ``fc1 -> fc2`` (OPT's ``fc1/fc2`` on the block,
GPT-2's ``Conv1D`` ``c_fc/c_proj``, GPT-NeoX, Falcon). :func:`ffn_sites` turns that into one
:class:`FFNSite` per block; everything here works on sites, never on module names.

* :class:`NeuronMasks` multiplies the input of each block's output projection (the intermediate
  activation ``h [.., I]``) by a 0/1 mask with a forward pre-hook: a masked neuron contributes nothing
  and its parameters get zero gradient, exactly as if it were gone.
* :func:`shrink_ffn_` removes the masked neurons for real: each input projection keeps the rows
  ``keep`` of its weight ``[I, H]`` (and bias), the output projection the columns ``keep`` of
  ``[H, I]`` (GPT-2's ``Conv1D`` stores the transposes; the slicing follows). The parameters stay the
  same ``nn.Parameter`` objects with smaller data, so an optimizer built over them keeps working, and
  the optimizer's per-parameter state (Adam's moments) is sliced the same way: the surviving neurons
  carry their state over the removal. Every block keeps the same width, so the model's config gets
  the new ``intermediate_size`` (``ffn_dim``, ``n_inner``) and the saved directory is an ordinary
  dense model that plain ``transformers`` loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from slimkit.core.errors import ConfigError, UnsupportedArchitectureError
from slimkit.models.adapters import get_adapter
from slimkit.models.discovery import is_conv1d

# config fields that hold the FFN width in the families transformers ships
_WIDTH_FIELDS = ("intermediate_size", "ffn_dim", "n_inner", "ffn_hidden_size", "d_ff")
# the MLP layouts whose neurons are one row of each input projection and one column of the output one
_KNOWN_LAYOUTS = {("gate", "up", "down"), ("fc1", "fc2")}


@dataclass(frozen=True)
class FFNSite:
    """One decoder block's FFN: its input projections (gate, up / fc1), its output projection, names."""

    index: int
    inputs: tuple[nn.Module, ...]
    output: nn.Module
    input_names: tuple[str, ...]
    output_name: str

    @property
    def width(self) -> int:
        return _out_rows(self.output)

    def parameters(self) -> list[tuple[str, Tensor, int]]:
        """``(name, parameter, neuron dim)`` of every tensor a neuron owns a slice of."""
        found: list[tuple[str, Tensor, int]] = []
        for name, mod in zip(self.input_names, self.inputs, strict=True):
            # a Linear's weight is [I, H] (neurons on dim 0); a Conv1D's is [H, I]
            found.append((f"{name}.weight", mod.weight, 1 if is_conv1d(mod) else 0))
            if getattr(mod, "bias", None) is not None:
                found.append((f"{name}.bias", mod.bias, 0))
        found.append((f"{self.output_name}.weight", self.output.weight, 0 if is_conv1d(self.output) else 1))
        return found


def _out_rows(output: nn.Module) -> int:
    """The intermediate width an output projection reads."""
    return int(output.weight.shape[0] if is_conv1d(output) else output.weight.shape[1])


def ffn_sites(model: nn.Module) -> list[FFNSite]:
    """One :class:`FFNSite` per decoder block, found by discovery.

    Raises:
        UnsupportedArchitectureError: an MLP that is not ``gate, up -> down`` or ``fc1 -> fc2`` (a fused
            ``gate_up`` projection, a mixture of experts, no MLP), or blocks of different widths.
    """
    adapter = get_adapter(model)
    roles = tuple(adapter.mlp_roles)
    if roles not in _KNOWN_LAYOUTS:
        raise UnsupportedArchitectureError(
            f"architecture {adapter.family!r}: its MLP linears are {list(roles) or 'none'}; structured FFN "
            "pruning knows gated (gate, up -> down) and ungated (fc1 -> fc2) MLPs with separate projections"
        )
    sites = []
    for i, block in enumerate(adapter.blocks(model)):
        linears = adapter.block_linears(block)
        prefix = adapter.block_prefix(i)
        ins = roles[:-1]
        sites.append(
            FFNSite(
                index=i,
                inputs=tuple(linears[r] for r in ins),
                output=linears[roles[-1]],
                input_names=tuple(f"{prefix}.{adapter.roles[r]}" for r in ins),
                output_name=f"{prefix}.{adapter.roles[roles[-1]]}",
            )
        )
    widths = {s.width for s in sites}
    if len(widths) != 1:
        raise UnsupportedArchitectureError(
            f"architecture {adapter.family!r}: blocks have FFN widths {sorted(widths)}; one width is needed"
        )
    return sites


def ffn_width(model: nn.Module) -> int:
    """The intermediate width every block's FFN has."""
    return ffn_sites(model)[0].width


def width_field(config: Any, width: int) -> str:
    """The name of the config field that holds the FFN width ``width`` (``intermediate_size``, ...).

    Raises:
        UnsupportedArchitectureError: no known field holds it.
    """
    for name in _WIDTH_FIELDS:
        value = getattr(config, name, "absent")
        hidden = getattr(config, "hidden_size", None)
        if value == width or (value is None and hidden is not None and 4 * hidden == width):
            return name  # GPT-2's n_inner / Falcon's ffn_hidden_size = None mean 4 x hidden
    raise UnsupportedArchitectureError(
        f"{type(config).__name__}: no config field among {list(_WIDTH_FIELDS)} holds the FFN width {width}"
    )


# -- masks --------------------------------------------------------------------------------------------------
class NeuronMasks:
    """0/1 masks ``[I]`` on every block's intermediate activation, applied by forward pre-hooks.

    ``masks[i]`` is a bool tensor over block ``i``'s neurons; :meth:`attach` installs the hooks,
    :meth:`detach` removes them (the weights were never touched).
    """

    def __init__(self, sites: Sequence[FFNSite]) -> None:
        self.sites = list(sites)
        self.masks = [torch.ones(s.width, dtype=torch.bool) for s in self.sites]
        self._handles: list[Any] = []

    def attach(self) -> NeuronMasks:
        if not self._handles:
            for i, site in enumerate(self.sites):
                self._handles.append(site.output.register_forward_pre_hook(self._hook(i)))
        return self

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _hook(self, i: int):
        def pre_hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
            h = args[0]
            mask = self.masks[i].to(device=h.device, dtype=h.dtype)
            return (h * mask, *args[1:])

        return pre_hook

    def alive(self) -> list[int]:
        return [int(m.sum()) for m in self.masks]

    def keep_indices(self) -> list[Tensor]:
        return [torch.nonzero(m, as_tuple=False).flatten() for m in self.masks]


# -- physical removal ---------------------------------------------------------------------------------------
@torch.no_grad()
def shrink_ffn_(
    model: nn.Module,
    keep: Sequence[Tensor],
    *,
    optimizer: torch.optim.Optimizer | None = None,
    sites: Sequence[FFNSite] | None = None,
) -> int:
    """Keep only the neurons ``keep[i]`` (sorted indices, one equal-length set per block) of every FFN.

    Args:
        model: changed in place; its config's width field is set to the new width.
        keep: per block, the indices of the neurons to keep, each of the same length ``w``.
        optimizer: when given, every per-parameter state tensor shaped like a shrunk parameter is
            sliced with it (AdamW's ``exp_avg`` / ``exp_avg_sq``), so training continues seamlessly.
        sites: the model's sites (default: :func:`ffn_sites`).

    Returns:
        The new width ``w``.

    Raises:
        ConfigError: the wrong number of index sets, sets of different lengths, or out-of-range indices.
    """
    sites = list(sites) if sites is not None else ffn_sites(model)
    if len(keep) != len(sites):
        raise ConfigError(f"keep has {len(keep)} index sets for {len(sites)} FFN blocks")
    widths = {int(k.numel()) for k in keep}
    if len(widths) != 1:
        raise ConfigError(f"every block must keep the same number of neurons, got {sorted(widths)}")
    new_width = widths.pop()
    old_width = sites[0].width
    if new_width < 1:
        raise ConfigError("at least one neuron per block must be kept")
    field = width_field(model.config, old_width)
    for site, idx in zip(sites, keep, strict=True):
        idx = idx.to(torch.long)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= site.width):
            raise ConfigError(f"block {site.index}: neuron index outside [0, {site.width})")
        for _, param, dim in site.parameters():
            state = optimizer.state.get(param) if optimizer is not None else None
            old_shape = param.shape
            param.data = param.data.index_select(dim, idx.to(param.device)).contiguous()
            if param.grad is not None:
                param.grad = param.grad.index_select(dim, idx.to(param.grad.device)).contiguous()
            for key, value in (state or {}).items():
                if isinstance(value, Tensor) and value.shape == old_shape:
                    state[key] = value.index_select(dim, idx.to(value.device)).contiguous()
        for mod in site.inputs:
            _set_features(mod, out_features=new_width)
        _set_features(site.output, in_features=new_width)
    setattr(model.config, field, new_width)
    return new_width


def _set_features(mod: nn.Module, *, in_features: int | None = None, out_features: int | None = None) -> None:
    if is_conv1d(mod):
        if out_features is not None:
            mod.nf = out_features
        if in_features is not None and hasattr(mod, "nx"):
            mod.nx = in_features
        return
    if out_features is not None:
        mod.out_features = out_features
    if in_features is not None:
        mod.in_features = in_features


__all__ = ["FFNSite", "NeuronMasks", "ffn_sites", "ffn_width", "shrink_ffn_", "width_field"]
