"""Perplexity of a text as written, with the windows of the pruning literature (SparseGPT, Wanda, OWL, LLM-KICK).

The text is scored exactly as given: a ``.txt`` file as written (:func:`slimkit.data.sources.read_text`:
no re-split at blank lines), documents (JSONL/parquet/HF rows, a list of strings) joined with
``"\\n\\n"`` (the WikiText protocol). It is tokenized **once**, without the tokenizer's special
tokens, and one prefix token is put in front: ``BOS``, or ``EOS`` when the tokenizer has no BOS
(lm-eval's ``prefix_token_id``; :func:`slimkit.evaluate.scoring.prefix_token_id`)::

    ids = [prefix] + tokenizer(text, add_special_tokens=False).input_ids

With a LLaMA tokenizer this is exactly the literature's ``tokenizer(text)`` (which adds one BOS at
the very start), and as in lm-eval's rolling log-likelihood the first token of the text is predicted
from the prefix. ``ids`` is cut into non-overlapping windows of ``seqlen`` tokens; the remainder
shorter than a window is dropped. Each window ``w = (t_1..t_S)`` is scored on its own (no context
carried over) and predicts its ``S - 1`` next tokens::

    NLL(w)   = -1/(S-1) * sum_{i=2..S} log p(t_i | t_1..t_{i-1})      (= HF loss with labels=input_ids)
    mean_nll = mean over windows of NLL(w)                              (every window has S-1 targets)
    ppl      = exp(mean_nll)

Default ``seqlen`` is ``min(max positions of the model, 2048)``.

Answer-token perplexity. Perplexity averages every token, so on text about facts most of its loss
sits on the subjects' names, whose prior a damaged model may flatten to its profit. Given the
character spans of the facts' objects in the text (``A``, e.g. the world's
``heldout.answers.jsonl``), the same windows are also scored on the answer tokens alone: the
tokens whose character span overlaps a span of ``A`` and that a window predicts::

    answer_mean_nll = -1/|T_A| * sum_{(w, i) in T_A} log p(t_i | t_1..t_{i-1})
    answer_ppl      = exp(answer_mean_nll)

with ``T_A`` the (window, position >= 2) pairs holding an answer token. It measures the knowledge
the text states, not the names around it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from slimkit.core.config import Config, check_range
from slimkit.core.errors import ConfigError, DataError
from slimkit.core.progress import progress_bar
from slimkit.data.sources import DOCUMENT_SEPARATOR, jsonl_rows, read_text
from slimkit.evaluate._runtime import eval_mode, max_positions, model_device
from slimkit.evaluate.scoring import prefix_token_id

DEFAULT_MAX_SEQLEN = 2048
DEFAULT_DATA = "world:heldout"


@dataclass(frozen=True)
class PerplexityTaskConfig(Config):
    """The ``ppl`` suite: perplexity of one text source as written (see the module docstring).

    Attributes:
        data (str | None): a text source spec for :func:`slimkit.data.sources.read_text` (a ``.txt``
            file is scored as written; e.g. ``"python-docs:eval"`` for real English with no file).
            Default: ``None`` = ``"world:heldout"``, the built-in world's held-out text.
        column (str | None): text field of a JSONL/parquet/HF source. Default: ``None`` (``"text"``).
        split (str | None): split of a saved ``DatasetDict``. Default: ``None``.
        seqlen (int | None): window length in tokens, >= 2. Default: ``None`` = min(max positions, 2048).
        batch_size (int): windows per forward pass, >= 1. Default: 8.
        limit (int | None): score at most this many windows (the first ones), >= 1. Default: all.
        answers (str | None): a JSONL file of answer spans in the scored text, one
            ``{"start": int, "end": int}`` a line (character offsets, end exclusive), for answer-token
            perplexity. Default: None = the spans the source ships: ``world:heldout``'s, or a
            ``<stem>.answers.jsonl`` file beside a ``<stem>.txt`` source (the world's ``heldout.txt``
            has one); a source without them gets no answer-token perplexity.
    """

    data: str | None = None
    column: str | None = None
    split: str | None = None
    seqlen: int | None = None
    batch_size: int = 8
    limit: int | None = None
    answers: str | None = None

    def __post_init__(self) -> None:
        for name in ("data", "answers"):
            if isinstance(getattr(self, name), Path):
                object.__setattr__(self, name, str(getattr(self, name)))
        super().__post_init__()
        if self.seqlen is not None:
            check_range("seqlen", self.seqlen, 2, None)
        check_range("batch_size", self.batch_size, 1, None)
        if self.limit is not None:
            check_range("limit", self.limit, 1, None)


@dataclass(frozen=True)
class PerplexityResult:
    """Outcome of :func:`perplexity`.

    Attributes:
        ppl: ``exp(mean_nll)``.
        mean_nll: mean next-token negative log-likelihood in nats.
        n_windows: windows scored.
        n_tokens: tokens predicted, ``n_windows * (seqlen - 1)``.
        seqlen: window length in tokens.
        answer_ppl: ``exp(answer_mean_nll)``; None without answer spans.
        answer_mean_nll: mean NLL of the answer tokens the windows predict; None without answer spans.
        n_answer_tokens: answer tokens scored.
    """

    ppl: float
    mean_nll: float
    n_windows: int
    n_tokens: int
    seqlen: int
    answer_ppl: float | None = None
    answer_mean_nll: float | None = None
    n_answer_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def perplexity(
    model: nn.Module,
    tokenizer: Any,
    documents_or_spec: str | Path | Sequence[str],
    *,
    seqlen: int | None = None,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    limit: int | None = None,
    answer_spans: Sequence[tuple[int, int]] | None = None,
) -> PerplexityResult:
    """Perplexity of ``model`` on a text source as written, literature windows (see the module docstring).

    Args:
        model: a causal LM returning ``.logits`` of shape ``[batch, seqlen, vocab]``.
        tokenizer: its tokenizer (called once on the whole text, ``add_special_tokens=False``; the
            prefix token is its BOS, else its EOS).
        documents_or_spec: a source spec (str/Path, e.g. ``"wiki.test.raw.txt"``, ``"wiki.jsonl"`` or
            ``"world:heldout"``; a ``.txt`` file is scored as written) or the documents themselves as a
            list of strings (joined with ``"\\n\\n"``).
        seqlen: window length. Default: min(model max positions, 2048).
        batch_size: windows per forward pass; the result does not depend on it. Default: 8.
        device: where the windows are sent. Default: the model's device (the model is not moved).
        limit: score only the first ``limit`` windows. Default: all.
        answer_spans: ``(start, end)`` character spans of the answers in the text (in the joined
            text for a list of documents); when given, answer-token perplexity is computed too.
            Default: None (for a spec, the spans it ships, see :class:`PerplexityTaskConfig`).

    Raises:
        DataError: the text is shorter than one window (the message gives both lengths), or an
            answer span lies outside the text.
    """
    cfg = PerplexityTaskConfig(seqlen=seqlen, batch_size=batch_size, limit=limit)  # validates the numbers
    if isinstance(documents_or_spec, str | Path):
        text = read_text(documents_or_spec)
        where = str(documents_or_spec)
        if answer_spans is None:
            answer_spans = shipped_answer_spans(where)
    else:
        text = DOCUMENT_SEPARATOR.join(documents_or_spec)
        where = "the given documents"
    return _perplexity(model, tokenizer, text, cfg, where=where, device=device, answer_spans=answer_spans)


def text_token_ids(tokenizer: Any, text: str) -> list[int]:
    """``[prefix] + tokenizer(text, add_special_tokens=False)``: the token stream perplexity scores.

    The prefix is the tokenizer's BOS, else its EOS (:func:`~slimkit.evaluate.scoring.prefix_token_id`).
    """
    # verbose=False: the whole text is longer than model_max_length on purpose; that warning is noise here
    ids = tokenizer(text, add_special_tokens=False, return_attention_mask=False, verbose=False)["input_ids"]
    return [prefix_token_id(tokenizer), *ids]


def answer_token_mask(tokenizer: Any, text: str, spans: Sequence[tuple[int, int]]) -> list[bool]:
    """Which tokens of :func:`text_token_ids` ``(tokenizer, text)`` are answer tokens: those whose
    character span overlaps some ``(start, end)`` of ``spans`` (the prefix token never is).

    Raises:
        DataError: a span outside the text or empty, or a tokenizer without offsets (a slow one).
    """
    for start, end in spans:
        if not (0 <= start < end <= len(text)):
            raise DataError(
                f"answer span ({start}, {end}) is empty or outside the text of {len(text)} characters"
            )
    if not getattr(tokenizer, "is_fast", False):
        raise DataError("answer-token perplexity needs a fast tokenizer (character offsets of each token)")
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    ordered = sorted(spans)
    mask, j = [False], 0  # the prefix token
    for a, b in enc["offset_mapping"]:  # token starts never decrease
        while j < len(ordered) and ordered[j][1] <= a:  # spans that ended before this token
            j += 1
        hit, k = False, j
        while not hit and k < len(ordered) and ordered[k][0] < b:
            hit = ordered[k][1] > a and b > a
            k += 1
        mask.append(hit)
    return mask


def token_windows(
    tokenizer: Any, text: str | Sequence[str], seqlen: int, *, where: str = "text"
) -> torch.Tensor:
    """:func:`text_token_ids` of ``text`` (documents are joined with ``"\\n\\n"``) cut into
    ``[n_windows, seqlen]``, the remainder dropped."""
    if not isinstance(text, str):
        text = DOCUMENT_SEPARATOR.join(text)
    return _cut(text_token_ids(tokenizer, text), seqlen, where, torch.long)


def _cut(values: list[int] | list[bool], seqlen: int, where: str, dtype: torch.dtype) -> torch.Tensor:
    n_windows = len(values) // seqlen
    if n_windows == 0:
        raise DataError(
            f"{where}: {len(values)} tokens (prefix token included) is shorter than one window of "
            f"seqlen={seqlen}; give more text or a smaller seqlen"
        )
    return torch.tensor(values[: n_windows * seqlen], dtype=dtype).view(n_windows, seqlen)


def windows_perplexity(
    model: nn.Module,
    windows: torch.Tensor,
    *,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    answer_mask: torch.Tensor | None = None,
) -> PerplexityResult:
    """Perplexity over ready-made token windows ``[n_windows, seqlen]`` (each scored independently);
    with ``answer_mask`` (bool, same shape: which tokens are answer tokens) answer-token perplexity too."""
    n_windows, seqlen = windows.shape
    if answer_mask is not None and answer_mask.shape != windows.shape:
        raise ValueError(f"answer_mask has shape {tuple(answer_mask.shape)}, windows {tuple(windows.shape)}")
    target = model_device(model, device)
    nll_sum = 0.0  # a Python float (double): summing ~1e6 token losses in fp32 would drift
    answer_sum, n_answer = 0.0, 0
    with eval_mode(model), progress_bar(n_windows, "perplexity") as bar:
        for start in range(0, n_windows, batch_size):
            batch = windows[start : start + batch_size].to(target)
            logits = model(input_ids=batch, use_cache=False).logits
            for row in range(batch.shape[0]):  # one row at a time: the fp32 copy of [S, V] stays small
                losses = F.cross_entropy(logits[row, :-1].float(), batch[row, 1:], reduction="none")
                nll_sum += losses.sum().item()
                if answer_mask is not None:
                    picked = answer_mask[start + row, 1:].to(losses.device)
                    answer_sum += losses[picked].sum().item()
                    n_answer += int(picked.sum().item())
            done = min(start + batch_size, n_windows)
            bar.update(batch.shape[0], ppl=_safe_exp(nll_sum / (done * (seqlen - 1))))
    n_tokens = n_windows * (seqlen - 1)
    mean_nll = nll_sum / n_tokens
    answer_nll = answer_sum / n_answer if n_answer else None
    return PerplexityResult(
        ppl=_safe_exp(mean_nll),
        mean_nll=mean_nll,
        n_windows=n_windows,
        n_tokens=n_tokens,
        seqlen=seqlen,
        answer_ppl=None if answer_nll is None else _safe_exp(answer_nll),
        answer_mean_nll=answer_nll,
        n_answer_tokens=n_answer,
    )


ANSWERS_SUFFIX = ".answers.jsonl"
"""``notes.txt`` may ship its answer spans in ``notes.answers.jsonl`` beside it."""


def shipped_answer_spans(spec: str | Path) -> list[tuple[int, int]] | None:
    """The answer spans a text source ships: the built-in world's for ``world:heldout``, the
    ``<stem>.answers.jsonl`` beside a ``<stem>.txt`` file, else None."""
    if str(spec) == DEFAULT_DATA:
        from slimkit.data.sources import world_heldout_answer_spans

        return world_heldout_answer_spans()
    path = Path(spec)
    beside = path.with_name(path.stem + ANSWERS_SUFFIX)
    if path.suffix.lower() == ".txt" and beside.is_file():
        return read_answer_spans(beside)
    return None


def read_answer_spans(path: str | Path) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` from a JSONL file of ``{"start": int, "end": int, ...}`` objects.

    Raises:
        DataError: a missing file, or a line without integer ``start`` < ``end``.
    """
    spans = []
    for lineno, row in jsonl_rows(path):
        start, end = row.get("start"), row.get("end")
        if not (_is_int(start) and _is_int(end) and 0 <= start < end):
            raise DataError(
                f'{path}:{lineno}: expected {{"start": int, "end": int}} with 0 <= start < end, got {row!r:.80}'
            )
        spans.append((start, end))
    return spans


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def run_perplexity_task(
    model: nn.Module, tokenizer: Any, cfg: PerplexityTaskConfig
) -> dict[str, dict[str, Any]]:
    """The ``ppl`` suite: ``{"ppl": {"perplexity", "mean_nll", "n_windows", "seqlen", "n" (= predicted tokens)}}``."""
    spec = cfg.data or DEFAULT_DATA
    text = read_text(spec, column=cfg.column, split=cfg.split)
    spans = read_answer_spans(cfg.answers) if cfg.answers is not None else shipped_answer_spans(spec)
    result = _perplexity(model, tokenizer, text, cfg, where=spec, answer_spans=spans)
    metrics: dict[str, Any] = {
        "perplexity": result.ppl,
        "mean_nll": result.mean_nll,
        "n_windows": result.n_windows,
        "seqlen": result.seqlen,
        "n": result.n_tokens,
    }
    if result.answer_ppl is not None:
        metrics |= {
            "answer_perplexity": result.answer_ppl,
            "answer_mean_nll": result.answer_mean_nll,
            "n_answer_tokens": result.n_answer_tokens,
        }
    return {"ppl": metrics}


