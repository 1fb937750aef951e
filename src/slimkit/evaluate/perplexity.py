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
from slimkit.data.sources import DOCUMENT_SEPARATOR, read_text
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
    """

    data: str | None = None
    column: str | None = None
    split: str | None = None
    seqlen: int | None = None
    batch_size: int = 8
    limit: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.data, Path):
            object.__setattr__(self, "data", str(self.data))
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
    """

    ppl: float
    mean_nll: float
    n_windows: int
    n_tokens: int
    seqlen: int

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

    Raises:
        DataError: the text is shorter than one window (the message gives both lengths).
    """
    cfg = PerplexityTaskConfig(seqlen=seqlen, batch_size=batch_size, limit=limit)  # validates the numbers
    if isinstance(documents_or_spec, str | Path):
        text = read_text(documents_or_spec)
        where = str(documents_or_spec)
    else:
        text = DOCUMENT_SEPARATOR.join(documents_or_spec)
        where = "the given documents"
    return _perplexity(model, tokenizer, text, cfg, where=where, device=device)


def text_token_ids(tokenizer: Any, text: str) -> list[int]:
    """``[prefix] + tokenizer(text, add_special_tokens=False)``: the token stream perplexity scores.

    The prefix is the tokenizer's BOS, else its EOS (:func:`~slimkit.evaluate.scoring.prefix_token_id`).
    """
    # verbose=False: the whole text is longer than model_max_length on purpose; that warning is noise here
    ids = tokenizer(text, add_special_tokens=False, return_attention_mask=False, verbose=False)["input_ids"]
    return [prefix_token_id(tokenizer), *ids]


def token_windows(
    tokenizer: Any, text: str | Sequence[str], seqlen: int, *, where: str = "text"
) -> torch.Tensor:
    """:func:`text_token_ids` of ``text`` (documents are joined with ``"\\n\\n"``) cut into
    ``[n_windows, seqlen]``, the remainder dropped."""
    if not isinstance(text, str):
        text = DOCUMENT_SEPARATOR.join(text)
    ids = text_token_ids(tokenizer, text)
    n_windows = len(ids) // seqlen
    if n_windows == 0:
        raise DataError(
            f"{where}: {len(ids)} tokens (prefix token included) is shorter than one window of "
            f"seqlen={seqlen}; give more text or a smaller seqlen"
        )
    return torch.tensor(ids[: n_windows * seqlen], dtype=torch.long).view(n_windows, seqlen)


def windows_perplexity(
    model: nn.Module,
    windows: torch.Tensor,
    *,
    batch_size: int = 8,
    device: str | torch.device | None = None,
) -> PerplexityResult:
    """Perplexity over ready-made token windows ``[n_windows, seqlen]`` (each scored independently)."""
    n_windows, seqlen = windows.shape
    target = model_device(model, device)
    nll_sum = 0.0  # a Python float (double): summing ~1e6 token losses in fp32 would drift
    with eval_mode(model), progress_bar(n_windows, "perplexity") as bar:
        for start in range(0, n_windows, batch_size):
            batch = windows[start : start + batch_size].to(target)
            logits = model(input_ids=batch, use_cache=False).logits
            for row in range(batch.shape[0]):  # one row at a time: the fp32 copy of [S, V] stays small
                nll_sum += F.cross_entropy(logits[row, :-1].float(), batch[row, 1:], reduction="sum").item()
            done = min(start + batch_size, n_windows)
            bar.update(batch.shape[0], ppl=_safe_exp(nll_sum / (done * (seqlen - 1))))
    n_tokens = n_windows * (seqlen - 1)
    mean_nll = nll_sum / n_tokens
    return PerplexityResult(
        ppl=_safe_exp(mean_nll), mean_nll=mean_nll, n_windows=n_windows, n_tokens=n_tokens, seqlen=seqlen
    )


def run_perplexity_task(
    model: nn.Module, tokenizer: Any, cfg: PerplexityTaskConfig
) -> dict[str, dict[str, Any]]:
    """The ``ppl`` suite: ``{"ppl": {"perplexity", "mean_nll", "n_windows", "seqlen", "n" (= predicted tokens)}}``."""
    spec = cfg.data or DEFAULT_DATA
    text = read_text(spec, column=cfg.column, split=cfg.split)
    result = _perplexity(model, tokenizer, text, cfg, where=spec)
    return {
        "ppl": {
            "perplexity": result.ppl,
            "mean_nll": result.mean_nll,
            "n_windows": result.n_windows,
            "seqlen": result.seqlen,
            "n": result.n_tokens,
        }
    }


def _perplexity(
    model: nn.Module,
    tokenizer: Any,
    text: str,
    cfg: PerplexityTaskConfig,
    *,
    where: str,
    device: str | torch.device | None = None,
) -> PerplexityResult:
    windows = token_windows(tokenizer, text, _resolve_seqlen(model, cfg.seqlen), where=where)
    if cfg.limit is not None:
        windows = windows[: cfg.limit]
    return windows_perplexity(model, windows, batch_size=cfg.batch_size, device=device)


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
