"""Calibration statistics shared by every calibrated method: accumulators and the Hessian factor.

* :class:`ColumnSqNorm` — ``sum over tokens of x_j^2`` per input column (Wanda's ``||X_j||_2^2``,
  OWL's outlier scan).
* :class:`Gram` — ``X^T X`` over tokens and the token count; :meth:`Gram.hessian` is the layer-wise
  reconstruction Hessian ``H = 2/N * X^T X`` of SparseGPT (and GPTQ).
* :class:`PerInput` — the statistics of each linear, stored **once per distinct input**: linears fed
  the same tensor (``q/k/v``, ``gate/up``) share one accumulator, updated once per chunk, so a
  block of a llama-style model builds four Hessians (and SparseGPT factors four), not seven.
* :func:`hessian_inverse_chol` — the damped Hessian's dead inputs and the upper Cholesky factor of
  its inverse, which the SparseGPT/GPTQ column sweep reads its updates from.

Inputs are ``[tokens, in]`` fp32 tensors, as the sequential runner hands them to ``observe``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from typing import Generic, Protocol, TypeVar

import torch
from torch import Tensor

from slimkit.core.errors import ConfigError


class Accumulator(Protocol):
    """A running statistic over chunks of inputs ``[tokens, in]``."""

    updates: int

    def add(self, inputs: Tensor) -> None: ...


class _RunningSum:
    """A sum of per-chunk terms ``term(inputs)`` over every token seen, with token and chunk counts."""

    __slots__ = ("tokens", "updates", "value")

    def __init__(self) -> None:
        self.value: Tensor | None = None
        self.tokens = 0
        self.updates = 0

    @staticmethod
    def term(inputs: Tensor) -> Tensor:
        raise NotImplementedError

    @classmethod
    def accumulate(cls, value: Tensor, inputs: Tensor) -> None:
        """``value += term(inputs)`` in place (a subclass may do it without the intermediate term)."""
        value.add_(cls.term(inputs))

    def add(self, inputs: Tensor) -> None:
        if self.value is None:
            self.value = self.term(inputs)
        else:
            self.accumulate(self.value, inputs)
        self.tokens += int(inputs.shape[0])
        self.updates += 1


class ColumnSqNorm(_RunningSum):
    """``sum_t x_tj^2`` over all tokens seen, per input column ``j`` (fp32, ``[in]``).

    Attributes:
        value: the running sum (``None`` before the first chunk).
        tokens: tokens seen.
        updates: chunks added.
    """

    __slots__ = ()

    @staticmethod
    def term(inputs: Tensor) -> Tensor:
        # a ones-row matmul sums the columns about twice as fast on CPU as .sum(0) (a strided
        # reduction), and no less accurately (blocked fp32 accumulation)
        return (inputs.new_ones(1, inputs.shape[0]) @ inputs.square()).squeeze(0)


SYMMETRIC_GRAM_MIN = 512  # input width from which the Gram term is built from its upper blocks
GRAM_BLOCK_WIDTH = 384  # about the width of those blocks (measured fastest on CPU: benchmarks/gram.py)


def gram_blocks(width: int) -> int:
    """How many column blocks :func:`symmetric_gram` splits an input of ``width`` into."""
    return 1 if width < SYMMETRIC_GRAM_MIN else max(2, round(width / GRAM_BLOCK_WIDTH))


def symmetric_gram(x: Tensor, blocks: int | None = None, *, out: Tensor | None = None) -> Tensor:
    """``x^T x`` (``x: [N, d]`` -> ``[d, d]``) from the products of its upper blocks only.

    ``x^T x`` is symmetric, so with ``x = [x_1 | ... | x_k]`` (``k`` column blocks) only the
    ``k (k + 1) / 2`` products ``x_i^T x_j``, ``i <= j``, are computed and ``x_j^T x_i = (x_i^T x_j)^T``
    is copied: ``(k + 1) / (2k)`` of the multiply-adds (3/4 for ``k = 2``, 5/8 for ``k = 4``). Each entry
    is still one dot product over the N tokens, the same as in the full product (on this project's
    CPUs the result is bitwise the full product's; ``benchmarks/gram.py`` checks and times it).

    Args:
        x: ``[N, d]``.
        blocks: ``k``; default :func:`gram_blocks` (blocks about :data:`GRAM_BLOCK_WIDTH` wide).
        out: ``[d, d]`` to accumulate into (``out += x^T x``, each block with one ``addmm_``, no
            intermediate); a new tensor when ``None``.
    """
    d = x.shape[1]
    k = gram_blocks(d) if blocks is None else max(1, min(int(blocks), d))
    fresh = out is None
    if out is not None and out.shape != (d, d):
        raise ValueError(f"out has shape {tuple(out.shape)}, expected ({d}, {d})")
    if k == 1:
        return x.T @ x if out is None else out.addmm_(x.T, x)
    if out is None:
        out = x.new_empty(d, d)
    edges = [d * i // k for i in range(k + 1)]
    parts = [x[:, lo:hi] for lo, hi in zip(edges, edges[1:], strict=False)]
    for i in range(k):
        for j in range(i, k):
            block = out[edges[i] : edges[i + 1], edges[j] : edges[j + 1]]
            if fresh:
                block.copy_(parts[i].T @ parts[j])
            else:
                block.addmm_(parts[i].T, parts[j])
            if j > i:
                out[edges[j] : edges[j + 1], edges[i] : edges[i + 1]] = block.T
    return out


class Gram(_RunningSum):
    """``X^T X`` over all tokens seen (fp32, ``[in, in]``) and the token count ``N``.

    Attributes:
        value: the running sum (``None`` before the first chunk).
        tokens: ``N``.
        updates: chunks added.
    """

    __slots__ = ()

    @staticmethod
    def term(inputs: Tensor) -> Tensor:
        return symmetric_gram(inputs)

    @classmethod
    def accumulate(cls, value: Tensor, inputs: Tensor) -> None:
        symmetric_gram(inputs, out=value)

    def hessian(self) -> Tensor:
        """``2/N * X^T X`` (a new tensor; the accumulator is unchanged)."""
        if self.value is None or self.tokens == 0:
            raise ValueError("Gram.hessian: no inputs were added")
        return self.value * (2.0 / self.tokens)


A = TypeVar("A", bound=Accumulator)


class PerInput(Generic[A]):
    """Per-linear statistics kept once per distinct input.

    The runner hands linears that share an input the *same* tensor object within a chunk, one call
    after the other (q, k, v). A linear seen for the first time right after another one, with the
    very tensor that one's accumulator was just created from, joins that accumulator; on every later
    chunk the shared accumulator is updated by whichever member comes first and the others are
    checked to bring the same tensor. A linear whose input differs is never merged, and a group
    that stops sharing raises instead of mixing statistics.

    Args:
        factory: makes an empty accumulator (:class:`ColumnSqNorm`, :class:`Gram`).
    """

    def __init__(self, factory: Callable[[], A]) -> None:
        self._factory = factory
        self._acc: dict[str, A] = {}
        self._seen: dict[str, int] = {}  # chunks observed per linear
        self._input_of: dict[int, weakref.ref[Tensor]] = {}  # id(acc) -> the tensor it last added
        self._last: tuple[weakref.ref[Tensor], A] | None = None

    def observe(self, name: str, inputs: Tensor) -> None:
        acc = self._acc.get(name)
        chunks = self._seen.get(name, 0)
        if acc is None:
            last = self._last
            if last is not None and last[0]() is inputs and last[1].updates == 1 and chunks == 0:
                acc = last[1]  # same tensor as the previous linear, on the group's first chunk
            else:
                acc = self._factory()
                self._add(acc, inputs)
            self._acc[name] = acc
        elif acc.updates == chunks:  # the first of its group this chunk
            self._add(acc, inputs)
        elif acc.updates != chunks + 1 or self._input_of[id(acc)]() is not inputs:
            members = sorted(n for n, a in self._acc.items() if a is acc)
            raise RuntimeError(
                f"{members} shared one input tensor on the first calibration chunk but not on a later "
                f"one ({name} got another); statistics cannot be shared"
            )
        self._seen[name] = chunks + 1
        self._last = (weakref.ref(inputs), acc)

    def _add(self, acc: A, inputs: Tensor) -> None:
        acc.add(inputs)
        self._input_of[id(acc)] = weakref.ref(inputs)

    def __getitem__(self, name: str) -> A:
        return self._acc[name]

    def __contains__(self, name: object) -> bool:
        return name in self._acc

    def names(self) -> Iterator[str]:
        return iter(self._acc)

    def sharing(self, name: str) -> list[str]:
        """The linears (``name`` included) whose statistics are ``name``'s, in observation order."""
        acc = self._acc[name]
        return [n for n, a in self._acc.items() if a is acc]

    def release(self, name: str) -> bool:
        """Forget ``name``; ``True`` when no other linear shares its accumulator any more."""
        acc = self._acc.pop(name)
        self._seen.pop(name, None)
        if any(a is acc for a in self._acc.values()):
            return False
        self._input_of.pop(id(acc), None)
        return True

    def clear(self) -> None:
        self._acc.clear()
        self._seen.clear()
        self._input_of.clear()
        self._last = None


def hessian_inverse_chol(hessian: Tensor, percdamp: float) -> tuple[Tensor, Tensor]:
    """Prepare a layer Hessian for an OBS column sweep (SparseGPT, arXiv 2301.00774; GPTQ).

    ``H`` ``[in, in]`` (not modified): dead inputs (``H_jj = 0``) get ``H_jj = 1``; damping adds
    ``percdamp * mean(diag H)`` to the diagonal; the result is ``U``, the upper Cholesky factor of
    ``H^-1`` (``H^-1 = U^T U``), whose rows hold the sweep's updates.

    ``U`` is computed without forming ``H^-1``: with ``J`` the index reversal, ``J H J = K K^T``
    (lower Cholesky ``K``) gives ``H = R R^T`` with ``R = J K J`` upper triangular, so
    ``H^-1 = (R^-1)^T R^-1`` and, by uniqueness of the Cholesky factor, ``U = R^-1 = J K^-1 J``:
    one Cholesky factorization and one triangular inverse (the reference's
    ``chol(cholesky_inverse(chol(H)), upper=True)`` takes two factorizations and an inverse, and
    ``cholesky_inverse`` is slow on CPU). Equal to it up to float rounding.

    Returns:
        ``(U, dead)``: fp32 ``[in, in]`` and the bool ``[in]`` mask of dead inputs.

    Raises:
        ConfigError: ``H`` is not positive definite even after damping (raise ``percdamp``).
    """
    H = hessian.detach().to(torch.float32, copy=True)
    dead = torch.diagonal(H) == 0
    H[dead, dead] = 1.0
    torch.diagonal(H).add_(percdamp * torch.diagonal(H).mean())
    K, info = torch.linalg.cholesky_ex(H.flip(0, 1))
    if int(info) != 0:
        raise ConfigError(
            f"SparseGPT: the Hessian is not positive definite with percdamp={percdamp}; increase percdamp"
        )
    eye = torch.eye(H.shape[0], dtype=H.dtype, device=H.device)
    U = torch.linalg.solve_triangular(K, eye, upper=False).flip(0, 1)
    return U, dead
