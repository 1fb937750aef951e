"""The sequential calibration runner every calibrated method uses (Wanda, SparseGPT, OWL; later GPTQ, AWQ).

It walks the decoder blocks in order, the way the SparseGPT/Wanda reference code does:

1. **Capture** the inputs of block 0 for every calibration sequence: a forward pre-hook on block 0
   (``with_kwargs=True``) records the hidden states ``[chunk, seqlen, hidden]`` and whatever else
   the block is called with (attention mask, ``position_ids``, llama's rotary ``position_embeddings``),
   then raises a private exception so the rest of the model never runs. The KV cache is disabled.
2. For each block ``i``: hook the block's target linears (``method.observe(name, X)`` with
   ``X = [tokens, in]`` in fp32), run the samples in chunks of ``chunk_size``, remove the hooks, and
   let the method compress those linears. With *sequential groups* (SparseGPT's ``true_sequential``:
   ``[q,k,v] -> [o] -> [gate,up] -> [down]``) this repeats per group, so each group's statistics see
   the already-compressed earlier groups.
3. Run the samples through the **compressed** block again; its outputs are block ``i+1``'s inputs,
   so every block is calibrated on what the compressed model actually feeds it.

Only the current block has to live on the compute ``device``: it is onloaded before and offloaded
back after, and the activations between blocks stay on ``cache_device`` (CPU by default). That is
what lets a model larger than the accelerator's memory be compressed.

A method plugs in through the small :class:`CalibratedMethod` protocol (observe / compress / reset).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from slimkit.core.errors import ConfigError, DataError
from slimkit.core.progress import progress_bar
from slimkit.models.adapters import ArchitectureAdapter, get_adapter

# kwargs a decoder block may receive that must not carry a KV cache during calibration
_CACHE_KWARGS = ("cache", "past_key_value", "past_key_values", "layer_past")


@runtime_checkable
class CalibratedMethod(Protocol):
    """What the runner needs from a calibrated compression method.

    Attributes:
        modifies_weights: ``False`` for a pure statistics pass (OWL's outlier scan); the runner
            then reuses the observation pass's outputs instead of running the block again.
    """

    modifies_weights: bool

    def observe(self, name: str, inputs: Tensor) -> None:
        """Accumulate statistics for the linear ``name`` from its inputs ``[tokens, in]`` (fp32).

        Linears that share an input (q/k/v) receive the *same* tensor object within one chunk, so
        a method may reuse work keyed on identity.
        """

    def compress(self, name: str, module: nn.Module) -> None:
        """Compress the linear ``name`` in place from the statistics gathered so far."""

    def reset(self) -> None:
        """Drop all accumulated statistics (called after each compressed group)."""


class _StopForward(Exception):
    """Raised from a hook to end a forward pass early; never escapes the runner."""


@dataclass
class BlockInputs:
    """The calibration activations entering one decoder block, one entry per chunk.

    Attributes:
        hidden: ``[chunk, seqlen, hidden]`` tensors.
        args: the extra positional arguments the block was called with, per chunk.
        kwargs: the keyword arguments, per chunk (identical tensors are shared between chunks).
    """

    hidden: list[Tensor] = field(default_factory=list)
    args: list[tuple[Any, ...]] = field(default_factory=list)
    kwargs: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.hidden)

    def with_hidden(self, hidden: list[Tensor]) -> BlockInputs:
        return BlockInputs(hidden, self.args, self.kwargs)


def check_calibration(calib: Tensor | None, method: str) -> Tensor:
    """Validate calibration token ids: a ``LongTensor [nsamples, seqlen]``.

    Raises:
        DataError: missing, wrong dtype/shape, or empty.
    """
    if calib is None:
        raise DataError(
            f"{method} needs calibration data: pass calib=sample_calibration(tokenizer, documents, ...) "
            "(CLI: --calib SOURCE)"
        )
    if not isinstance(calib, Tensor) or calib.dtype not in (torch.int64, torch.int32):
        raise DataError(f"calib must be an integer tensor [nsamples, seqlen] of token ids, got {calib!r:.80}")
    if calib.dim() != 2 or calib.shape[0] == 0 or calib.shape[1] == 0:
        raise DataError(f"calib must have shape [nsamples, seqlen] with both > 0, got {tuple(calib.shape)}")
    return calib.long()


def _to(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, tuple):
        return tuple(_to(o, device) for o in obj)
    if isinstance(obj, list):
        return [_to(o, device) for o in obj]
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


def _share(obj: Any, previous: Any) -> Any:
    """Return ``previous`` where ``obj`` equals it, so chunks do not each store the same mask / rotary."""
    if isinstance(obj, Tensor) and isinstance(previous, Tensor):
        same = obj.shape == previous.shape and obj.dtype == previous.dtype and torch.equal(obj, previous)
        return previous if same else obj
    if isinstance(obj, tuple) and isinstance(previous, tuple) and len(obj) == len(previous):
        return tuple(_share(a, b) for a, b in zip(obj, previous, strict=True))
    if isinstance(obj, dict) and isinstance(previous, dict):
        return {k: _share(v, previous.get(k)) for k, v in obj.items()}
    return obj


def _first_device(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


@torch.no_grad()
def capture_block_inputs(
    model: nn.Module,
    calib: Tensor,
    *,
    chunk_size: int = 8,
    cache_device: torch.device | str = "cpu",
    adapter: ArchitectureAdapter | None = None,
) -> BlockInputs:
    """Run the model up to its first decoder block and record that block's inputs.

    The part of the model before block 0 (embeddings, rotary, mask construction) runs wherever it
    already is; the captured tensors are moved to ``cache_device``.

    Args:
        model: a Hugging Face causal LM with an architecture adapter.
        calib: ``[nsamples, seqlen]`` token ids.
        chunk_size: sequences per forward pass.
        cache_device: where the captured activations are kept.

    Returns:
        :class:`BlockInputs` with one entry per chunk.
    """
    adapter = adapter or get_adapter(model)
    calib = check_calibration(calib, "calibration")
    if chunk_size < 1:
        raise ConfigError(f"chunk_size={chunk_size} must be >= 1")
    cache_device = torch.device(cache_device)
    block0 = adapter.blocks(model)[0]
    embed_device = _first_device(adapter.embedding_modules(model)[0])
    captured = BlockInputs()

    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if args:
            hidden, rest = args[0], args[1:]
        else:
            kwargs = dict(kwargs)
            hidden, rest = kwargs.pop("hidden_states"), ()
        kwargs = {k: (None if k in _CACHE_KWARGS else v) for k, v in kwargs.items()}
        if "use_cache" in kwargs:
            kwargs["use_cache"] = False
        rest, kwargs = _to(rest, cache_device), _to(kwargs, cache_device)
        if captured.kwargs:
            rest = _share(rest, captured.args[-1])
            kwargs = _share(kwargs, captured.kwargs[-1])
        captured.hidden.append(hidden.detach().to(cache_device))
        captured.args.append(rest)
        captured.kwargs.append(kwargs)
        raise _StopForward

    handle = block0.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for start in range(0, calib.shape[0], chunk_size):
            ids = calib[start : start + chunk_size].to(embed_device)
            with contextlib.suppress(_StopForward):
                model(input_ids=ids, use_cache=False)
    finally:
        handle.remove()
    return captured


def _block_output(out: Any) -> Tensor:
    # transformers 5.x blocks return the hidden states; 4.x returned a tuple (hidden, ...)
    return out[0] if isinstance(out, tuple | list) else out


@torch.no_grad()
def run_block(
    block: nn.Module,
    inputs: BlockInputs,
    device: torch.device,
    cache_device: torch.device,
    *,
    keep_outputs: bool = True,
    before_chunk: Callable[[], None] | None = None,
) -> list[Tensor]:
    """Run every chunk of ``inputs`` through ``block`` (already on ``device``).

    Returns:
        The outputs per chunk on ``cache_device`` (empty when ``keep_outputs`` is false: a hook may
        also stop the forward early with the private stop exception, for statistics-only passes).
    """
    outputs: list[Tensor] = []
    for hidden, args, kwargs in zip(inputs.hidden, inputs.args, inputs.kwargs, strict=True):
        if before_chunk is not None:
            before_chunk()
        try:
            out = block(hidden.to(device), *_to(args, device), **_to(kwargs, device))
        except _StopForward:
            continue
        if keep_outputs:
            outputs.append(_block_output(out).detach().to(cache_device))
    return outputs


@contextlib.contextmanager
def _observe_hooks(
    method: CalibratedMethod, modules: Mapping[str, nn.Module], *, stop_when_done: bool
) -> Iterator[Callable[[], None]]:
    """Forward hooks feeding each module's 2-D fp32 inputs to ``method.observe``.

    Modules called on the same input tensor get the same converted tensor (one conversion for
    q/k/v). With ``stop_when_done`` the forward ends once every module has been seen. Yields the
    function to call before each chunk.
    """
    converted: dict[int, tuple[Tensor, Tensor]] = {}
    seen: set[str] = set()

    def make_hook(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            raw = args[0]
            entry = converted.get(id(raw))
            if entry is None or entry[0] is not raw:
                entry = (raw, raw.detach().reshape(-1, raw.shape[-1]).float())
                converted[id(raw)] = entry
            method.observe(name, entry[1])
            seen.add(name)
            if stop_when_done and len(seen) == len(modules):
                raise _StopForward

        return hook

    def new_chunk() -> None:
        converted.clear()
        seen.clear()

    handles = [m.register_forward_hook(make_hook(n)) for n, m in modules.items()]
    try:
        yield new_chunk
    finally:
        for h in handles:
            h.remove()
        converted.clear()


def true_sequential_groups(adapter: ArchitectureAdapter) -> list[tuple[str, ...]]:
    """SparseGPT's ``true_sequential`` order as role groups, derived from the adapter.

    Attention inputs, then the attention output, then the MLP input projections, then the MLP
    output: ``[q,k,v] -> [o] -> [gate,up] -> [down]`` for llama, ``[q,k,v] -> [o] -> [fc1] -> [fc2]``
    for OPT, ``[qkv] -> [o] -> [fc1] -> [fc2]`` for GPT-2.
    """
    attn, mlp = adapter.attention_roles, adapter.mlp_roles
    groups = [tuple(r for r in attn if r != "o"), ("o",), tuple(mlp[:-1]), (mlp[-1],)]
    return [g for g in groups if g]


def block_index_of(name: str, adapter: ArchitectureAdapter) -> int:
    prefix = adapter.blocks_path + "."
    if not name.startswith(prefix):
        raise ValueError(f"{name} is not inside the decoder blocks ({adapter.blocks_path})")
    return int(name[len(prefix) :].split(".", 1)[0])


def group_targets_by_block(
    targets: Mapping[str, nn.Module], adapter: ArchitectureAdapter
) -> dict[int, dict[str, nn.Module]]:
    """``{block index: {name: module}}`` for modules inside the decoder blocks."""
    by_block: dict[int, dict[str, nn.Module]] = {}
    for name, module in targets.items():
        by_block.setdefault(block_index_of(name, adapter), {})[name] = module
    return by_block


def _split_groups(
    block_targets: Mapping[str, nn.Module],
    prefix: str,
    adapter: ArchitectureAdapter,
    groups: Sequence[Sequence[str]] | None,
) -> list[dict[str, nn.Module]]:
    if not groups:
        return [dict(block_targets)] if block_targets else []
    out: list[dict[str, nn.Module]] = []
    placed: set[str] = set()
    for roles in groups:
        group = {
            n: m for n, m in block_targets.items() if adapter.role_of(n[len(prefix) + 1 :]) in set(roles)
        }
        placed |= set(group)
        if group:
            out.append(group)
    rest = {n: m for n, m in block_targets.items() if n not in placed}
    if rest:  # targets without a role in any group go last
        out.append(rest)
    return out


@torch.no_grad()
def run_sequential_(
    model: nn.Module,
    method: CalibratedMethod,
    calib: Tensor,
    targets: Mapping[str, nn.Module],
    *,
    device: torch.device | str | None = None,
    chunk_size: int = 8,
    sequential_groups: Sequence[Sequence[str]] | None = None,
    cache_device: torch.device | str = "cpu",
    propagate_compressed: bool = True,
    progress: bool = True,
    description: str = "calibrate",
) -> None:
    """Calibrate and compress ``targets`` block by block (see the module docstring).

    Args:
        model: a Hugging Face causal LM with an architecture adapter; changed in place.
        method: the :class:`CalibratedMethod` that observes and compresses.
        calib: ``[nsamples, seqlen]`` token ids.
        targets: ``{fully-qualified name: linear}``, all inside decoder blocks.
        device: compute device; each block is moved there for its turn and moved back after.
            ``None`` computes every block where it already is (no moves).
        chunk_size: sequences per forward pass (memory vs speed; results do not depend on it
            beyond floating-point summation order).
        sequential_groups: role groups compressed one after another inside a block, statistics
            re-collected after each (e.g. :func:`true_sequential_groups`); ``None`` = one group.
        cache_device: where activations between blocks are kept.
        propagate_compressed: feed block ``i+1`` the *compressed* block ``i``'s outputs (the
            reference behaviour; one extra block forward per block). ``False`` feeds it the dense
            outputs, so every block is calibrated on the dense model's activations (one forward per
            block: about half the calibration time).
        progress: show a progress bar over blocks.
        description: the progress bar's label.
    """
    adapter = get_adapter(model)
    cache_device = torch.device(cache_device)
    compute = torch.device(device) if device is not None else None
    blocks = adapter.blocks(model)
    by_block = group_targets_by_block(targets, adapter)
    last = max(by_block) if by_block else -1
    was_training = model.training
    model.eval()
    try:
        inputs = capture_block_inputs(
            model, calib, chunk_size=chunk_size, cache_device=cache_device, adapter=adapter
        )
        bar_ctx = progress_bar(last + 1, description) if progress else contextlib.nullcontext(None)
        with bar_ctx as bar:
            for index in range(last + 1):
                block = blocks[index]
                home = _first_device(block)
                if compute is not None:
                    block.to(compute)
                try:
                    groups = _split_groups(
                        by_block.get(index, {}), adapter.block_prefix(index), adapter, sequential_groups
                    )
                    outputs = _calibrate_block(
                        block,
                        method,
                        groups,
                        inputs,
                        compute or home,
                        cache_device,
                        propagate_compressed=propagate_compressed,
                        need_outputs=index < last,
                    )
                finally:  # offload even when compression fails
                    if compute is not None:
                        block.to(home)
                if outputs is not None:
                    inputs = inputs.with_hidden(outputs)
                if bar is not None:
                    bar.update(1, block=index)
    finally:
        model.train(was_training)


def _calibrate_block(
    block: nn.Module,
    method: CalibratedMethod,
    groups: list[dict[str, nn.Module]],
    inputs: BlockInputs,
    device: torch.device,
    cache_device: torch.device,
    *,
    propagate_compressed: bool,
    need_outputs: bool,
) -> list[Tensor] | None:
    """Observe and compress one block's groups; return its outputs for the next block (if needed)."""
    reuse: list[Tensor] | None = None
    for position, group in enumerate(groups):
        # the first pass sees the block unchanged: its outputs are the dense outputs, which feed the
        # next block when nothing changes or when propagation is off
        keep = need_outputs and position == 0 and not (method.modifies_weights and propagate_compressed)
        with _observe_hooks(method, group, stop_when_done=not keep) as new_chunk:
            outputs = run_block(
                block, inputs, device, cache_device, keep_outputs=keep, before_chunk=new_chunk
            )
        for name, module in group.items():
            method.compress(name, module)
        method.reset()
        if keep:
            reuse = outputs
    if not need_outputs:
        return None
    return reuse if reuse is not None else run_block(block, inputs, device, cache_device)
