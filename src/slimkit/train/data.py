"""Deterministic packed-sequence batches over one token stream, with a checkpointable position.

The corpus is one 1-D LongTensor (documents joined with EOS, see :func:`tokenize_documents`). It is
cut into ``n = (T - 1) // seqlen`` windows of ``seqlen + 1`` tokens starting at ``i * seqlen``;
consecutive windows share one boundary token, which is a label in the first and an input in the
second, so every token but the first is predicted exactly once per epoch. Each epoch visits the
windows in a fresh permutation drawn from a ``torch.Generator`` seeded by ``(seed, epoch)``, so
the sampler's whole state is the pair ``(epoch, index)``: storing it and re-deriving the
permutation resumes the data order exactly, with no generator state to save.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from slimkit.core.errors import DataError


@dataclass(frozen=True)
class DataPosition:
    """Where the sampler is: the next window is ``permutation(epoch)[index]``."""

    epoch: int = 0
    index: int = 0


class PackedSampler:
    """Batches of ``[batch, seqlen + 1]`` windows (inputs ``[:, :-1]``, labels ``[:, 1:]``).

    Args:
        token_ids: 1-D integer tensor, the whole tokenized corpus.
        seqlen: tokens the model sees per window.
        seed: seeds each epoch's permutation.

    Raises:
        DataError: ``token_ids`` is not 1-D integer data or holds fewer than ``seqlen + 1`` tokens.
    """

    def __init__(self, token_ids: torch.Tensor, seqlen: int, seed: int = 0) -> None:
        if not isinstance(token_ids, torch.Tensor) or token_ids.ndim != 1:
            shape = (
                tuple(token_ids.shape) if isinstance(token_ids, torch.Tensor) else type(token_ids).__name__
            )
            raise DataError(f"token_ids must be a 1-D tensor of token ids, got {shape}")
        if token_ids.dtype.is_floating_point or token_ids.dtype.is_complex or token_ids.dtype == torch.bool:
            raise DataError(f"token_ids must hold integer token ids, got dtype {token_ids.dtype}")
        if token_ids.numel() < seqlen + 1:
            raise DataError(
                f"the corpus has {token_ids.numel()} tokens, fewer than one window of seqlen+1={seqlen + 1}; "
                "give more text or a smaller seqlen"
            )
        self.tokens = token_ids.to(device="cpu", dtype=torch.long)
        self.seqlen = seqlen
        self.seed = seed
        self.n_windows = (self.tokens.numel() - 1) // seqlen
        self._position = DataPosition()
        self._perm_epoch = -1
        self._perm = torch.empty(0, dtype=torch.long)

    @property
    def position(self) -> DataPosition:
        return self._position

    def set_position(self, position: DataPosition) -> None:
        if not (position.epoch >= 0 and 0 <= position.index < self.n_windows):
            raise DataError(
                f"data position {position} is outside this corpus ({self.n_windows} windows per epoch)"
            )
        self._position = position

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._position.epoch, "index": self._position.index, "n_windows": self.n_windows}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("n_windows", self.n_windows) != self.n_windows:
            raise DataError(
                f"saved data position is for {state['n_windows']} windows per epoch, this corpus has {self.n_windows}"
            )
        self.set_position(DataPosition(int(state["epoch"]), int(state["index"])))

    def permutation(self, epoch: int) -> torch.Tensor:
        """Window order of ``epoch``: a pure function of ``(seed, epoch)``."""
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm, self._perm_epoch = torch.randperm(self.n_windows, generator=g), epoch
        return self._perm

    def next_batch(self, batch_size: int) -> torch.Tensor:
        """The next ``batch_size`` windows, ``[batch_size, seqlen + 1]`` long; crosses epochs as needed."""
        starts = []
        epoch, index = self._position.epoch, self._position.index
        for _ in range(batch_size):
            starts.append(int(self.permutation(epoch)[index]) * self.seqlen)
            index += 1
            if index == self.n_windows:
                epoch, index = epoch + 1, 0
        self._position = DataPosition(epoch, index)
        return torch.stack([self.tokens[s : s + self.seqlen + 1] for s in starts])


def tokenize_documents(tokenizer: Any, docs: Iterable[str]) -> torch.Tensor:
    """One 1-D LongTensor: each document's ids followed by the tokenizer's EOS id.

    The EOS between documents teaches the model where a document ends and keeps packed windows
    from reading one document as the continuation of another. No BOS/special tokens are added
    (``add_special_tokens=False``).

    Raises:
        DataError: the tokenizer has no EOS token, or ``docs`` yields no tokens.
    """
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise DataError("the tokenizer has no eos_token; set one so documents can be separated")
    docs = [d for d in docs if d.strip()]
    ids: list[int] = []
    for doc_ids in tokenizer(docs, add_special_tokens=False)["input_ids"] if docs else []:
        ids.extend(doc_ids)
        ids.append(eos)
    if not ids:
        raise DataError("no text to tokenize: every document is empty")
    return torch.tensor(ids, dtype=torch.long)


__all__ = ["DataPosition", "PackedSampler", "tokenize_documents"]