def _perplexity(
    model: nn.Module,
    tokenizer: Any,
    text: str,
    cfg: PerplexityTaskConfig,
    *,
    where: str,
    device: str | torch.device | None = None,
    answer_spans: Sequence[tuple[int, int]] | None = None,
) -> PerplexityResult:
    seqlen = _resolve_seqlen(model, cfg.seqlen)
    windows = token_windows(tokenizer, text, seqlen, where=where)
    mask = None
    if answer_spans is not None:
        mask = _cut(answer_token_mask(tokenizer, text, answer_spans), seqlen, where, torch.bool)
    if cfg.limit is not None:
        windows = windows[: cfg.limit]
        mask = None if mask is None else mask[: cfg.limit]
    result = windows_perplexity(model, windows, batch_size=cfg.batch_size, device=device, answer_mask=mask)
    if answer_spans is not None and result.n_answer_tokens == 0:
        raise DataError(f"{where}: none of the {len(answer_spans)} answer spans falls in a scored window")
    return result


def _resolve_seqlen(model: nn.Module, seqlen: int | None) -> int:
    limit = max_positions(model)
    if seqlen is not None:
        if limit is not None and seqlen > limit:
            raise ConfigError(f"seqlen={seqlen} exceeds the model's maximum of {limit} positions")
        return seqlen
    return min(limit, DEFAULT_MAX_SEQLEN) if limit is not None else DEFAULT_MAX_SEQLEN


def _safe_exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:  # a destroyed model; inf is the honest answer
        return math.inf
