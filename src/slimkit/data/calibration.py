"""Calibration sequences for calibrated compression (Wanda, SparseGPT, OWL, GPTQ, AWQ).

:func:`sample_calibration` draws ``nsamples`` windows of ``seqlen`` tokens, seeded, the way the
Wanda/SparseGPT reference code samples C4: pick a random document with **more than** ``seqlen``
tokens, then a random window inside it (windows may repeat a document or overlap).

When no single document is that long (short-sentence corpora such as the built-in world), it falls
back to random windows of the **concatenated** token stream of all documents (each document
followed by the tokenizer's EOS token when it has one), so windows may cross document boundaries.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from slimkit.core.errors import ConfigError, DataError

# 2^28 tokens (a 2 GiB id tensor) is 1000x the papers' 128 x 2048; more is a typo, not a calibration set
MAX_CALIBRATION_TOKENS = 1 << 28


def _token_ids(tokenizer: Any, documents: Sequence[str]) -> list[list[int]]:
    encoded = tokenizer(list(documents))
    ids = encoded["input_ids"] if isinstance(encoded, dict) or hasattr(encoded, "keys") else encoded
    return [list(x) for x in ids]


def sample_calibration(
    tokenizer: Any,
    documents: Sequence[str],
    nsamples: int = 128,
    seqlen: int = 2048,
    seed: int = 0,
) -> Tensor:
    """Seeded random token windows for calibration.

    Args:
        tokenizer: a Hugging Face tokenizer (called on a list of strings; its own special-token
            behaviour applies, as in the reference code).
        documents: the text source, one string per document.
        nsamples: number of sequences. Default: 128.
        seqlen: tokens per sequence. Default: 2048.
        seed: seed of the window choice (a private RNG; global RNG state is untouched). Default: 0.

    Returns:
        ``LongTensor [nsamples, seqlen]``.

    Raises:
        ConfigError: ``nsamples`` or ``seqlen`` is not a positive integer.
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
    long_docs = [doc for doc in ids if len(doc) > seqlen]
    windows: list[list[int]] = []
    if long_docs:
        for _ in range(nsamples):
            doc = long_docs[rng.randrange(len(long_docs))]
            start = rng.randint(0, len(doc) - seqlen - 1)
            windows.append(doc[start : start + seqlen])
    else:
        eos = getattr(tokenizer, "eos_token_id", None)
        stream: list[int] = []
        for doc in ids:
            stream.extend(doc)
            if eos is not None and (not doc or doc[-1] != eos):
                stream.append(eos)
        if len(stream) < seqlen:
            raise DataError(
                f"the calibration source has {len(stream)} tokens in {len(texts)} document(s); "
                f"need at least seqlen={seqlen} (and ideally nsamples*seqlen={nsamples * seqlen}): "
                "give more text or lower --seqlen"
            )
        for _ in range(nsamples):
            start = rng.randint(0, len(stream) - seqlen)
            windows.append(stream[start : start + seqlen])
    return torch.tensor(windows, dtype=torch.long)
