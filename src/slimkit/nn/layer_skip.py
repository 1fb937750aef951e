"""The layer-skipping baselines FFN-SkipLLM is compared with, as reversible module plumbing.

* :class:`BlockBypass` — static layer removal (ShortGPT, arXiv 2403.03853): a bypassed block returns
  its input; its attention never runs, so its KV cache stays empty.
* :class:`EarlyExitState` — per-token early exit with state propagation (CALM, arXiv 2207.07061): once
  a row's hidden state saturates (``cos(x_l, x_{l+1}) >= τ`` after block ``l >= min_layer``), every later
  block is fed that exited state and computes only what its KV cache needs from it: the input norm and
  the K/V projections (with rotary, as the family's attention applies it). Its query projection, output
  projection and MLP are :class:`~slimkit.nn.ffn_skip.FFNSkip` wrappers that skip the exited rows
  (gathering the rows still in flight), so the attention output of an exited row is zero and the block
  returns its input; the final norm and LM head read the exited state. The family's attention kernel
  still runs over an exited row's (zero) query: its cost grows with the context and is not a linear
  FLOP; leaving it out would mean re-writing every family's attention.

Both keep their state on the model (never globals) and are undone by :func:`remove_layer_skip_`. The
decisions use :func:`~slimkit.nn.skip_gate.saturation`; the thresholds are calibrated in
:mod:`slimkit.compress.skip.baselines`.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor, nn

from slimkit.core.errors import ConfigError
from slimkit.nn.ffn_skip import ALL, NONE, SOME, DecodeClock, FFNSkip, SkipSite, _replace
from slimkit.nn.skip_gate import saturation

EXIT_ATTR = "_slimkit_early_exit"


class BlockBypass(nn.Module):
    """A removed decoder block: ``forward(hidden_states, ...) -> hidden_states`` in the block's output format.

    Args:
        inner: the removed block (kept so that :func:`remove_layer_skip_` can put it back).
        output_len: 0 when the block returns its hidden states, ``n`` when it returns an ``n``-tuple.
    """

    def __init__(self, inner: nn.Module, output_len: int = 0) -> None:
        super().__init__()
        self.inner = inner
        self.output_len = output_len

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        hidden = args[0] if args else kwargs["hidden_states"]
        return hidden if self.output_len == 0 else (hidden, *([None] * (self.output_len - 1)))


def bypass_blocks_(model: nn.Module, blocks_path: str, layers: list[int], output_len: int = 0) -> None:
    """Replace the listed blocks by :class:`BlockBypass`."""
    blocks = model.get_submodule(blocks_path)
    for i in layers:
        if not isinstance(blocks[i], BlockBypass):
            blocks[i] = BlockBypass(blocks[i], output_len)
    from slimkit.models.adapters import forget_adapter

    forget_adapter(model)


def _hidden_of(output: Any) -> Tensor:
    return output[0] if isinstance(output, tuple) else output


def _with_hidden(output: Any, hidden: Tensor) -> Any:
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


class EarlyExitState:
    """Per-model state of the early-exit baseline: τ, the current pass, per-layer counts.

    The duck-typed state of the :class:`~slimkit.nn.ffn_skip.FFNSkip` wrappers on the query/output
    projections and MLPs of the blocks after ``min_layer`` (``mode``, ``index``, ``clock.rows``): in a
    block, the rows that exited earlier skip them and compute only their K/V from the copied state.

    Args:
        threshold: τ (above 1: never exit).
        warmup_tokens: full-model tokens at the start of each generation.
        min_layer: first block after which a row may exit.
        n_layers: decoder blocks.
    """

    graph_safe = False  # the wrappers' eager path only

    def __init__(self, *, threshold: float, warmup_tokens: int, min_layer: int, n_layers: int) -> None:
        self.threshold = float(threshold)
        self.min_layer = min_layer
        self.n_layers = n_layers
        self.clock = DecodeClock(warmup_tokens)
        self.active = False
        self.exited: list[bool] | None = None  # per row, this pass
        self.mode = ALL
        self.index: Tensor | None = None  # mode SOME: the rows still in flight
        self.inputs: Tensor | None = None
        self.recorded: list[Tensor] | None = None
        self.kv_only = True  # False: a block after the exit runs whole on the copied state (reference)
        self.copied = [0] * n_layers  # row-tokens whose block output was replaced by the exited state
        self.handles: list[Any] = []
        self.sites: list[Any] = []
        self.blocks_path = ""

    def begin_pass(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.active = self.clock.tick(args, kwargs)
        self.exited = [False] * self.clock.rows if self.active else None
        self.mode, self.index = ALL, None

    def before_block(
        self, layer: int, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self.inputs = args[0] if args else kwargs.get("hidden_states")
        self.mode, self.index = ALL, None
        exited = self.exited
        if not self.active or exited is None or not self.kv_only:
            return
        n_exited = sum(exited)
        if n_exited == len(exited):
            self.mode = NONE
        elif n_exited:
            self.mode = SOME
            device = self.inputs.device if isinstance(self.inputs, Tensor) else None
            self.index = torch.tensor([i for i, e in enumerate(exited) if not e], device=device)

    def after_block(
        self, layer: int, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
    ) -> Any:
        exited = self.exited
        if not self.active or self.inputs is None or exited is None:
            return None
        rows = self.clock.rows
        h_in, h_out = self.inputs, _hidden_of(output)
        replaced = None
        n_exited = sum(exited)
        if n_exited:
            self.copied[layer] += n_exited
            keep = torch.tensor(exited, device=h_out.device).view(rows, *([1] * (h_out.dim() - 1)))
            replaced = torch.where(keep, h_in.to(h_out.dtype), h_out)
        if self.min_layer <= layer < self.n_layers - 1 and n_exited < rows:
            a, b = h_in.reshape(rows, -1), h_out.reshape(rows, -1)
            flying = [i for i, e in enumerate(exited) if not e]
            if n_exited:
                index = torch.tensor(flying, device=h_out.device)
                a, b = a.index_select(0, index), b.index_select(0, index)
            cos = saturation(a, b)
            if self.recorded is not None:
                self.recorded.append(cos.detach().cpu())
            for i, hit in zip(flying, (cos >= self.threshold).tolist(), strict=True):
                exited[i] = exited[i] or hit
        self.mode, self.index = ALL, None
        return None if replaced is None else _with_hidden(output, replaced)

    def stats(self) -> dict[str, Any]:
        tokens = self.clock.generated
        return {
            "threshold": self.threshold,
            "warmup_tokens": self.clock.warmup_tokens,
            "min_layer": self.min_layer,
            "layers": self.n_layers,
            "tokens": tokens,
            "exit_ratio": sum(self.copied) / (self.n_layers * tokens) if tokens else 0.0,
            "layer_exit_ratio": [c / tokens if tokens else 0.0 for c in self.copied],
        }

    def reset_stats(self) -> None:
        self.copied = [0] * self.n_layers
        self.clock.reset_counts()


def attach_early_exit_(
    model: nn.Module,
    blocks_path: str,
    *,
    threshold: float,
    warmup_tokens: int,
    min_layer: int,
    sites: list[SkipSite] | None = None,
) -> EarlyExitState:
    """Hook every block for CALM-style early exit; returns the state.

    ``sites`` (from :func:`slimkit.compress.skip.sites.exit_sites`): the query/output projections and
    MLPs of the blocks after ``min_layer``, wrapped so that an exited row skips them and computes only
    its K/V. Without sites every later block runs whole on the copied state (the saving on paper only).

    Raises:
        ConfigError: the model has early exit already, or ``min_layer`` leaves no block to skip.
    """
    if isinstance(getattr(model, EXIT_ATTR, None), EarlyExitState):
        raise ConfigError("this model has early exit already; remove_layer_skip_(model) first")
    blocks = model.get_submodule(blocks_path)
    if min_layer >= len(blocks) - 1:
        raise ConfigError(f"min_layer={min_layer} leaves no block to exit before in {len(blocks)} blocks")
    state = EarlyExitState(
        threshold=threshold, warmup_tokens=warmup_tokens, min_layer=min_layer, n_layers=len(blocks)
    )
    state.blocks_path = blocks_path
    state.sites = list(sites or [])
    for site in state.sites:
        block = blocks[site.layer]
        for name, width in zip(site.modules, site.out_features, strict=True):
            wrapper = FFNSkip(block.get_submodule(name), width, site.layer)
            wrapper.state = state  # type: ignore[assignment]
            _replace(block, name, wrapper)
    for i, block in enumerate(blocks):
        state.handles.append(
            block.register_forward_pre_hook(functools.partial(state.before_block, i), with_kwargs=True)
        )
        state.handles.append(
            block.register_forward_hook(functools.partial(state.after_block, i), with_kwargs=True)
        )
    state.handles.append(model.register_forward_pre_hook(state.begin_pass, with_kwargs=True))
    setattr(model, EXIT_ATTR, state)
    if state.sites:
        from slimkit.models.adapters import forget_adapter

        forget_adapter(model)
    return state


def get_early_exit_state(model: nn.Module) -> EarlyExitState | None:
    state = getattr(model, EXIT_ATTR, None)
    return state if isinstance(state, EarlyExitState) else None


def remove_layer_skip_(model: nn.Module) -> nn.Module:
    """Put bypassed blocks back and remove the early-exit hooks; returns ``model``."""
    state = get_early_exit_state(model)
    if state is not None:
        for h in state.handles:
            h.remove()
        blocks = model.get_submodule(state.blocks_path) if state.sites else None
        for site in state.sites:
            for name in site.modules:
                wrapper = blocks[site.layer].get_submodule(name)
                if isinstance(wrapper, FFNSkip):
                    _replace(blocks[site.layer], name, wrapper.inner)
        delattr(model, EXIT_ATTR)
    for module in list(model.modules()):
        if isinstance(module, nn.ModuleList):
            for i, child in enumerate(module):
                if isinstance(child, BlockBypass):
                    module[i] = child.inner
    from slimkit.models.adapters import forget_adapter

    forget_adapter(model)
    return model


__all__ = [
    "BlockBypass",
    "EarlyExitState",
    "attach_early_exit_",
    "bypass_blocks_",
    "get_early_exit_state",
    "remove_layer_skip_",
]
