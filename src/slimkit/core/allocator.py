"""The C heap under PyTorch's CPU tensors: keep freed blocks for reuse during long calibration loops.

PyTorch allocates CPU tensors with the C library's ``malloc`` and frees them as soon as the last
reference goes. glibc serves a request above its *mmap threshold* with a fresh ``mmap`` and gives the
pages back with ``munmap`` on ``free``, and it trims the top of its heap once more than the *trim
threshold* is free there. Its dynamic threshold only rises to the size of a freed mapping, and many
different sizes alternate in a transformer block's forward (``[chunk, seq, hidden]`` activations,
``[chunk, seq, intermediate]`` MLP states, Gram terms), so every pass keeps mapping new pages and
faulting them in one 4 KiB page at a time. Measured on SmolLM2-135M, exact Wanda's two passes per
block with a method that does nothing, 32 x 512 tokens, 2 threads, 2-core VM (``python
benchmarks/heap_reuse.py --repeats 2``, alternated subprocess trials): 42.1 and 42.7 s with freed
memory kept, 45.3 and 44.8 s with glibc's defaults (0.94x; earlier single trials on a busier machine
gave 44.7/47.9 against 56.1/55.5 s). The faults are the elementwise ops' and the MLP matmuls' extra time.

:func:`heap_reuse` raises both thresholds for the duration of a block (mmap threshold to glibc's
maximum, 32 MiB on 64-bit; trim threshold to 2 GiB), so a freed activation's memory serves the next
one. glibc's own dynamic adjustment cannot be switched back on once a threshold is set, and fixed
128 KiB thresholds (its starting values) would leave the rest of the process mapping every large
tensor anew (the test suite took 532 s that way, 283 s as below; one run each). So on leaving, the
thresholds are set to where glibc's dynamic rule ends up after freeing a block at the mmap cap (mmap
threshold 32 MiB, trim threshold twice that), and the free heap is handed back to the OS with
``malloc_trim``: the process's resident memory after calibration is what it holds, not what it held
at the peak. Only glibc has ``mallopt``; elsewhere, or with ``SLIMKIT_HEAP_REUSE=0``, it does
nothing. The results of the computation do not depend on it, only the time.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import threading
from collections.abc import Iterator
from functools import cache

__all__ = ["heap_reuse", "libc"]

# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's cap on 64-bit: 4 MiB * sizeof(long)
_TRIM_THRESHOLD_KEEP = 2**31 - 1  # mallopt takes an int
# after: where glibc's dynamic thresholds settle once a block at the cap was freed (trim = 2 x mmap)
_TRIM_THRESHOLD_AFTER = 2 * _MMAP_THRESHOLD_MAX

_lock = threading.Lock()
_depth = 0


@cache
def libc() -> ctypes.CDLL | None:
    """The C library, or ``None`` where it cannot be loaded."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def _mallopt() -> ctypes._CFuncPtr | None:
    lib = libc()
    return getattr(lib, "mallopt", None) if lib is not None else None


def _set_thresholds(mmap_threshold: int, trim_threshold: int) -> bool:
    mallopt = _mallopt()
    if mallopt is None:
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1
    return mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1 and ok


@contextlib.contextmanager
def heap_reuse(enabled: bool | None = None) -> Iterator[bool]:
    """Keep freed heap memory for reuse while inside (see the module docstring); nests.

    Args:
        enabled: ``None`` follows ``SLIMKIT_HEAP_REUSE`` (on unless it is ``0``).

    Yields:
        whether the thresholds were raised (``False`` off glibc, when disabled, or when nested
        inside an outer :func:`heap_reuse` that already did).
    """
    global _depth
    if enabled is None:
        enabled = os.environ.get("SLIMKIT_HEAP_REUSE", "1").strip() != "0"
    if not enabled:
        yield False
        return
    with _lock:
        outermost = _depth == 0
        _depth += 1
        raised = outermost and _set_thresholds(_MMAP_THRESHOLD_MAX, _TRIM_THRESHOLD_KEEP)
    try:
        yield raised
    finally:
        with _lock:
            _depth -= 1
            if raised:
                _set_thresholds(_MMAP_THRESHOLD_MAX, _TRIM_THRESHOLD_AFTER)
                trim = getattr(libc(), "malloc_trim", None)
                if trim is not None:
                    trim(0)
