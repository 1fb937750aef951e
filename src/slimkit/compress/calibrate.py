"""The sequential calibration runner every calibrated method uses (Wanda, SparseGPT, OWL; later GPTQ, AWQ).

It walks the decoder blocks in order, the way the SparseGPT/Wanda reference code does:

1. **Capture** the inputs of every block for every calibration sequence. For the capture pass each
   block's ``forward`` is replaced by a stand-in that records what the model calls it with and
   returns its input unchanged, so the model's own loop hands every block *its own* arguments
   (attention mask, ``position_ids``, rotary ``position_embeddings``, alibi) without running any
   block: Qwen2's ``max_window_layers``, Gemma2/Gemma3's alternating local (sliding-window) and
   global layers and their two rotary tables all come out as the model computes them. The last
   needed block raises a private exception so the rest of the model never runs; block 0's hidden
   states ``[chunk, seqlen, hidden]`` are kept. The KV cache is disabled. Equal tensors (one mask
   shared by all sliding layers, the same rotary table in every chunk) are stored once.
2. For each block ``i``: hook the block's target linears (``method.observe(name, X)`` with
   ``X = [tokens, in]`` in fp32, from a forward *pre*-hook), run the samples in chunks of
   ``chunk_size`` with block ``i``'s own arguments (a pass whose outputs are not needed stops as
   soon as the last linear's input is seen, before that linear runs), remove the hooks, and let the
   method compress those linears. With *sequential
   groups* (SparseGPT's ``true_sequential``: ``[q,k,v] -> [o] -> [gate,up] -> [down]``) this repeats
   per group, so each group's statistics see the already-compressed earlier groups.
3. Run the samples through the **compressed** block again; its outputs are block ``i+1``'s inputs,
   so every block is calibrated on what the compressed model actually feeds it.

With sequential groups, the passes after the first repeat work whose result is already known: a
linear compressed two groups ago has the same weights and the same inputs as in the pass before, so
its output is too. Those outputs are recorded in the pass that first runs the linear with its final
weights and *replayed* (served from memory instead of recomputed) in the passes after it, as long as
no linear that changed since the recording ran before it in the same chunk (checked per call: a
changed upstream linear makes the replayed linear compute for real). The results are bit for bit the
recomputed ones; for llama's ``[q,k,v] -> [o] -> [gate,up] -> [down]`` the block's linears then run
once per chunk in all five passes together instead of about 2.5 times. The memory this takes (the
recorded outputs of one block, e.g. 0.3 GiB for SmolLM2-135M at 32 x 512 tokens) is bounded by
``replay_budget_mib``; a block over it recomputes.

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

from slimkit.core.allocator import heap_reuse
from slimkit.core.errors import ConfigError, DataError
from slimkit.core.progress import progress_bar
from slimkit.models.adapters import ArchitectureAdapter, get_adapter, linear_weight

#: default memory bound (MiB) for the outputs one block's replay keeps (see the module docstring)
REPLAY_BUDGET_MIB = 1024.0

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
        """Compress the linear ``name`` in place from the statistics gathered so far.

        A method may also define ``compress_group(group)`` (``{name: module}``, one sequential
        group): the runner then calls it instead of ``compress`` per linear, so linears that share
        statistics can be compressed together.
        """

    def reset(self) -> None:
        """Drop all accumulated statistics (called after each compressed group)."""


class _StopForward(Exception):
    """Raised from a hook to end a forward pass early; never escapes the runner."""


@dataclass
class BlockInputs:
    """The calibration activations entering one decoder block, one entry per chunk.

    Attributes:
        hidden: ``[chunk, seqlen, hidden]`` tensors.
        args: the extra positional arguments block :attr:`block` is called with, per chunk.
        kwargs: its keyword arguments, per chunk (equal tensors are shared between chunks and blocks).
        block: the index of the block these inputs are for.
        calls: ``(args, kwargs)`` per chunk of every captured block, in block order (shared between
            the :class:`BlockInputs` of one capture).
    """

    hidden: list[Tensor] = field(default_factory=list)
    args: list[tuple[Any, ...]] = field(default_factory=list)
    kwargs: list[dict[str, Any]] = field(default_factory=list)
    block: int = 0
    calls: list[tuple[list[tuple[Any, ...]], list[dict[str, Any]]]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.hidden)

    def with_hidden(self, hidden: list[Tensor]) -> BlockInputs:
        """The same block's arguments with other hidden states."""
        return BlockInputs(hidden, self.args, self.kwargs, self.block, self.calls)

    def for_block(self, index: int, hidden: list[Tensor]) -> BlockInputs:
        """Block ``index``'s own arguments (its mask, its rotary table) with ``hidden``.

        Raises:
            IndexError: block ``index`` was not captured.
        """
        if not 0 <= index < len(self.calls):
            raise IndexError(f"block {index} was not captured (captured: {len(self.calls)} blocks)")
        args, kwargs = self.calls[index]
        return BlockInputs(hidden, args, kwargs, index, self.calls)


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


