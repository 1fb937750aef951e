"""Deterministic packed-sequence batches over one token stream, with a checkpointable position.

The corpus is one 1-D LongTensor (documents joined with EOS, see :func:`tokenize_documents`). It is
cut into windows of ``seqlen + 1`` tokens starting at ``offset + i * seqlen``; consecutive windows
share one boundary token, which is a label in the first and an input in the second, so every token
after the offset is predicted once per epoch. Each epoch visits the windows in a fresh permutation
drawn from a ``torch.Generator`` seeded by ``(seed, epoch)``.

With ``random_offset`` each epoch also draws its ``offset`` in ``[0, seqlen)`` from that generator
(the window count is the same for every offset). Why: with a fixed grid a short document that a
window boundary cuts (a question in one window, its answer in the next) is cut the same way in every
epoch and is never seen whole; shifting the grid lets each epoch see it whole with high probability.
On the factworld default model this is the difference between ~66% and ~95% closed-book accuracy on
popular facts at the same step count.

The sampler's whole state is the pair ``(epoch, index)``: storing it and re-deriving the
permutation and offset resumes the data order exactly, with no generator state to save.
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
        seed: seeds each epoch's permutation (and offset).
        random_offset: shift the window grid by a random offset each epoch. Default: True.

    Raises:
        DataError: ``token_ids`` is not 1-D integer data or holds fewer than ``seqlen + 1`` tokens.
    """

    def __init__(
        self, token_ids: torch.Tensor, seqlen: int, seed: int = 0, *, random_offset: bool = True
    ) -> None:
        if not isinstance(token_ids, torch.Tensor) or token_ids.ndim != 1:
            shape = (
                tuple(token_ids.shape) if isinstance(token_ids, torch.Tensor) else type(token_ids).__name__
            )
            raise DataError(f"token_ids must be a 1-D tensor of token ids, got {shape}")
        if token_ids.dtype.is_floating_point or token_ids.dtype.is_complex or token_ids.dtype == torch.bool:
            raise DataError(f"token_ids must hold integer token ids, got dtype {token_ids.dtype}")
        needed = seqlen + 1 + (seqlen - 1 if random_offset else 0)
        if token_ids.numel() < needed:
            raise DataError(
                f"the corpus has {token_ids.numel()} tokens, fewer than one window of seqlen+1={seqlen + 1}"
                f"{' plus the largest random offset' if random_offset else ''} ({needed} tokens); "
                "give more text or a smaller seqlen"
            )
        self.tokens = token_ids.to(device="cpu", dtype=torch.long)
        self.seqlen = seqlen
        self.seed = seed
        self.random_offset = random_offset
        # the largest offset is seqlen - 1; size the grid so every offset fits the same number of windows
        usable = self.tokens.numel() - 1 - (seqlen - 1 if random_offset else 0)
        self.n_windows = usable // seqlen
        self._position = DataPosition()
        self._perm_epoch = -1
        self._perm = torch.empty(0, dtype=torch.long)
        self._offset = 0

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
        self._draw(epoch)
        return self._perm

    def offset(self, epoch: int) -> int:
        """Where ``epoch``'s window grid starts (0 without ``random_offset``)."""
        self._draw(epoch)
        return self._offset

    def _draw(self, epoch: int) -> None:
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(self.n_windows, generator=g)
            self._offset = int(torch.randint(0, self.seqlen, (1,), generator=g)) if self.random_offset else 0
            self._perm_epoch = epoch

    def next_batch(self, batch_size: int) -> torch.Tensor:
        """The next ``batch_size`` windows, ``[batch_size, seqlen + 1]`` long; crosses epochs as needed."""
        starts = []
        epoch, index = self._position.epoch, self._position.index
        for _ in range(batch_size):
            starts.append(self.offset(epoch) + int(self.permutation(epoch)[index]) * self.seqlen)
            index += 1
            if index == self.n_windows:
                epoch, index = epoch + 1, 0
        self._position = DataPosition(epoch, index)
        return torch.stack([self.tokens[s : s + self.seqlen + 1] for s in starts])


def tokenize_documents(tokenizer: Any, docs: Iterable[str], *, separator: str | None = None) -> torch.Tensor:
    """One 1-D LongTensor of the documents' token ids.

    By default each document's ids are followed by the tokenizer's EOS id: the EOS teaches the model
    where a document ends and keeps packed windows from reading one document as the continuation of
    another. With ``separator`` (e.g. ``"\n\n"``) the documents are instead joined by that text and
    tokenized once — exactly how the perplexity protocol of the pruning literature reads held-out
    text, so a model trained this way is evaluated on in-distribution document boundaries. No
    BOS/special tokens are added (``add_special_tokens=False``).

    Raises:
        DataError: the tokenizer has no EOS token (default mode), or ``docs`` yields no tokens.
    """
    docs = [d for d in docs if d.strip()]
    if separator is not None:
        ids = tokenizer(separator.join(docs), add_special_tokens=False)["input_ids"] if docs else []
    else:
        eos = getattr(tokenizer, "eos_token_id", None)
        if eos is None:
            raise DataError("the tokenizer has no eos_token; set one so documents can be separated")
        ids = []
        for doc_ids in tokenizer(docs, add_special_tokens=False)["input_ids"] if docs else []:
            ids.extend(doc_ids)
            ids.append(eos)
    if not ids:
        raise DataError("no text to tokenize: every document is empty")
    return torch.tensor(ids, dtype=torch.long)


__all__ = ["DataPosition", "PackedSampler", "tokenize_documents"]
