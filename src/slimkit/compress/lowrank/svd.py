"""SVD of one weight matrix at a time, cached in-process by the weight's content.

A sweep over ratios (the τ bisection, the study's 30% and 50% variants of WeLore and uniform SVD, the
uniform baseline inside every WeLore report) needs the same decompositions again and again, each on
a fresh copy of the model. The cache key is therefore the matrix's *content* (shape, dtype and a
BLAKE2b digest of its bytes), not its name or storage pointer: an untouched copy hits, an edited
weight misses. Hashing costs a fraction of the SVD it saves.

Two tables, both process-wide (:data:`SVD_CACHE`):

* spectra (``s [r]``, float64 on CPU): kept for every matrix ever decomposed; small (``r`` numbers);
* full factors (``u``, ``s``, ``vh`` in the compute dtype, on CPU): LRU-evicted beyond
  ``max_factor_bytes`` (default 2 GiB, ``SLIMKIT_SVD_CACHE_BYTES`` overrides), since they are as large
  as the weights. An evicted entry is decomposed again when its factors are needed.

``SVD_CACHE.clear()`` empties both.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict

import torch
from torch import Tensor

from slimkit.core.errors import SlimkitError

SVD_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_DEFAULT_FACTOR_BYTES = 2 << 30


class NonFiniteWeightError(SlimkitError, ValueError):
    """A weight matrix holds NaN or Inf, so it has no singular value decomposition."""


def content_key(weight: Tensor) -> tuple[tuple[int, ...], str, str]:
    """``(shape, dtype, blake2b digest of the bytes)`` of a tensor (any device)."""
    data = weight.detach().contiguous().cpu()
    raw = data.view(torch.uint8) if data.dtype != torch.bool else data.to(torch.uint8)
    digest = hashlib.blake2b(raw.numpy().tobytes(), digest_size=16).hexdigest()
    return tuple(weight.shape), str(weight.dtype), digest


def check_finite(name: str, weight: Tensor) -> None:
    """Raise :class:`NonFiniteWeightError` naming ``name`` when ``weight`` holds NaN or Inf."""
    finite = torch.isfinite(weight)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise NonFiniteWeightError(
            f"{name}: weight has {bad} NaN/Inf value(s) of {weight.numel()}; an SVD needs finite weights "
            "(the model is corrupt or diverged: reload or retrain it, or leave this matrix out with ignore=...)"
        )


def svd(weight: Tensor, *, dtype: torch.dtype = torch.float32, device: torch.device | None = None):
    """Thin SVD ``(u [m, r], s [r], vh [r, n])`` of ``weight [m, n]`` computed in ``dtype`` on ``device``."""
    w = weight.detach().to(device=device or weight.device, dtype=dtype)
    return torch.linalg.svd(w, full_matrices=False)


class SVDCache:
    """Content-keyed SVD results (see the module docstring)."""

    def __init__(self, max_factor_bytes: int | None = None) -> None:
        env = os.environ.get("SLIMKIT_SVD_CACHE_BYTES")
        self.max_factor_bytes = (
            max_factor_bytes if max_factor_bytes is not None else int(env) if env else _DEFAULT_FACTOR_BYTES
        )
        self._spectra: dict[tuple, Tensor] = {}
        self._factors: OrderedDict[tuple, tuple[Tensor, Tensor, Tensor]] = OrderedDict()
        self._factor_bytes = 0
        self.decompositions = 0  # SVDs actually computed (for tests and benchmarks)

    def clear(self) -> None:
        self._spectra.clear()
        self._factors.clear()
        self._factor_bytes = 0

    def spectrum(
        self,
        name: str,
        weight: Tensor,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | None = None,
    ) -> Tensor:
        """Singular values of ``weight``, descending (``[r]``, float64, CPU)."""
        key = (*content_key(weight), str(dtype))
        if key not in self._spectra:
            self._decompose(name, weight, key, dtype, device)
        return self._spectra[key]

    def factors(
        self,
        name: str,
        weight: Tensor,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(u, s, vh)`` of ``weight`` in ``dtype`` on CPU (computed on ``device``)."""
        key = (*content_key(weight), str(dtype))
        if key in self._factors:
            self._factors.move_to_end(key)
            return self._factors[key]
        return self._decompose(name, weight, key, dtype, device)

    def _decompose(self, name, weight, key, dtype, device) -> tuple[Tensor, Tensor, Tensor]:
        check_finite(name, weight)
        u, s, vh = (t.cpu() for t in svd(weight, dtype=dtype, device=device))
        self.decompositions += 1
        self._spectra[key] = s.to(torch.float64)
        size = sum(t.numel() * t.element_size() for t in (u, s, vh))
        if size <= self.max_factor_bytes:
            self._factors[key] = (u, s, vh)
            self._factor_bytes += size
            while self._factor_bytes > self.max_factor_bytes:
                _, old = self._factors.popitem(last=False)
                self._factor_bytes -= sum(t.numel() * t.element_size() for t in old)
        return u, s, vh


SVD_CACHE = SVDCache()
"""The process-wide cache every low-rank handler uses."""

__all__ = [
    "SVD_CACHE",
    "SVD_DTYPES",
    "NonFiniteWeightError",
    "SVDCache",
    "check_finite",
    "content_key",
    "svd",
]
