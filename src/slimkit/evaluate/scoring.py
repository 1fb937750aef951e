"""Log-likelihood scoring of continuations, with each context run through the model once.

Multiple-choice evaluation (LLM-KICK's MMLU, lm-eval's ``loglikelihood`` requests) asks, for a
context ``c`` and candidate continuations ``x^(1..k)``::

    score(x) = sum_{j=1..|x|} log p(x_j | c, x_<j)          (nats; ``ContinuationScore.logprob``)

lm-eval sends one request per (context, option) and runs the whole context again for every option.
Here the contexts of a batch are left-padded and run once with the KV cache on; the cache is then
repeated per option (``cache.reorder_cache``) and only the option tokens are run on top of it. A
question with k options costs one context pass plus k short passes instead of k full passes.

Tokenization follows lm-eval 0.4's HF model so the two give the same numbers: whitespace at the end
of the context moves to the start of the continuation, the context is encoded alone with the
tokenizer's default special tokens (its BOS, unless the text already starts with it:
:func:`slimkit.evaluate.prompting.encode`), and the continuation tokens are
``encode(context + continuation)[len(encode(context)):]``. An empty context is the prefix token
(BOS, else EOS) and the continuation encoded without special tokens. A context plus continuation
longer than the model's positions is cut from the left to the last ``max_positions + 1`` tokens,
as lm-eval does, rather than refused.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from slimkit.core.config import check_range
from slimkit.core.errors import DataError
from slimkit.core.progress import console, progress_bar
from slimkit.evaluate._runtime import eval_mode, max_positions, model_device
from slimkit.evaluate.generation import left_pad, pad_token_id
from slimkit.evaluate.prompting import encode


@dataclass(frozen=True)
class ContinuationScore:
    """The model's log-likelihood of one continuation.

    Attributes:
        logprob: ``sum_j log p(x_j | c, x_<j)`` in nats.
        n_tokens: ``|x|``, the continuation's token count.
        is_greedy: every continuation token is the argmax of its distribution (lm-eval's ``is_greedy``).
    """

    logprob: float
    n_tokens: int
    is_greedy: bool


def split_context(
    tokenizer: Any,
    context: str,
    continuation: str,
    *,
    add_special_tokens: bool | None = None,
    add_bos_token: bool | None = None,
) -> tuple[list[int], list[int]]:
    """``(context token ids, continuation token ids)`` tokenized as lm-eval does (module docstring).

    ``add_special_tokens``: None (default) = the tokenizer's default (its BOS, or ``add_bos_token``
    when given) unless the context already starts with the BOS string, as lm-eval 0.4's HF model;
    True / False force it (:func:`slimkit.evaluate.prompting.encode`).

    Raises:
        DataError: the continuation has no tokens.
    """
    if context == "":
        cont = encode(tokenizer, continuation, add_special_tokens=False)
        if not cont:
            raise DataError(f"continuation {continuation!r} has no tokens")
        prefix = prefix_token_id(tokenizer)
        # lm-eval: a continuation that itself starts with the prefix token is its own context
        return ([prefix], cont) if cont[0] != prefix or len(cont) == 1 else (cont[:1], cont[1:])
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    special = {"add_special_tokens": add_special_tokens, "add_bos_token": add_bos_token}
    ctx = encode(tokenizer, context, **special)
    whole = encode(tokenizer, context + continuation, **special)
    if whole[: len(ctx)] == ctx:
        cont = whole[len(ctx) :]
    else:
        cont = encode(tokenizer, continuation, add_special_tokens=False)
    if not cont:
        raise DataError(f"continuation {continuation!r} after {context[-40:]!r} has no tokens")
    if not ctx:
        # a context of only whitespace, without BOS, still needs one position to predict from
        ctx = [prefix_token_id(tokenizer)]
    return list(ctx), list(cont)


def prefix_token_id(tokenizer: Any) -> int:
    """The token an empty context starts from: BOS, else EOS (lm-eval's choice), else the pad id."""
    for name in ("bos_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return pad_token_id(tokenizer)


def score_continuations(
    model: nn.Module,
    tokenizer: Any,
    requests: Sequence[tuple[str, Sequence[str]]],
    *,
    batch_size: int = 16,
    add_special_tokens: bool | None = None,
    device: str | torch.device | None = None,
) -> list[list[ContinuationScore]]:
    """Score every continuation of every ``(context, [continuation, ...])`` request.

    Args:
        model, tokenizer: a Hugging Face causal LM and its tokenizer.
        requests: contexts, each with the continuations to score after it (e.g. a question's options,
            each starting with the space that separates it from the prompt).
        batch_size: contexts per forward pass (all of a context's continuations go in the same
            pass), >= 1. The scores do not depend on it beyond float rounding.
        add_special_tokens: None (default): the tokenizer's BOS as lm-eval adds it (not twice);
            True / False force it on / off.
        device: where inputs go. Default: the model's device.

    Returns:
        ``scores[i][j]``: the :class:`ContinuationScore` of continuation ``j`` of request ``i``.

    Raises:
        DataError: a request without continuations, a continuation without tokens, or a
            continuation longer than the model's maximum positions (a long context is cut instead).
    """
    encoded: list[tuple[list[int], list[list[int]]]] = []
    owners: list[tuple[int, list[int]]] = []
    for i, (context, continuations) in enumerate(requests):
        if not continuations:
            raise DataError(f"request #{i} has no continuations to score")
        pairs = [
            split_context(tokenizer, context, c, add_special_tokens=add_special_tokens) for c in continuations
        ]
        # the context is encoded alone, so the options of a request share its tokens (unless an
        # empty context made one option start with the prefix token itself)
        by_ctx: dict[tuple[int, ...], list[int]] = {}
        for j, (ctx, _) in enumerate(pairs):
            by_ctx.setdefault(tuple(ctx), []).append(j)
        for ctx, js in by_ctx.items():
            encoded.append((list(ctx), [pairs[j][1] for j in js]))
            owners.append((i, js))
    flat = score_token_requests(
        model, encoded, pad_id=pad_token_id(tokenizer), batch_size=batch_size, device=device
    )
    results: list[list[ContinuationScore]] = [[None] * len(c) for _, c in requests]  # type: ignore[list-item]
    for (i, js), scores in zip(owners, flat, strict=True):
        for j, score in zip(js, scores, strict=True):
            results[i][j] = score
    return results


def score_token_requests(
    model: nn.Module,
    requests: Sequence[tuple[Sequence[int], Sequence[Sequence[int]]]],
    *,
    pad_id: int = 0,
    batch_size: int = 16,
    device: str | torch.device | None = None,
) -> list[list[ContinuationScore]]:
    """:func:`score_continuations` on token ids: ``[(context ids, [continuation ids, ...]), ...]``.

    ``pad_id`` fills padding (never attended to). A context + continuation longer than the model's
    positions keeps its last ``positions + 1`` tokens (lm-eval's left truncation: the context loses
    its beginning); the continuations of a request that need different cuts are scored apart.

    Raises:
        DataError: an empty context or continuation, or a continuation longer than the positions.
    """
    check_range("batch_size", batch_size, 1, None)
    limit = max_positions(model)
    # (request, continuation index) of every scored continuation, grouped by the context it is scored on
    groups: dict[tuple[int, tuple[int, ...]], list[int]] = {}
    contexts: list[tuple[int, list[int]]] = []
    cut = 0
    for i, (ctx, conts) in enumerate(requests):
        if not ctx or not conts or not all(conts):
            raise DataError(f"request #{i} needs a non-empty context and non-empty continuations")
        for j, cont in enumerate(conts):
            use = list(ctx)
            # the last continuation token is predicted, never fed: the model sees one token fewer
            if limit is not None and len(ctx) + len(cont) - 1 > limit:
                if len(cont) > limit:
                    raise DataError(
                        f"request #{i}: a continuation of {len(cont)} tokens does not fit in the "
                        f"model's {limit} positions"
                    )
                use, cut = use[-(limit + 1 - len(cont)) :], cut + 1
            key = (i, tuple(use))
            if key not in groups:
                groups[key] = []
                contexts.append(key)
            groups[key].append(j)
    if cut:
        console().print(
            f"[yellow]note[/yellow]: {cut} scored continuation(s) with contexts longer than the model's "
            f"{limit} positions; their contexts were cut from the left (as lm-eval does)"
        )
    encoded = [(list(key[1]), [list(requests[key[0]][1][j]) for j in groups[key]]) for key in contexts]

    target = model_device(model, device)
    # longest first: similar lengths share a batch, and an out-of-memory shows up at once
    order = sorted(range(len(encoded)), key=lambda i: (-len(encoded[i][0]), i))
    flat: list[list[ContinuationScore]] = [[] for _ in encoded]
    with eval_mode(model), progress_bar(len(encoded), "score options") as bar:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = [encoded[i] for i in idx]
            for i, scores in zip(idx, _score_batch(model, batch, pad_id, target), strict=True):
                flat[i] = scores
            bar.update(len(idx))
    results: list[list[ContinuationScore | None]] = [[None] * len(conts) for _, conts in requests]
    for key, scores in zip(contexts, flat, strict=True):
        for j, score in zip(groups[key], scores, strict=True):
            results[key[0]][j] = score
    return results  # type: ignore[return-value]


def _score_batch(
    model: nn.Module,
    batch: Sequence[tuple[list[int], list[list[int]]]],
    pad_id: int,
    device: torch.device,
) -> list[list[ContinuationScore]]:
    """One context pass for the batch, then one pass of every continuation on the repeated cache."""
    ctx_ids, ctx_mask = left_pad([ctx for ctx, _ in batch], pad_id)
    ctx_ids, ctx_mask = ctx_ids.to(device), ctx_mask.to(device)
    out = model(input_ids=ctx_ids, attention_mask=ctx_mask, position_ids=positions(ctx_mask), use_cache=True)
    # the last context position predicts each continuation's first token
    first_logprobs = F.log_softmax(out.logits[:, -1, :].float(), dim=-1)  # [B, V]
    cache = getattr(out, "cache", None) or out.past_key_values

    rows = [(b, cont) for b, (_, conts) in enumerate(batch) for cont in conts]
    owner = torch.tensor([b for b, _ in rows], device=device)
    width = max(len(cont) for _, cont in rows)
    cont_ids = torch.full((len(rows), width), pad_id, dtype=torch.long, device=device)
    cont_mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    for r, (_, cont) in enumerate(rows):
        cont_ids[r, : len(cont)] = torch.tensor(cont, device=device)
        cont_mask[r, : len(cont)] = 1

    cont_logprobs = None
    if width > 1:
        cache.reorder_cache(owner)
        mask = torch.cat([ctx_mask[owner], cont_mask], dim=1)
        start = ctx_mask[owner].sum(dim=1, keepdim=True)
        pos = start + torch.arange(width, device=device).unsqueeze(0)
        # only tokens 0..width-2 are inputs: the last one is predicted, never fed
        cont_out = model(
            input_ids=cont_ids[:, :-1],
            attention_mask=mask[:, :-1],
            position_ids=pos[:, :-1],
            use_cache=True,
            **{_cache_argument(model): cache},
        )
        cont_logprobs = F.log_softmax(cont_out.logits.float(), dim=-1)  # [R, width-1, V]

    scores: list[list[ContinuationScore]] = [[] for _ in batch]
    for r, (b, cont) in enumerate(rows):
        dists = [first_logprobs[b]]
        if cont_logprobs is not None:
            dists += [cont_logprobs[r, j] for j in range(len(cont) - 1)]
        stacked = torch.stack(dists)  # [len(cont), V]
        target = torch.tensor(cont, device=stacked.device)
        token_lp = stacked.gather(1, target.unsqueeze(1)).squeeze(1)
        greedy = bool((stacked.argmax(dim=-1) == target).all())
        scores[b].append(ContinuationScore(float(token_lp.sum()), len(cont), greedy))
    return scores


def _cache_argument(model: nn.Module) -> str:
    # transformers >= 5.2x renamed ``past_key_values`` to ``cache`` (the old name warns, then goes)
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids of left-padded rows: 0 at each row's first real token (pads get 0 too)."""
    return (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
