"""Calibration sequences for calibrated compression (Wanda, SparseGPT, OWL, GPTQ, AWQ).

:func:`sample_calibration` draws ``nsamples`` windows of ``seqlen`` tokens, seeded;
:func:`draw_calibration` returns the same windows together with a :class:`CalibrationCoverage`
(how many distinct tokens of the source they hold). Each document is tokenized on its own with the
tokenizer's own special tokens, as in the reference code. Two modes, chosen by one rule:

* **documents** (the Wanda/SparseGPT reference's C4 sampling): when the documents *longer than*
  ``seqlen`` tokens hold at least ``nsamples * seqlen`` tokens together, each window is a random
  ``seqlen`` window of a random such document (windows may repeat a document or overlap; shorter
  documents are not used). A web corpus such as C4 always takes this path.
* **stream**: otherwise (a user's file of paragraphs, a few long paragraphs among many short ones,
  short-sentence corpora such as the built-in world) the windows come from the **concatenated**
  token stream of all documents, each followed by the tokenizer's EOS token when it has one, so
  windows may cross document boundaries. They are spread over the whole stream: when it holds at
  least ``nsamples * seqlen`` tokens the windows do not overlap and the gaps between them are
  random (every non-overlapping placement is equally likely); when it is shorter the windows are
  evenly spaced from its first token to its last (so they overlap as little as possible and the
  seed does not matter).

Without the rule, a file of 352 paragraphs with a single one longer than ``seqlen`` gave all 32
windows from that one paragraph.
"""

from __future__ import annotations

import bisect
import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from slimkit.core.errors import ConfigError, DataError

# 2^28 tokens (a 2 GiB id tensor) is 1000x the papers' 128 x 2048; more is a typo, not a calibration set
MAX_CALIBRATION_TOKENS = 1 << 28

Mode = Literal["documents", "stream"]


@dataclass(frozen=True)
class CalibrationCoverage:
    """How much of the source a calibration set holds.

    Attributes:
        mode: ``"documents"`` (random windows of long documents) or ``"stream"`` (windows of the
            EOS-joined stream); see the module docstring.
        source_tokens: tokens in the source: every document's tokens (plus one EOS separator per
            document in the stream mode).
        covered_tokens: distinct source tokens inside at least one window (a token two windows
            share counts once).
        window_tokens: ``nsamples * seqlen``.
        documents: non-empty documents in the source.
        documents_covered: documents with at least one token inside a window.
    """

    mode: Mode
    source_tokens: int
    covered_tokens: int
    window_tokens: int
    documents: int
    documents_covered: int

    @property
    def fraction(self) -> float:
        """``covered_tokens / source_tokens``."""
        return self.covered_tokens / self.source_tokens if self.source_tokens else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "fraction": self.fraction}

    def __str__(self) -> str:
        return (
            f"{self.covered_tokens:,} distinct tokens of {self.source_tokens:,} ({100 * self.fraction:.0f}%) "
            f"from {self.documents_covered} of {self.documents} documents ({self.mode} windows)"
        )


@dataclass(frozen=True)
class CalibrationSet:
    """Calibration windows and what they cover.

    Attributes:
        ids: ``LongTensor [nsamples, seqlen]``.
        coverage: see :class:`CalibrationCoverage`.
        source: the text source spec the windows came from, when known (recorded in reports).
    """

    ids: Tensor
    coverage: CalibrationCoverage
    source: str | None = None

    def describe(self) -> dict[str, Any]:
        """What a compression report records of it: shape, source and coverage (JSON-ready)."""
        return {
            "nsamples": int(self.ids.shape[0]),
            "seqlen": int(self.ids.shape[1]),
            "source": self.source,
            "coverage": self.coverage.to_dict(),
        }


def _token_ids(tokenizer: Any, documents: Sequence[str]) -> list[list[int]]:
    # verbose=False: documents longer than model_max_length are cut into windows here, on purpose
    encoded = tokenizer(list(documents), verbose=False)
    ids = encoded["input_ids"] if isinstance(encoded, dict) or hasattr(encoded, "keys") else encoded
    return [list(x) for x in ids]


def sample_calibration(
    tokenizer: Any,
    documents: Sequence[str],
    nsamples: int = 128,
    seqlen: int = 2048,
    seed: int = 0,
) -> Tensor:
    """Seeded token windows for calibration: :func:`draw_calibration`'s ``ids``.

    Returns:
        ``LongTensor [nsamples, seqlen]``.
    """
    return draw_calibration(tokenizer, documents, nsamples=nsamples, seqlen=seqlen, seed=seed).ids


