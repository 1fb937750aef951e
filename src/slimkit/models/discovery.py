"""Architecture discovery: the decoder blocks, their linears and roles, found from the module tree.

Any Hugging Face causal LM works without a hand-written table. Discovery follows llm-compressor
(``utils/pytorch/module.py::get_no_split_params``); no code is taken from it:

1. **Blocks.** The ``nn.ModuleList`` whose elements are of a class the ``*ForCausalLM`` class names
   in ``_no_split_modules`` (transformers' "never split this across devices" list, which every
   decoder layer class is on). Several such lists: the longest one. None:
   :class:`UnsupportedArchitectureError` naming the classes that were looked for.
2. **Linears.** Inside block 0, every ``nn.Linear`` or transformers ``Conv1D`` (GPT-2's transposed
   linear, recognised with ``isinstance``), and every module that declares integer ``in_features`` and
   ``out_features`` (slimkit's own ``LowRankLinear``, so a compressed model discovers the same roles);
   discovery does not descend into such a module.
3. **Attention or MLP** comes from the module tree: a linear is an attention linear when one of its
   ancestors inside the block is a ``*Attention`` / ``*Attn`` class (``LlamaAttention``,
   ``GPT2Attention``, ``FalconAttention``, ...); every other linear of the block (OPT's ``fc1``/``fc2``
   sit on the block itself) belongs to the MLP.
4. **Groups and roles** come from one traced forward of a few tokens: forward hooks record, in call
   order, the tensor each linear is fed. Linears fed the same tensor (q/k/v; gate/up) form a group,
   attention and MLP kept apart even when they share an input (Falcon's and Phi's parallel
   attention). :func:`group_linears` and :func:`assign_roles` are the pure part::

       attention: [q, k, v] | [qkv] (fused)      ->  [o]
       MLP:       [gate, up]                      ->  [down]
                  [gate_up] (fused: out = 2 x down's in)  ->  [down]
                  [fc1]                           ->  [fc2]

   Names break ties only (``q_proj``/``query``/``wq`` is ``q``; ``gate``/``w1`` is ``gate``); any
   other layout keeps each linear's own last name as its role.
5. **Embeddings, final norm, LM head.** ``get_input_embeddings()`` first, then every other
   ``nn.Embedding`` outside the blocks (learned positions); the final norm is the first module with
   parameters that runs after the last block (the first module at all if none has: OLMo's
   parameter-free norm); the head is ``get_output_embeddings()``.

The same trace records whether a block returns its hidden states or a tuple (Falcon), which the
sequential calibration runner needs to stand in for blocks while it captures their inputs.

Where discovery cannot be right, a hand adapter is registered in :mod:`slimkit.models.adapters`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from slimkit.core.errors import UnsupportedArchitectureError

# families the unit tests discover, compress, save and reload (tests/unit/test_families.py)
TESTED_MODEL_TYPES = (
    "falcon",
    "gemma2",
    "gemma3_text",
    "gpt2",
    "gpt_neox",
    "llama",
    "mistral",
    "opt",
    "phi3",
    "qwen2",
    "qwen3",
)
TRACE_TOKENS = 8  # length of the traced forward (one sequence)
_ATTENTION_CLASS = re.compile(r"attention|attn", re.IGNORECASE)
# name hints that break ties inside a group (tokens of a linear's last name)
_HINTS = {
    "q": frozenset({"q", "query", "wq"}),
    "k": frozenset({"k", "key", "wk"}),
    "v": frozenset({"v", "value", "wv"}),
    "gate": frozenset({"gate", "w1"}),
    "up": frozenset({"up", "w3"}),
}


def _get(root: nn.Module, path: str) -> nn.Module:
    mod = root
    for part in path.split("."):
        mod = getattr(mod, part)
    return mod


@dataclass(frozen=True)
class ArchitectureAdapter:
    """Where one architecture keeps its decoder blocks and linears (paths relative to the ``*ForCausalLM``).

    Built by :func:`discover` for any causal LM, or written by hand for a family discovery cannot
    get right (:mod:`slimkit.models.adapters`).

    Attributes:
        family: short name (the ``model_type`` for a discovered model).
        model_types: the ``config.model_type`` values this adapter serves.
        blocks_path: dotted path of the ``nn.ModuleList`` of decoder blocks.
        roles: canonical role -> dotted path inside a block, in forward order (attention first).
        attention_roles / mlp_roles: which roles belong to attention and to the MLP.
        embeddings: dotted paths of the input embeddings (token first, then learned positions).
        final_norm: dotted path of the norm after the last block (``None``: the model has none).
        lm_head: dotted path of the output projection.
        groups: role groups in forward order, each the linears fed one tensor, attention and MLP
            apart (``[q,k,v] -> [o] -> [gate,up] -> [down]``); ``()``: derived from the role order.
        block_output_len: what a block returns: ``0`` its hidden states, ``n`` a tuple of ``n``
            whose first item is the hidden states (Falcon).
        discovered: built by :func:`discover` rather than by hand.
    """

    family: str
    model_types: tuple[str, ...]
    blocks_path: str
    roles: dict[str, str]
    attention_roles: tuple[str, ...]
    mlp_roles: tuple[str, ...]
    embeddings: tuple[str, ...]
    final_norm: str | None
    lm_head: str = "lm_head"
    groups: tuple[tuple[str, ...], ...] = ()
    block_output_len: int = 0
    discovered: bool = False

    def blocks(self, model: nn.Module) -> nn.ModuleList:
        """The decoder blocks, in order."""
        return _get(model, self.blocks_path)  # type: ignore[return-value]

    def block_prefix(self, index: int) -> str:
        """Fully-qualified name of block ``index`` (``model.layers.3``)."""
        return f"{self.blocks_path}.{index}"

    def block_linears(self, block: nn.Module) -> dict[str, nn.Module]:
        """Role -> linear module of one block, attention roles first (the forward order)."""
        return {role: _get(block, path) for role, path in self.roles.items()}

    def role_of(self, relative_name: str) -> str | None:
        """The role of a module given its name inside a block (``self_attn.q_proj`` -> ``q``)."""
        for role, path in self.roles.items():
            if path == relative_name:
                return role
        return None

    def role_groups(self) -> list[tuple[str, ...]]:
        """:attr:`groups`, or, when a hand table gives none, groups derived from the role order: the
        attention roles but the last, the last (the output projection), the MLP roles but the last,
        the last."""
        if self.groups:
            return [tuple(g) for g in self.groups]
        attn, mlp = self.attention_roles, self.mlp_roles
        derived = [tuple(attn[:-1]), tuple(attn[-1:]), tuple(mlp[:-1]), tuple(mlp[-1:])]
        return [g for g in derived if g]

    def linear_names(self, model: nn.Module) -> list[str]:
        """Fully-qualified names of every role linear in every block."""
        n = len(self.blocks(model))
        return [f"{self.block_prefix(i)}.{p}" for i in range(n) for p in self.roles.values()]

    def embedding_modules(self, model: nn.Module) -> list[nn.Module]:
        return [_get(model, p) for p in self.embeddings]

    def lm_head_module(self, model: nn.Module) -> nn.Module:
        return _get(model, self.lm_head)

    def final_norm_module(self, model: nn.Module) -> nn.Module | None:
        return None if self.final_norm is None else _get(model, self.final_norm)


# -- linears -----------------------------------------------------------------------------------------------------
def is_linear(module: nn.Module) -> bool:
    """``nn.Linear`` (and subclasses: Falcon's ``FalconLinear``) or transformers' ``Conv1D``."""
    return isinstance(module, nn.Linear | Conv1D)


def is_conv1d(module: nn.Module) -> bool:
    """transformers' ``Conv1D`` (GPT-2): a linear layer storing its weight as ``[in, out]``."""
    return isinstance(module, Conv1D)


def is_role_module(module: nn.Module) -> bool:
    """A linear, or a module standing in for one (integer ``in_features`` / ``out_features``,
    e.g. ``LowRankLinear``); discovery treats it as a leaf."""
    if is_linear(module):
        return True
    ins, outs = getattr(module, "in_features", None), getattr(module, "out_features", None)
    return isinstance(ins, int) and isinstance(outs, int) and not isinstance(ins, bool)


def _features(module: nn.Module) -> tuple[int, int]:
    if is_conv1d(module):
        return int(module.nx), int(module.nf)
    return int(module.in_features), int(module.out_features)


def role_modules(block: nn.Module) -> dict[str, nn.Module]:
    """Relative name -> every linear-like leaf of ``block`` (not descending into one), module order."""
    found: dict[str, nn.Module] = {}

    def walk(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            path = f"{prefix}{name}"
            if is_role_module(child):
                found[path] = child
            else:
                walk(child, path + ".")

    walk(block, "")
    return found


# -- blocks ------------------------------------------------------------------------------------------------------
def no_split_classes(model: nn.Module) -> set[str]:
    """The class names the causal-LM class itself lists in ``_no_split_modules``.

    Only the top-level declaration counts, not those of the models inside it: BERT-style encoders
    offered as ``*LMHeadModel`` declare none there (their inner encoder declares its layer), and
    they are not causal LMs.
    """
    # the class attribute: transformers 5 sets the instance's to the union over inner models
    declared = getattr(type(model), "_no_split_modules", None) or ()
    return {str(n) for n in declared}


def _model_type(model: nn.Module) -> str:
    return str(getattr(getattr(model, "config", None), "model_type", None) or type(model).__name__)


def find_blocks(model: nn.Module, blocks_path: str | None = None) -> tuple[str, nn.ModuleList]:
    """``(path, ModuleList)`` of the decoder blocks: the longest ``nn.ModuleList`` whose elements are
    all of a ``_no_split_modules`` class (or the list at ``blocks_path`` when given).

    Raises:
        UnsupportedArchitectureError: no such list (the one-line message names what was looked for).
    """
    cls, model_type = type(model).__name__, _model_type(model)
    if blocks_path is not None:
        try:
            blocks = _get(model, blocks_path)
        except AttributeError:
            blocks = None
        if not isinstance(blocks, nn.ModuleList) or len(blocks) == 0:
            raise UnsupportedArchitectureError(
                f"architecture {model_type!r} ({cls}): no decoder blocks at {blocks_path!r} "
                "(expected a non-empty nn.ModuleList there)"
            )
        return blocks_path, blocks
    names = no_split_classes(model)
    candidates = [
        (path, module)
        for path, module in model.named_modules()
        if isinstance(module, nn.ModuleList)
        and len(module) > 0
        and all(any(k.__name__ in names for k in type(b).__mro__) for b in module)
    ]
    if not candidates:
        looked_for = (
            f"an nn.ModuleList of its _no_split_modules classes ({', '.join(sorted(names))}) and found none"
            if names
            else "an nn.ModuleList of its _no_split_modules classes, but it declares none"
        )
        raise UnsupportedArchitectureError(
            f"unsupported architecture {model_type!r} ({cls}): cannot find its decoder blocks: looked for "
            f"{looked_for}; register a hand adapter (slimkit.models.adapters.register_adapter) if it is a "
            f"decoder-only causal LM (families tested with discovery: {', '.join(TESTED_MODEL_TYPES)})"
        )
    longest = max(len(m) for _, m in candidates)
    return next((p, m) for p, m in candidates if len(m) == longest)  # type: ignore[return-value]


# -- the trace and its pure interpretation -----------------------------------------------------------------------
@dataclass(frozen=True)
class LinearCall:
    """One linear of block 0 as the traced forward saw it.

    Attributes:
        path: its name inside the block (``self_attn.q_proj``).
        source: a number identifying the tensor it was fed; equal numbers = the same input.
        in_features / out_features: its shape (``[out, in]`` as :func:`linear_weight` gives it).
        attention: whether it sits inside the block's attention module (module tree).
    """

    path: str
    source: int
    in_features: int
    out_features: int
    attention: bool


def group_linears(calls: Sequence[LinearCall]) -> list[list[LinearCall]]:
    """Linears fed the same tensor, attention and MLP apart, in the order each group first runs.

    ``calls`` is in call order; a linear called twice counts once (its first call).
    """
    groups: dict[tuple[bool, int], list[LinearCall]] = {}
    seen: set[str] = set()
    for call in calls:
        if call.path in seen:
            continue
        seen.add(call.path)
        groups.setdefault((call.attention, call.source), []).append(call)
    return list(groups.values())


@dataclass(frozen=True)
class Roles:
    """The outcome of :func:`assign_roles`: role -> path (forward order) and the role groups."""

    roles: dict[str, str]
    attention_roles: tuple[str, ...]
    mlp_roles: tuple[str, ...]
    groups: tuple[tuple[str, ...], ...] = field(default_factory=tuple)


def _tokens(path: str) -> set[str]:
    return set(re.split(r"[^a-z0-9]+", path.rsplit(".", 1)[-1].lower()))


def _by_hints(group: Sequence[LinearCall], roles: Sequence[str]) -> list[str]:
    """Roles for the linears of ``group`` (in its order): by name hints when they are unambiguous,
    else by call order."""
    matched: dict[str, str] = {}
    for role in roles:
        hits = [c.path for c in group if _tokens(c.path) & _HINTS[role]]
        if len(hits) != 1 or hits[0] in matched.values():
            return list(roles)
        matched[role] = hits[0]
    by_path = {p: r for r, p in matched.items()}
    return [by_path[c.path] for c in group]


def assign_roles(groups: Sequence[Sequence[LinearCall]]) -> Roles:
    """Canonical roles from the groups of :func:`group_linears` (see the module docstring)."""
    attention = [list(g) for g in groups if g[0].attention]
    mlp = [list(g) for g in groups if not g[0].attention]
    named: dict[str, str] = {}  # path -> role

    if attention:
        first = attention[0]
        if len(first) == 3:
            named.update(zip((c.path for c in first), _by_hints(first, ("q", "k", "v")), strict=True))
        elif len(first) == 1:
            named[first[0].path] = "qkv"
        if len(attention) == 2 and len(attention[1]) == 1 and named:
            named[attention[1][0].path] = "o"
    if len(mlp) == 2 and len(mlp[1]) == 1:
        first, out = mlp[0], mlp[1][0]
        if len(first) == 2:
            named.update(zip((c.path for c in first), _by_hints(first, ("gate", "up")), strict=True))
            named[out.path] = "down"
        elif len(first) == 1 and first[0].out_features == 2 * out.in_features:
            named[first[0].path], named[out.path] = "gate_up", "down"
        elif len(first) == 1:
            named[first[0].path], named[out.path] = "fc1", "fc2"

    ordered = [c for g in attention for c in g] + [c for g in mlp for c in g]
    taken = set(named.values())
    for call in ordered:  # any other layout: a linear keeps its own name
        if call.path not in named:
            last = call.path.rsplit(".", 1)[-1]
            role = last if last not in taken else call.path.replace(".", "_")
            named[call.path] = role
            taken.add(role)
    roles = {named[c.path]: c.path for c in ordered}
    return Roles(
        roles=roles,
        attention_roles=tuple(named[c.path] for g in attention for c in g),
        mlp_roles=tuple(named[c.path] for g in mlp for c in g),
        groups=tuple(tuple(named[c.path] for c in g) for g in attention + mlp),
    )


def _in_attention(block: nn.Module, path: str) -> bool:
    parts = path.split(".")
    return any(
        _ATTENTION_CLASS.search(type(_get(block, ".".join(parts[:i]))).__name__) for i in range(1, len(parts))
    )


def _tensor_key(t: torch.Tensor) -> tuple[Any, ...]:
    # views of one tensor with the same geometry count as the same input
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)


@dataclass
class Trace:
    """What one short forward showed: block 0's linears, the block output form, the final norm."""

    calls: list[LinearCall]
    block_output_len: int
    final_norm: str | None


@contextlib.contextmanager
def _eval_no_grad(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def trace(model: nn.Module, blocks_path: str, modules: Mapping[str, nn.Module] | None = None) -> Trace:
    """Run ``model`` once on :data:`TRACE_TOKENS` tokens and record what discovery needs.

    Args:
        model: a causal LM with weights (not on the ``meta`` device).
        blocks_path: where its decoder blocks are.
        modules: the block-0 linears to watch (relative name -> module); default: every linear-like leaf.

    Raises:
        UnsupportedArchitectureError: the forward failed (its one-line reason is given).
    """
    blocks = _get(model, blocks_path)
    block0, last = blocks[0], blocks[len(blocks) - 1]
    modules = dict(role_modules(block0) if modules is None else modules)
    keys: dict[tuple[Any, ...], int] = {}
    keep: list[torch.Tensor] = []  # inputs stay alive so their storage is not reused mid-trace
    calls: list[LinearCall] = []
    out_len = [0]
    after_last: list[str] = []
    last_done = [False]
    handles = []

    def linear_hook(path: str) -> Callable[..., None]:
        attention = _in_attention(block0, path)

        def hook(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            x = args[0] if args else next(v for v in kwargs.values() if isinstance(v, torch.Tensor))
            keep.append(x)
            source = keys.setdefault(_tensor_key(x), len(keys))
            ins, outs = _features(mod)
            calls.append(LinearCall(path, source, ins, outs, attention))

        return hook

    def block0_out(mod: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        out_len[0] = len(out) if isinstance(out, tuple | list) else 0

    def last_out(mod: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        last_done[0] = True

    block_ids = {id(b) for b in blocks.modules()}
    ancestors = {id(m) for m in _ancestors(model, blocks_path)}
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    outside = {
        name: m
        for name, m in model.named_modules()
        if name and id(m) not in block_ids and id(m) not in ancestors and m is not head
    }

    def outside_hook(name: str) -> Callable[..., None]:
        def hook(mod: nn.Module, args: tuple[Any, ...]) -> None:
            if last_done[0]:
                after_last.append(name)

        return hook

    try:
        for path, module in modules.items():
            handles.append(module.register_forward_pre_hook(linear_hook(path), with_kwargs=True))
        handles.append(block0.register_forward_hook(block0_out))
        handles.append(last.register_forward_hook(last_out))
        handles += [m.register_forward_pre_hook(outside_hook(n)) for n, m in outside.items()]
        ids = _trace_ids(model)
        with _eval_no_grad(model):
            model(input_ids=ids, use_cache=False)
    except UnsupportedArchitectureError:
        raise
    except Exception as e:
        text = str(e).strip().splitlines()
        raise UnsupportedArchitectureError(
            f"architecture {_model_type(model)!r} ({type(model).__name__}): the {TRACE_TOKENS}-token forward "
            f"that discovers its linears failed: {type(e).__name__}: {text[0] if text else ''}"
        ) from e
    finally:
        for h in handles:
            h.remove()
    # the norm: the first module after the last block that has weights (else the first: OLMo's has none)
    weighted = [n for n in after_last if any(True for _ in outside[n].parameters(recurse=False))]
    final_norm = weighted[0] if weighted else after_last[0] if after_last else None
    return Trace(calls, out_len[0], final_norm)


def _ancestors(model: nn.Module, path: str) -> list[nn.Module]:
    found, mod = [model], model
    for part in path.split("."):
        mod = getattr(mod, part)
        found.append(mod)
    return found


def _trace_ids(model: nn.Module) -> torch.Tensor:
    embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    weight = getattr(embed, "weight", None)
    if weight is None or weight.device.type == "meta":
        raise UnsupportedArchitectureError(
            f"architecture {_model_type(model)!r} ({type(model).__name__}): discovery needs the model's "
            "weights (a short forward), but its input embeddings are missing or on the meta device"
        )
    vocab = int(getattr(embed, "num_embeddings", weight.shape[0]))
    return (torch.arange(TRACE_TOKENS, device=weight.device) % max(vocab - 1, 1) + 1)[None]


# -- discover ----------------------------------------------------------------------------------------------------
def _embeddings(model: nn.Module, blocks_path: str) -> tuple[str, ...]:
    token = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    names = {id(m): n for n, m in model.named_modules()}
    inside = blocks_path + "."
    others = [
        n
        for n, m in model.named_modules()
        if isinstance(m, nn.Embedding) and m is not token and not n.startswith(inside)
    ]
    first = [names[id(token)]] if token is not None and id(token) in names else []
    return tuple(first + others)


def _head_path(model: nn.Module) -> str:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    for name, module in model.named_modules():
        if module is head:
            return name
    return "lm_head"


def check_blocks_alike(model: nn.Module, adapter: ArchitectureAdapter) -> None:
    """Every block has every role path as a linear-like module.

    Raises:
        UnsupportedArchitectureError: a block lacks one (blocks of different layouts).
    """
    for index, block in enumerate(adapter.blocks(model)):
        for role, path in adapter.roles.items():
            try:
                module = _get(block, path)
            except AttributeError:
                module = None
            if module is None or not is_role_module(module):
                raise UnsupportedArchitectureError(
                    f"architecture {_model_type(model)!r}: block {index} ({type(block).__name__}) has no linear "
                    f"{path!r} (role {role!r}) although block 0 has; blocks of different layouts need a "
                    "hand adapter (slimkit.models.adapters.register_adapter)"
                )


def discover(model: nn.Module, *, blocks_path: str | None = None) -> ArchitectureAdapter:
    """The :class:`ArchitectureAdapter` of any Hugging Face causal LM, found from its module tree.

    Args:
        model: the causal LM (with weights: one forward of :data:`TRACE_TOKENS` tokens runs).
        blocks_path: where the blocks are, for a model whose ``_no_split_modules`` does not say.

    Raises:
        UnsupportedArchitectureError: no blocks, no linears in them, or blocks of different layouts.
    """
    model_type = _model_type(model)
    path, blocks = find_blocks(model, blocks_path)
    modules = role_modules(blocks[0])
    if not modules:
        raise UnsupportedArchitectureError(
            f"architecture {model_type!r}: block 0 of {path} ({type(blocks[0]).__name__}) holds no linear "
            "layer (nn.Linear, transformers Conv1D, or a module with in_features/out_features)"
        )
    traced = trace(model, path, modules)
    if not traced.calls:
        raise UnsupportedArchitectureError(
            f"architecture {model_type!r}: no linear of block 0 of {path} ran in a forward pass"
        )
    roles = assign_roles(group_linears(traced.calls))
    adapter = ArchitectureAdapter(
        family=model_type,
        model_types=(model_type,),
        blocks_path=path,
        roles=roles.roles,
        attention_roles=roles.attention_roles,
        mlp_roles=roles.mlp_roles,
        embeddings=_embeddings(model, path),
        final_norm=traced.final_norm,
        lm_head=_head_path(model),
        groups=roles.groups,
        block_output_len=traced.block_output_len,
        discovered=True,
    )
    check_blocks_alike(model, adapter)
    return adapter


def complete(model: nn.Module, adapter: ArchitectureAdapter) -> ArchitectureAdapter:
    """A hand adapter with what only a trace can tell filled in: the groups (linears that share an
    input) when it gives none, and the form of a block's output."""
    modules = adapter.block_linears(adapter.blocks(model)[0])
    traced = trace(model, adapter.blocks_path, {p: modules[r] for r, p in adapter.roles.items()})
    groups = adapter.groups
    if not groups:
        role_of = {p: r for r, p in adapter.roles.items()}
        groups = tuple(tuple(role_of[c.path] for c in g) for g in group_linears(traced.calls))
    return replace(adapter, groups=groups, block_output_len=traced.block_output_len)


# -- the load-time check (no weights) ------------------------------------------------------------------------------
def skeleton_blocks_path(config: Any, *, trust_remote_code: bool = False) -> str | None:
    """Where the causal LM ``config`` describes keeps its blocks, found on a ``meta``-device skeleton
    (nothing allocated). ``None`` when transformers cannot build the skeleton at all (the loader then
    reports why).

    Raises:
        UnsupportedArchitectureError: no causal-LM class for the config, or no blocks in it.
    """
    from transformers import AutoModelForCausalLM

    model_type = getattr(config, "model_type", "?")
    mapping = AutoModelForCausalLM._model_mapping
    remote = bool(getattr(config, "auto_map", None) or {}) and trust_remote_code
    if not remote and type(config) not in mapping:
        raise UnsupportedArchitectureError(
            f"unsupported architecture {model_type!r}: transformers has no causal-LM class for it "
            f"(families tested with discovery: {', '.join(TESTED_MODEL_TYPES)})"
        )
    try:
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except Exception:  # a config transformers cannot build: the loader says why, in its own words
        return None
    return find_blocks(skeleton)[0]