class _Store:
    """Moves captured call arguments to the cache device, storing equal tensors once.

    Within one chunk the model hands the same tensor object to many blocks (one mask per layer
    type, one rotary table); across chunks the tensors are equal but new. Both are stored once.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seen: dict[int, tuple[Tensor, Tensor]] = {}  # id -> (original, stored), this chunk
        self.previous: list[Tensor] = []  # what the previous chunk stored
        self.current: list[Tensor] = []

    def new_chunk(self) -> None:
        self.previous, self.current = self.current or self.previous, []
        self.seen.clear()

    def __call__(self, obj: Any) -> Any:
        if isinstance(obj, Tensor):
            hit = self.seen.get(id(obj))
            if hit is not None and hit[0] is obj:
                return hit[1]
            stored = obj.detach().to(self.device)  # blocking: compared right away
            for old in self.previous:
                if (
                    old.shape == stored.shape
                    and old.dtype == stored.dtype
                    and old.device == stored.device
                    and torch.equal(old, stored)
                ):
                    stored = old
                    break
            self.seen[id(obj)] = (obj, stored)
            self.current.append(stored)
            return stored
        if isinstance(obj, tuple):
            return tuple(self(o) for o in obj)
        if isinstance(obj, list):
            return [self(o) for o in obj]
        if isinstance(obj, dict):
            return {k: self(v) for k, v in obj.items()}
        return obj


def _first_device(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


def _split_call(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Tensor, tuple[Any, ...], dict[str, Any]]:
    """A block call's hidden states, other positional arguments, and keyword arguments (no KV cache)."""
    if args:
        hidden, rest = args[0], args[1:]
    else:
        kwargs = dict(kwargs)
        hidden, rest = kwargs.pop("hidden_states"), ()
    kwargs = {k: (None if k in _CACHE_KWARGS else v) for k, v in kwargs.items()}
    if "use_cache" in kwargs:
        kwargs["use_cache"] = False
    return hidden, rest, kwargs


@contextlib.contextmanager
def _standing_in(blocks: Sequence[nn.Module], make: Callable[[int], Callable[..., Any]]) -> Iterator[None]:
    """Replace each module's ``forward`` by ``make(index)`` (an instance attribute), restoring it after,
    including a ``forward`` another library had set on the instance (accelerate's hooks). ``make(i)``
    is called just before module ``i``'s ``forward`` is replaced, so it may wrap the current one."""
    saved = [block.__dict__.get("forward") for block in blocks]
    try:
        for index, block in enumerate(blocks):
            block.forward = make(index)
        yield
    finally:
        for block, own in zip(blocks, saved, strict=True):
            if own is None:
                del block.forward
            else:
                block.forward = own


