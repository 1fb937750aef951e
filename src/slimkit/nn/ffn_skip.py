"""``FFNSkip``: a reversible wrapper that skips a decoder layer's FFN for the rows whose state saturated.

FFN-SkipLLM — "FFN-SkipLLM: A Hidden Gem for Autoregressive Decoding with Adaptive Feed Forward
Skipping" (Jaiswal et al., arXiv 2404.03865). During greedy decoding, for each row of the batch and
each generated token ``t``:

* the first ``warmup_tokens`` tokens (``t < warmup_tokens``; the prompt pass is token 0) run the full
  model, and so does every forward over more than one new position (a prompt or a scored sequence);
* in the eligible layers (all but the first ``cold_start`` and last ``cold_end``; only these are
  wrapped), after a layer's FFN ran, ``sat = cos(h, h + u)`` (:func:`~slimkit.nn.skip_gate.saturation`,
  ``h`` the residual entering the FFN sub-block, ``u`` its update); ``sat >= τ`` skips the FFNs of the
  next ``extent`` eligible layers (:func:`~slimkit.nn.skip_gate.next_skip_left`);
* a skipped FFN returns a zero update, so the residual passes unchanged. Attention, and with it every
  layer's KV cache, always runs: no state is ever copied.

Rows decide separately: a wrapper gathers the rows that run its FFN (``index_select``), runs the FFN
on them alone and scatters the result into a zero update, so a batch costs what its running rows cost.

The wrapped unit comes from discovery (:mod:`slimkit.compress.skip.handler`): the module holding a
block's MLP linears (``mlp``), or, where those linears sit on the block itself (OPT's ``fc1``/``fc2``),
each of them. ``u`` is read where it enters the residual: the output of the MLP, or of the module the
block feeds that output to (Gemma's ``post_feedforward_layernorm``, Phi-3's dropout); a zero update
stays zero through it (an RMSNorm of zeros is zero). ``h = h_out - u`` with ``h_out`` the block output.

Per-generation state lives in one :class:`SkipState` attached to the model (never a global). A forward
whose KV cache is empty starts a new generation; ``with skip_session(model):`` also starts one.
Statistics accumulate across generations until :func:`reset_skip_stats`; :func:`skip_stats` reads them.
:func:`remove_skip_` puts the original modules back and removes every hook: the exact dense model.

Saved models record ``"restore": ["ffn-skip"]`` and ``"ffn-skip": {threshold, warmup_tokens, extent,
n_layers, blocks_path, sites}`` in ``slimkit.json`` (:func:`ffn_skip_metadata`); the restorer
:func:`restore_ffn_skip` wraps the same modules again before the weights are loaded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from slimkit.core.errors import ConfigError, ModelLoadError
from slimkit.models.metadata import register_restorer
from slimkit.nn.skip_gate import next_skip_left, saturation

RESTORER = "ffn-skip"
STATE_ATTR = "_slimkit_ffn_skip"
CACHE_KWARGS = (
    "past_key_values",
    "cache",
    "past_key_value",
    "layer_past",
)  # names across transformers versions


@dataclasses.dataclass(frozen=True)
class SkipSite:
    """Where one eligible layer's FFN is wrapped (names relative to the block).

    Attributes:
        layer: the block index.
        modules: the wrapped module names (``("mlp",)``, or ``("fc1", "fc2")`` for MLP linears on the block).
        out_features: each wrapped module's output width (what a zero update is made of).
        update_from: the module whose output is the FFN's residual update ``u``: the last wrapped
            module, or the module the block feeds it to (``post_feedforward_layernorm``).
    """

    layer: int
    modules: tuple[str, ...]
    out_features: tuple[int, ...]
    update_from: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "modules": list(self.modules),
            "out_features": list(self.out_features),
            "update_from": self.update_from,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SkipSite:
        return cls(
            int(data["layer"]),
            tuple(str(m) for m in data["modules"]),
            tuple(int(n) for n in data["out_features"]),
            str(data["update_from"]),
        )


def cache_length(past: Any) -> int:
    """Positions already in a KV cache (``Cache`` object, legacy tuple, or ``None``)."""
    if past is None:
        return 0
    if hasattr(past, "get_seq_length"):
        return int(past.get_seq_length())
    try:
        return int(past[0][0].shape[-2])
    except (IndexError, TypeError, AttributeError):
        return 0


def new_positions(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[int, int]:
    """``(batch, new positions)`` of a causal LM forward, from ``input_ids`` or ``inputs_embeds``."""
    x = kwargs.get("input_ids")
    if x is None:
        x = kwargs.get("inputs_embeds")
    if x is None and args:
        x = args[0]
    if not isinstance(x, Tensor) or x.dim() < 2:
        return 0, 0
    return int(x.shape[0]), int(x.shape[1])


class DecodeClock:
    """Which generated token the current forward produces (shared by FFN-skip and early exit).

    A forward with an empty cache is a prompt pass (token 0 of a new generation); each later forward
    over one new position produces the next token. ``steps_skippable`` is True for a one-position
    forward at or past ``warmup_tokens``.
    """

    def __init__(self, warmup_tokens: int) -> None:
        self.warmup_tokens = warmup_tokens
        self.step = -1
        self.rows = 0
        self.positions = 0
        self.force_new = False
        self.generated = 0  # row-tokens generated since the last reset (prompt passes count one per row)
        self.skippable_rows = 0  # of those, row-tokens past the warm-up

    def tick(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """Advance on a model forward; returns whether this forward may skip."""
        rows, positions = new_positions(args, kwargs)
        past = next((kwargs[k] for k in CACHE_KWARGS if kwargs.get(k) is not None), None)
        new = self.force_new or cache_length(past) == 0 or rows != self.rows
        self.force_new = False
        self.step = 0 if new else self.step + 1
        self.rows, self.positions = rows, positions
        if new or positions == 1:
            self.generated += rows
        skippable = not new and positions == 1 and self.step >= self.warmup_tokens
        if skippable:
            self.skippable_rows += rows
        return skippable

    def reset_counts(self) -> None:
        self.generated = self.skippable_rows = 0


ALL, NONE, SOME = "all", "none", "some"  # which rows run the current layer's FFN


class SkipState:
    """The per-model state of FFN-skip: the gate's settings, the current pass, the statistics.

    Two gates make the same per-row decisions:

    * **eager** (default): the countdown is a Python list, one host read per eligible layer (the
      triggers of the rows that ran); a layer's FFN runs on all rows, on none (no call at all), or on
      the gathered running rows. When the whole batch agrees nothing is gathered and no index is built.
    * **graph-safe** (``graph_safe=True``, for ``torch.compile``): tensor-only state and no Python
      branch on tensor values. The FFN runs under ``torch.cond`` when any row runs (so a batch that
      skips as a whole skips the work) and its update is masked per row with ``torch.where``.

    Args:
        threshold: τ; a value above 1 never skips.
        warmup_tokens: full-model tokens at the start of each generation (>= 1).
        extent: eligible FFNs skipped after a trigger; ``None``: all up to the cold region.
        n_layers: decoder blocks in the model.
        sites: the eligible layers, in order.
        blocks_path: dotted path of the blocks' ``ModuleList``.
    """

    def __init__(
        self,
        *,
        threshold: float,
        warmup_tokens: int,
        extent: int | None,
        n_layers: int,
        sites: list[SkipSite],
        blocks_path: str,
    ) -> None:
        self.threshold = float(threshold)
        self.extent = extent
        self.n_layers = n_layers
        self.sites = list(sites)
        self.blocks_path = blocks_path
        self.clock = DecodeClock(warmup_tokens)
        self.handles: list[Any] = []
        self.position = {s.layer: i for i, s in enumerate(self.sites)}
        self.active = False
        self.left: list[int] | None = None  # eager: per-row FFNs still to skip
        self.mode = ALL  # eager: which rows run the current layer's FFN
        self.index: Tensor | None = None  # eager, mode SOME: the running rows
        self.update: Tensor | None = None
        self.recorded: list[Tensor] | None = None  # saturations seen, while calibrating
        self.skipped = [0] * n_layers
        self.graph_safe = False
        # graph-safe: run the FFN under torch.cond so that a batch skipping as a whole skips the work. Off by
        # default: with transformers 5.25 and torch 2.13, dynamo then fails inside the attention that
        # follows (the `kernels` hub wrapper resets a ContextVar dynamo cannot trace); docs/ffn_skip.md
        self.use_cond = False
        self.t_left: Tensor | None = None  # graph-safe: per-row countdown [rows]
        self.t_run: Tensor | None = None  # graph-safe: rows running the current FFN [rows] bool
        self.t_active: Tensor | None = None  # graph-safe: this pass may skip, [] bool
        self.t_skipped: Tensor | None = None  # graph-safe: skipped row-layers per block [n_layers]

    @property
    def warmup_tokens(self) -> int:
        return self.clock.warmup_tokens

    @property
    def full_extent(self) -> int:
        return self.extent if self.extent is not None else len(self.sites)

    def skipping(self) -> list[bool] | None:
        """Rows skipping the current layer's FFN (``None`` outside a skippable pass): for tests and probes."""
        if self.graph_safe:
            return None if self.t_run is None else (~self.t_run).tolist()
        if not self.active or self.left is None:
            return None
        return [n > 0 for n in self.left]

    def set_graph_safe(self, on: bool = True) -> None:
        """Switch between the eager and the graph-safe gate (same decisions; see the class docstring)."""
        self.skipped = self.skipped_counts()  # keep what the graph-safe gate counted
        self.graph_safe = bool(on)
        self.t_left = self.t_run = self.t_active = self.t_skipped = None

    # -- hooks ----------------------------------------------------------------------------------------
    def begin_pass(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.active = self.clock.tick(args, kwargs)
        self.left = None
        self.mode = ALL
        self.index = None
        if self.graph_safe:
            self._begin_graph_pass(module)

    def before_block(self, layer: int, module: nn.Module, args: tuple[Any, ...]) -> None:
        self.update = None
        if self.graph_safe:
            self._before_graph_block(layer)
            return
        if not self.active:
            self.mode = ALL
            return
        if self.left is None:
            self.left = [0] * self.clock.rows
        n_skip = sum(1 for n in self.left if n)
        self.skipped[layer] += n_skip
        if n_skip == 0:
            self.mode = ALL
        elif n_skip == len(self.left):
            self.mode = NONE
        else:
            self.mode = SOME
            device = next((a.device for a in args if isinstance(a, Tensor)), None)
            self.index = torch.tensor([i for i, n in enumerate(self.left) if n == 0], device=device)

    def after_block(self, layer: int, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if self.graph_safe:
            self._after_graph_block(layer, output)
            return
        if not self.active or self.left is None:
            return
        left = self.left
        if self.mode == NONE or self.update is None or self.position[layer] == len(self.sites) - 1:
            # nothing to measure (no row ran, or the last eligible layer: nothing follows to skip)
            self.left = [n - 1 if n else 0 for n in left]
            self.mode, self.index = ALL, None
            return
        rows = self.clock.rows
        h_out = (output[0] if isinstance(output, tuple) else output).reshape(rows, -1)
        u = self.update.reshape(rows, -1).to(h_out.dtype)
        if self.mode == SOME:
            h_out, u = h_out.index_select(0, self.index), u.index_select(0, self.index)
        cos = saturation(h_out - u, h_out)
        if self.recorded is not None:
            self.recorded.append(cos.detach().cpu())
        triggered = iter((cos >= self.threshold).tolist())  # the one host read of this layer
        extent = self.full_extent
        self.left = [n - 1 if n else (extent if next(triggered) else 0) for n in left]
        self.mode, self.index = ALL, None

    def record_update(self, module: nn.Module, args: tuple[Any, ...], output: Tensor) -> None:
        self.update = output

    # -- the graph-safe gate --------------------------------------------------------------------------
    def _begin_graph_pass(self, model: nn.Module) -> None:
        # runs in Python before the (compiled) forward: the only place with host-side control flow
        device = next(model.parameters()).device
        rows = self.clock.rows
        if self.t_left is None or self.t_left.shape[0] != rows or self.t_left.device != device:
            self.t_left = torch.zeros(rows, dtype=torch.long, device=device)
            self.t_active = torch.zeros((), dtype=torch.bool, device=device)
            self.t_run = torch.ones(rows, dtype=torch.bool, device=device)
        if self.t_skipped is None or self.t_skipped.device != device:
            self.t_skipped = torch.zeros(self.n_layers, dtype=torch.long, device=device)
        self.t_left.zero_()
        self.t_active.fill_(self.active)

    def _before_graph_block(self, layer: int) -> None:
        if self.t_left is None or self.t_active is None or self.t_skipped is None:
            return  # not inside a pass begun by the model's hook (a block called on its own)
        run = (self.t_left == 0) | ~self.t_active
        self.t_run = run
        self.t_skipped[layer] += (~run).long().sum()

    def _after_graph_block(self, layer: int, output: Any) -> None:
        if self.t_left is None or self.t_run is None or self.update is None:
            return
        rows = self.t_left.shape[0]
        h_out = (output[0] if isinstance(output, tuple) else output).reshape(rows, -1)
        u = self.update.reshape(rows, -1).to(h_out.dtype)
        last = self.position[layer] == len(self.sites) - 1  # nothing follows to skip: no trigger
        cos = None if last else saturation(h_out - u, h_out)
        left = next_skip_left(self.t_left, self.t_run, cos, self.threshold, self.full_extent)
        self.t_left.copy_(torch.where(self.t_active, left, torch.zeros_like(left)))

    # -- statistics -----------------------------------------------------------------------------------
    def skipped_counts(self) -> list[int]:
        if self.t_skipped is None:
            return list(self.skipped)
        return [a + int(b) for a, b in zip(self.skipped, self.t_skipped.tolist(), strict=True)]

    def stats(self) -> dict[str, Any]:
        """Skip counts and ratios since the last reset (see :func:`skip_stats`)."""
        tokens = self.clock.generated
        per_layer = self.skipped_counts()
        skipped = sum(per_layer)
        eligible = len(self.sites) * self.clock.skippable_rows
        return {
            "threshold": self.threshold,
            "warmup_tokens": self.warmup_tokens,
            "extent": self.extent,
            "layers": self.n_layers,
            "eligible_layers": [s.layer for s in self.sites],
            "tokens": tokens,
            "tokens_past_warmup": self.clock.skippable_rows,
            "ffn_skipped": skipped,
            "skip_ratio": skipped / (self.n_layers * tokens) if tokens else 0.0,
            "eligible_skip_ratio": skipped / eligible if eligible else 0.0,
            "layer_skip_ratio": [s / tokens if tokens else 0.0 for s in per_layer],
        }

    def reset_stats(self) -> None:
        self.skipped = [0] * self.n_layers
        if self.t_skipped is not None:
            self.t_skipped.zero_()
        self.clock.reset_counts()


class FFNSkip(nn.Module):
    """Runs ``inner`` on the rows :class:`SkipState` lets through; zeros for the rest.

    The state is duck-typed (``mode``, ``index``, ``clock.rows``, ``graph_safe``): the early-exit
    baseline (:mod:`slimkit.nn.layer_skip`) wraps the query/output projections and MLPs of the blocks
    after an exit with the same module, so an exited row computes only its K/V there.

    ``x: [rows, ..., in] -> [rows, ..., out_features]``; rows are the batch (the leading dimension,
    also when a block flattens ``[batch, 1, H]`` to ``[batch, H]`` as OPT does).

    Args:
        inner: the wrapped MLP (or MLP linear).
        out_features: its output width.
        layer: the block index (for the statistics).
    """

    def __init__(self, inner: nn.Module, out_features: int, layer: int) -> None:
        super().__init__()
        self.inner = inner
        self.out_features = out_features
        self.layer = layer
        self.state: SkipState | None = None  # set by attach_ffn_skip_; a plain attribute, not a submodule

    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        state = self.state
        if state is None:
            return self.inner(x, *args, **kwargs)
        if state.graph_safe:
            return self._graph_forward(state, x, *args, **kwargs)
        if state.mode == ALL or x.shape[0] != state.clock.rows:
            return self.inner(x, *args, **kwargs)
        out = x.new_zeros((*x.shape[:-1], self.out_features))
        if state.mode == SOME:
            rows = state.index
            out.index_copy_(0, rows, self.inner(x.index_select(0, rows), *args, **kwargs).to(out.dtype))
        return out

    def _graph_forward(self, state: SkipState, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        run = state.t_run
        if run is None or run.shape[0] != x.shape[0]:
            return self.inner(x, *args, **kwargs)
        zeros = x.new_zeros((*x.shape[:-1], self.out_features))

        def compute(x: Tensor) -> Tensor:
            return self.inner(x, *args, **kwargs).to(zeros.dtype)

        def skip(x: Tensor) -> Tensor:
            return zeros.clone()

        # the whole batch skipping skips the work; otherwise every row runs and the update is masked
        out = torch.cond(run.any(), compute, skip, (x,)) if state.use_cond else compute(x)
        return torch.where(run.view(-1, *([1] * (out.dim() - 1))), out, zeros)

    def extra_repr(self) -> str:
        return f"layer={self.layer}, out_features={self.out_features}"


def _get(root: nn.Module, path: str) -> nn.Module:
    return root.get_submodule(path) if path else root


def _replace(root: nn.Module, path: str, new: nn.Module) -> nn.Module:
    parent_name, _, child = path.rpartition(".")
    parent = _get(root, parent_name)
    old = getattr(parent, child)
    setattr(parent, child, new)
    return old


def get_skip_state(model: nn.Module) -> SkipState | None:
    """The :class:`SkipState` of a model with FFN-skip wrappers, else ``None``."""
    state = getattr(model, STATE_ATTR, None)
    return state if isinstance(state, SkipState) else None


def attach_ffn_skip_(
    model: nn.Module,
    sites: list[SkipSite],
    *,
    blocks_path: str,
    n_layers: int,
    threshold: float,
    warmup_tokens: int,
    extent: int | None,
) -> SkipState:
    """Wrap every site's modules in :class:`FFNSkip` and hook the model; returns the shared state.

    Raises:
        ConfigError: the model has FFN-skip already, or no site is given.
    """
    if get_skip_state(model) is not None:
        raise ConfigError("this model has FFN-skip wrappers already; remove_skip_(model) first")
    if not sites:
        raise ConfigError("FFN-skip needs at least one eligible layer")
    state = SkipState(
        threshold=threshold,
        warmup_tokens=warmup_tokens,
        extent=extent,
        n_layers=n_layers,
        sites=sites,
        blocks_path=blocks_path,
    )
    blocks = _get(model, blocks_path)
    for site in sites:
        block = blocks[site.layer]
        for name, width in zip(site.modules, site.out_features, strict=True):
            wrapper = FFNSkip(_get(block, name), width, site.layer)
            wrapper.state = state
            _replace(block, name, wrapper)
        source = _get(block, site.update_from)
        state.handles.append(source.register_forward_hook(state.record_update))
        state.handles.append(
            block.register_forward_pre_hook(functools.partial(state.before_block, site.layer))
        )
        state.handles.append(block.register_forward_hook(functools.partial(state.after_block, site.layer)))
    state.handles.append(model.register_forward_pre_hook(state.begin_pass, with_kwargs=True))
    setattr(model, STATE_ATTR, state)
    _forget_adapter(model)
    return state


def _forget_adapter(model: nn.Module) -> None:
    # the module tree changed, so a cached discovery result names paths that moved (mlp -> mlp.inner)
    from slimkit.models.adapters import forget_adapter

    forget_adapter(model)


def remove_skip_(model: nn.Module) -> nn.Module:
    """Put the original modules back and remove every FFN-skip hook (the exact dense model); returns it."""
    state = get_skip_state(model)
    if state is None:
        return model
    for handle in state.handles:
        handle.remove()
    blocks = _get(model, state.blocks_path)
    for site in state.sites:
        for name in site.modules:
            wrapper = _get(blocks[site.layer], name)
            if isinstance(wrapper, FFNSkip):
                _replace(blocks[site.layer], name, wrapper.inner)
    delattr(model, STATE_ATTR)
    _forget_adapter(model)
    return model


def skip_stats(model: nn.Module) -> dict[str, Any] | None:
    """What FFN-skip did since the last reset, or ``None`` for a model without it.

    ``skip_ratio``: skipped FFN blocks / (layers x generated row-tokens), warm-up tokens and cold layers
    included in the denominator (the paper's "fraction of FFN blocks skipped"); ``eligible_skip_ratio``:
    over eligible layers and tokens past the warm-up; ``layer_skip_ratio``: per block over generated
    row-tokens. A row that finished early (EOS) while its batch decodes on is still counted.
    """
    state = get_skip_state(model)
    return None if state is None else state.stats()


def reset_skip_stats(model: nn.Module) -> None:
    state = get_skip_state(model)
    if state is not None:
        state.reset_stats()


def set_threshold_(model: nn.Module, threshold: float) -> None:
    """Change τ of a model with FFN-skip (calibration tries several)."""
    state = get_skip_state(model)
    if state is None:
        raise ConfigError("this model has no FFN-skip wrappers")
    state.threshold = float(threshold)


def check_generation_length(warmup_tokens: int, max_new_tokens: int) -> None:
    """Refuse a generation no longer than the warm-up: it would never skip.

    Raises:
        ConfigError: ``max_new_tokens <= warmup_tokens``.
    """
    if max_new_tokens <= warmup_tokens:
        raise ConfigError(
            f"warmup_tokens={warmup_tokens} is not shorter than the generation (max_new_tokens={max_new_tokens}): "
            "FFN-skip would never skip; generate more tokens or lower warmup_tokens"
        )


@contextlib.contextmanager
def skip_session(model: nn.Module, *, max_new_tokens: int | None = None) -> Iterator[SkipState]:
    """A new generation starts with the next forward (whatever its cache holds); yields the state.

    Raises:
        ConfigError: the model has no FFN-skip, or ``max_new_tokens`` does not exceed the warm-up.
    """
    state = get_skip_state(model)
    if state is None:
        raise ConfigError("this model has no FFN-skip wrappers")
    if max_new_tokens is not None:
        check_generation_length(state.warmup_tokens, max_new_tokens)
    state.clock.force_new = True
    try:
        yield state
    finally:
        state.clock.force_new = True


def ffn_skip_metadata(model: nn.Module) -> dict[str, Any]:
    """What :func:`restore_ffn_skip` needs (``{}`` for a model without FFN-skip)."""
    state = get_skip_state(model)
    if state is None:
        return {}
    return {
        "threshold": state.threshold,
        "warmup_tokens": state.warmup_tokens,
        "extent": state.extent,
        "n_layers": state.n_layers,
        "blocks_path": state.blocks_path,
        "sites": [s.to_dict() for s in state.sites],
    }


@register_restorer(RESTORER)
def restore_ffn_skip(model: nn.Module, model_dir: Path, meta: dict[str, Any]) -> None:
    """Wrap the modules ``meta["ffn-skip"]`` lists again, with the recorded τ, warm-up and extent.

    Raises:
        ModelLoadError: the entry is missing or malformed, or names a module the model lacks.
    """
    entry = meta.get(RESTORER)
    if not isinstance(entry, dict):
        raise ModelLoadError(
            f"{model_dir}: slimkit.json asks to restore 'ffn-skip' but has no ffn-skip entry"
        )
    try:
        sites = [SkipSite.from_dict(s) for s in entry["sites"]]
        extent = entry.get("extent")
        attach_ffn_skip_(
            model,
            sites,
            blocks_path=str(entry["blocks_path"]),
            n_layers=int(entry["n_layers"]),
            threshold=float(entry["threshold"]),
            warmup_tokens=int(entry["warmup_tokens"]),
            extent=None if extent is None else int(extent),
        )
    except (AttributeError, KeyError, TypeError, ValueError, IndexError, ConfigError) as e:
        raise ModelLoadError(f"{model_dir}: bad ffn-skip entry in slimkit.json: {e}") from None


__all__ = [
    "RESTORER",
    "DecodeClock",
    "FFNSkip",
    "SkipSite",
    "SkipState",
    "attach_ffn_skip_",
    "cache_length",
    "check_generation_length",
    "ffn_skip_metadata",
    "get_skip_state",
    "remove_skip_",
    "reset_skip_stats",
    "restore_ffn_skip",
    "set_threshold_",
    "skip_session",
    "skip_stats",
]