def draw_calibration(
    tokenizer: Any,
    documents: Sequence[str],
    nsamples: int = 128,
    seqlen: int = 2048,
    seed: int = 0,
) -> CalibrationSet:
    """Seeded token windows for calibration and their coverage of the source (module docstring).

    Args:
        tokenizer: a Hugging Face tokenizer (called on a list of strings; its own special-token
            behaviour applies, as in the reference code).
        documents: the text source, one string per document (empty ones are skipped).
        nsamples: number of sequences. Default: 128.
        seqlen: tokens per sequence. Default: 2048.
        seed: seed of the window choice (a private RNG; global RNG state is untouched). Default: 0.

    Returns:
        :class:`CalibrationSet` with ``ids`` ``LongTensor [nsamples, seqlen]``.

    Raises:
        ConfigError: ``nsamples`` or ``seqlen`` is not a positive integer, or asks for too many tokens.
        DataError: no text, or fewer than ``seqlen`` tokens in all documents together.
    """
    for name, value in (("nsamples", nsamples), ("seqlen", seqlen)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name}={value!r} must be a positive integer")
    if nsamples * seqlen > MAX_CALIBRATION_TOKENS:
        raise ConfigError(
            f"nsamples={nsamples} x seqlen={seqlen} = {nsamples * seqlen:,} calibration tokens; "
            f"at most {MAX_CALIBRATION_TOKENS:,} are sampled"
        )
    texts = [d for d in documents if isinstance(d, str) and d.strip()]
    if not texts:
        raise DataError("the calibration source has no text (empty or whitespace-only documents)")
    ids = _token_ids(tokenizer, texts)
    rng = random.Random(seed)
    needed = nsamples * seqlen
    long_index = [i for i, doc in enumerate(ids) if len(doc) > seqlen]
    if sum(len(ids[i]) for i in long_index) >= needed:
        return _from_documents(ids, long_index, nsamples, seqlen, rng)
    return _from_stream(ids, getattr(tokenizer, "eos_token_id", None), nsamples, seqlen, rng, len(texts))


def _from_documents(
    ids: list[list[int]], long_index: list[int], nsamples: int, seqlen: int, rng: random.Random
) -> CalibrationSet:
    """The reference's sampling: a random long document, then a random window inside it."""
    windows: list[list[int]] = []
    spans: dict[int, list[tuple[int, int]]] = {}
    for _ in range(nsamples):
        index = long_index[rng.randrange(len(long_index))]
        doc = ids[index]
        start = rng.randint(0, len(doc) - seqlen - 1)
        windows.append(doc[start : start + seqlen])
        spans.setdefault(index, []).append((start, start + seqlen))
    coverage = CalibrationCoverage(
        mode="documents",
        source_tokens=sum(len(doc) for doc in ids),
        covered_tokens=sum(_union_length(s) for s in spans.values()),
        window_tokens=nsamples * seqlen,
        documents=len(ids),
        documents_covered=len(spans),
    )
    return CalibrationSet(torch.tensor(windows, dtype=torch.long), coverage)


def _from_stream(
    ids: list[list[int]],
    eos: int | None,
    nsamples: int,
    seqlen: int,
    rng: random.Random,
    n_texts: int,
) -> CalibrationSet:
    """Windows spread over the EOS-joined stream of every document."""
    stream: list[int] = []
    offsets: list[int] = []  # where each document starts in the stream
    for doc in ids:
        offsets.append(len(stream))
        stream.extend(doc)
        if eos is not None and (not doc or doc[-1] != eos):
            stream.append(eos)
    total = len(stream)
    if total < seqlen:
        raise DataError(
            f"the calibration source has {total} tokens in {n_texts} document(s); "
            f"need at least seqlen={seqlen} (and ideally nsamples*seqlen={nsamples * seqlen}): "
            "give more text or lower --seqlen"
        )
    starts = spread_starts(total, nsamples, seqlen, rng)
    windows = [stream[s : s + seqlen] for s in starts]
    spans = [(s, s + seqlen) for s in starts]
    coverage = CalibrationCoverage(
        mode="stream",
        source_tokens=total,
        covered_tokens=_union_length(spans),
        window_tokens=nsamples * seqlen,
        documents=len(ids),
        documents_covered=_documents_touched(offsets, total, spans),
    )
    return CalibrationSet(torch.tensor(windows, dtype=torch.long), coverage)


def spread_starts(total: int, nsamples: int, seqlen: int, rng: random.Random) -> list[int]:
    """Start positions of ``nsamples`` windows of ``seqlen`` spread over a stream of ``total`` tokens.

    With room for them all (``total >= nsamples * seqlen``) the windows do not overlap: the
    ``total - nsamples * seqlen`` spare tokens are split into ``nsamples + 1`` random gaps (sorted
    uniform draws, so every placement is equally likely). Otherwise the starts are evenly spaced from
    ``0`` to ``total - seqlen``. Returned in increasing order.
    """
    if total < seqlen:
        raise ValueError(f"a stream of {total} tokens has no window of {seqlen}")
    spare = total - nsamples * seqlen
    if spare >= 0:
        gaps = sorted(rng.randint(0, spare) for _ in range(nsamples))
        return [gap + i * seqlen for i, gap in enumerate(gaps)]
    last = total - seqlen
    return [round(i * last / (nsamples - 1)) for i in range(nsamples)]  # nsamples >= 2 here


def _union_length(spans: Sequence[tuple[int, int]]) -> int:
    """Length of the union of half-open ``[start, end)`` intervals."""
    covered, reach = 0, None
    for start, end in sorted(spans):
        if reach is None or start >= reach:
            covered += end - start
            reach = end
        elif end > reach:
            covered += end - reach
            reach = end
    return covered


def _documents_touched(offsets: list[int], total: int, spans: Sequence[tuple[int, int]]) -> int:
    """How many documents (starting at ``offsets`` in a stream of ``total``) some span overlaps."""
    touched: set[int] = set()
    for start, end in spans:
        first = bisect.bisect_right(offsets, start) - 1
        last = bisect.bisect_right(offsets, end - 1) - 1
        touched.update(range(max(first, 0), last + 1))
    return len(touched)