@torch.no_grad()
def capture_block_inputs(
    model: nn.Module,
    calib: Tensor,
    *,
    chunk_size: int = 8,
    cache_device: torch.device | str = "cpu",
    adapter: ArchitectureAdapter | None = None,
    num_blocks: int | None = None,
) -> BlockInputs:
    """Record the inputs of the decoder blocks: block 0's hidden states and every block's own arguments.

    No block runs: each block's ``forward`` is stood in for by a recorder that returns its input, so
    the model's loop passes every block the mask and position tensors the model made for that
    block's layer type. The part of the model before the blocks (embeddings, rotary, mask
    construction) runs wherever it already is; the captured tensors are moved to ``cache_device``.

    Args:
        model: a Hugging Face causal LM with an architecture adapter.
        calib: ``[nsamples, seqlen]`` token ids.
        chunk_size: sequences per forward pass.
        cache_device: where the captured activations are kept.
        adapter: the model's adapter. Default: :func:`get_adapter`.
        num_blocks: capture the arguments of the first ``num_blocks`` blocks. Default: all.

    Returns:
        :class:`BlockInputs` of block 0 with one entry per chunk; :meth:`BlockInputs.for_block` gives
        any captured block's own arguments.
    """
    adapter = adapter or get_adapter(model)
    calib = check_calibration(calib, "calibration")
    if chunk_size < 1:
        raise ConfigError(f"chunk_size={chunk_size} must be >= 1")
    cache_device = torch.device(cache_device)
    blocks = adapter.blocks(model)
    n = len(blocks) if num_blocks is None else max(1, min(int(num_blocks), len(blocks)))
    embed_device = _first_device(adapter.embedding_modules(model)[0])
    hidden_chunks: list[Tensor] = []
    calls: list[tuple[list[tuple[Any, ...]], list[dict[str, Any]]]] = [([], []) for _ in range(n)]
    store = _Store(cache_device)
    out_len = adapter.block_output_len

    def recorder(index: int) -> Callable[..., Any]:
        def forward(*args: Any, **kwargs: Any) -> Any:
            hidden, rest, kw = _split_call(args, kwargs)
            if index == 0:
                hidden_chunks.append(hidden.detach().to(cache_device))
            calls[index][0].append(store(rest))
            calls[index][1].append(store(kw))
            if index == n - 1:
                raise _StopForward
            # what the block would return, with its input as the "output": the loop goes on unchanged
            return hidden if out_len == 0 else (hidden, *([None] * (out_len - 1)))

        return forward

    with _standing_in(list(blocks)[:n], recorder):
        for start in range(0, calib.shape[0], chunk_size):
            ids = calib[start : start + chunk_size].to(embed_device)
            store.new_chunk()
            with contextlib.suppress(_StopForward):
                model(input_ids=ids, use_cache=False)
    if any(len(a) != len(hidden_chunks) for a, _ in calls):
        raise RuntimeError(  # a model whose loop skips blocks cannot be calibrated block by block
            f"{type(model).__name__} did not call each of its first {n} blocks once per chunk"
        )
    args0, kwargs0 = calls[0]
    return BlockInputs(hidden_chunks, args0, kwargs0, 0, calls)


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
    """Forward *pre*-hooks feeding each module's 2-D fp32 input to ``method.observe``.

    Modules called on the same input tensor get the same converted tensor (one conversion for
    q/k/v), one after the other. With ``stop_when_done`` the forward ends once every module has
    been observed, *before* the last one runs: a statistics pass needs a linear's input, never its
    output (for a whole llama block that skips ``down_proj``, a quarter of the block's matmul work).
    Yields the function to call before each chunk.
    """
    converted: dict[int, tuple[Tensor, Tensor]] = {}
    seen: set[str] = set()

    def make_hook(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            raw = args[0] if args else next(iter(kwargs.values()))
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

    handles = [m.register_forward_pre_hook(make_hook(n), with_kwargs=True) for n, m in modules.items()]
    try:
        yield new_chunk
    finally:
        for h in handles:
            h.remove()
        converted.clear()


def true_sequential_groups(adapter: ArchitectureAdapter) -> list[tuple[str, ...]]:
    """SparseGPT's ``true_sequential`` order as role groups: the adapter's groups of linears that
    share an input, attention and MLP apart, in forward order (found by the discovery trace, so no
    role name is assumed).

    ``[q,k,v] -> [o] -> [gate,up] -> [down]`` for llama, ``[q,k,v] -> [o] -> [fc1] -> [fc2]`` for
    OPT, ``[qkv] -> [o] -> [fc1] -> [fc2]`` for GPT-2, ``[qkv] -> [o] -> [gate_up] -> [down]`` for Phi-3.
    """
    return adapter.role_groups()


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
    replay_budget_mib: float | None = None,
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
        replay_budget_mib: memory allowed for the recorded outputs of one block's already-final
            linears (see the module docstring); 0 recomputes them in every pass. Results do not
            depend on it. Default: :data:`REPLAY_BUDGET_MIB`.
    """
    if replay_budget_mib is None:
        replay_budget_mib = REPLAY_BUDGET_MIB
    if replay_budget_mib < 0:
        raise ConfigError(f"replay_budget_mib={replay_budget_mib} must be >= 0")
    adapter = get_adapter(model)
    cache_device = torch.device(cache_device)
    compute = torch.device(device) if device is not None else None
    blocks = adapter.blocks(model)
    by_block = group_targets_by_block(targets, adapter)
    last = max(by_block) if by_block else -1
    was_training = model.training
    model.eval()
    # freed activations' memory serves the next pass instead of being unmapped and faulted in again
    with heap_reuse(), contextlib.ExitStack() as restore:
        restore.callback(model.train, was_training)
        inputs = capture_block_inputs(
            model,
            calib,
            chunk_size=chunk_size,
            cache_device=cache_device,
            adapter=adapter,
            num_blocks=last + 1,
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
                        replay_budget_bytes=replay_budget_mib * 2**20,
                    )
                finally:  # offload even when compression fails
                    if compute is not None:
                        block.to(home)
                if outputs is not None:  # the next block, with its own mask and position tensors
                    inputs = inputs.for_block(index + 1, outputs)
                if bar is not None:
                    bar.update(1, block=index)


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
    replay_budget_bytes: float = 0.0,
) -> list[Tensor] | None:
    """Observe and compress one block's groups; return its outputs for the next block (if needed)."""
    reuse: list[Tensor] | None = None
    replay = None
    if method.modifies_weights and len(groups) > 1:
        replay = _OutputReplay(block, groups)
        if replay.bytes_needed(inputs) > replay_budget_bytes:
            replay = None
    for position, group in enumerate(groups):
        # the first pass sees the block unchanged: its outputs are the dense outputs, which feed the
        # next block when nothing changes or when propagation is off
        keep = need_outputs and position == 0 and not (method.modifies_weights and propagate_compressed)
        replaying = replay.pass_(position) if replay is not None else contextlib.nullcontext(None)
        with _observe_hooks(method, group, stop_when_done=not keep) as new_chunk, replaying as replay_chunk:
            outputs = run_block(
                block,
                inputs,
                device,
                cache_device,
                keep_outputs=keep,
                before_chunk=new_chunk if replay_chunk is None else _both(new_chunk, replay_chunk),
            )
        compress_group = getattr(method, "compress_group", None)
        if compress_group is not None:
            compress_group(group)
        else:
            for name, module in group.items():
                method.compress(name, module)
        method.reset()
        if keep:
            reuse = outputs
    if not need_outputs:
        return None
    if reuse is not None:
        return reuse
    if replay is None:
        return run_block(block, inputs, device, cache_device)
    with replay.pass_(len(groups)) as replay_chunk:
        return run_block(block, inputs, device, cache_device, before_chunk=replay_chunk)


def _both(first: Callable[[], None], second: Callable[[], None]) -> Callable[[], None]:
    def call() -> None:
        first()
        second()

    return call


class _OutputReplay:
    """Records the outputs of a block's already-compressed linears and serves them in later passes.

    Pass ``p`` (``p = 0 .. len(groups)``; the last is the propagation pass) runs after groups
    ``0 .. p-1`` were compressed. A linear of group ``g`` has its final weights from pass ``g + 1``
    on: that pass records its output per chunk (in call order), and passes ``g + 2 ..`` serve it,
    unless a linear of a group ``> g`` (changed since the recording, or not yet compressed) was
    already called in the same chunk before it: its input may then differ, so it runs for real. The
    served tensor is a copy, so a block that writes into a linear's output in place cannot change
    what a later pass gets. Linears are looked up by their path inside the block at every pass: a
    method may have replaced one by another module (quantization's ``QuantizedLinear``).
    """

    def __init__(self, block: nn.Module, groups: Sequence[Mapping[str, nn.Module]]) -> None:
        paths = {id(module): path for path, module in block.named_modules()}
        self.block = block
        self.group_of: dict[str, int] = {}
        self.out_bytes: dict[str, int] = {}  # per token
        for g, group in enumerate(groups):
            for module in group.values():
                path = paths[id(module)]
                weight = linear_weight(module)
                self.group_of[path] = g
                self.out_bytes[path] = int(weight.shape[0]) * weight.element_size()
        self.last_position = len(groups)
        self.recorded: dict[str, list[list[Tensor]]] = {}  # path -> per chunk -> outputs in call order
        self.served = 0  # calls answered from memory

    def bytes_needed(self, inputs: BlockInputs) -> int:
        """Memory of the recorded outputs (every linear but the last group's) for all of ``inputs``."""
        tokens = sum(int(h.shape[:-1].numel()) for h in inputs.hidden)
        last = self.last_position - 1
        return tokens * sum(b for path, b in self.out_bytes.items() if self.group_of[path] < last)

    @contextlib.contextmanager
    def pass_(self, position: int) -> Iterator[Callable[[], None]]:
        """Stand in for the linears of pass ``position``; yields the function to call before each chunk."""
        chunk = -1
        calls: dict[str, int] = {}  # per path: calls in this chunk so far
        highest = [-1]  # the highest group index of a linear called in this chunk so far
        record = {
            path for path, g in self.group_of.items() if g == position - 1 and position < self.last_position
        }
        serve = {path for path, g in self.group_of.items() if g <= position - 2 and path in self.recorded}
        modules = {path: self.block.get_submodule(path) for path in self.group_of}

        def make(path: str, original: Callable[..., Any]) -> Callable[..., Any]:
            group = self.group_of[path]

            def forward(*args: Any, **kwargs: Any) -> Any:
                nth = calls.get(path, 0)
                calls[path] = nth + 1
                clean = highest[0] <= group  # nothing that may have changed since the recording ran yet
                highest[0] = max(highest[0], group)
                stored = self.recorded.get(path)
                if (
                    path in serve
                    and clean
                    and stored is not None
                    and chunk < len(stored)
                    and nth < len(stored[chunk])
                ):
                    self.served += 1
                    return stored[chunk][nth].clone()
                out = original(*args, **kwargs)
                if path in record:
                    per_chunk = self.recorded.setdefault(path, [])
                    while len(per_chunk) <= chunk:
                        per_chunk.append([])
                    per_chunk[chunk].append(out.detach().clone())
                return out

            return forward

        def mark(path: str) -> Callable[..., None]:
            group = self.group_of[path]

            def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
                highest[0] = max(highest[0], group)

            return hook

        def new_chunk() -> None:
            nonlocal chunk
            chunk += 1
            calls.clear()
            highest[0] = -1

        stood_in = sorted(record | serve)
        # the other linears (observed now, or not yet compressed) only mark the chunk when they run
        handles = [m.register_forward_pre_hook(mark(p)) for p, m in modules.items() if p not in stood_in]
        try:
            # make(i) runs before module i's forward is replaced: it wraps the forward in place now
            with _standing_in(
                [modules[p] for p in stood_in], lambda i: make(stood_in[i], modules[stood_in[i]].forward)
            ):
                yield new_chunk
        finally:
            for h in handles:
                h.remove()
            if position >= self.last_position:  # the propagation pass was the last use
                self.recorded.clear()
