"""Planetoid raw files (``ind.<name>.{x,tx,allx,y,ty,ally,graph,test.index}``) read without running code.

The format is Python pickles (numpy arrays, scipy sparse matrices, a ``defaultdict`` of adjacency
lists; Python 2 pickles, hence ``encoding="latin1"``). ``pickle.load`` on such a file runs whatever
callable the file names, so a booby-trapped copy in a downloaded directory would run code. Here a
:class:`RestrictedUnpickler` resolves only the few globals the format needs (numpy array and dtype
reconstruction, the scipy sparse matrix classes, ``defaultdict`` and plain containers); any other
name is refused with a :class:`~slimkit.core.errors.DataError` naming the file and the class.

Scipy sparse matrices are not rebuilt with scipy: their pickled state (``data``, ``indices``,
``indptr`` / ``row``, ``col``, ``_shape``) is collected into a plain record and densified with
bounds-checked numpy indexing, so no unchecked compiled code sees attacker-controlled indices.
Nothing under ``processed/`` is ever read (torch_geometric caches there with ``torch.save``), and
nothing is written into the dataset directory.

The graph built from the files is the one ``torch_geometric.datasets.Planetoid(split="public")``
builds (same node order, features, labels, masks and CiteSeer's zero rows for isolated test nodes).
"""

from __future__ import annotations

import io
import itertools
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slimkit.core.errors import DataError

#: refuse dense feature / label matrices with more entries than this (1 GiB of float32; PubMed has
#: 9.9 M, CiteSeer 12.3 M): a pickled sparse matrix may claim any shape at no cost in file size.
MAX_DENSE_ENTRIES = 2**28
#: refuse test.index files larger than this (CiteSeer's is ~5 kB).
MAX_INDEX_BYTES = 64 * 2**20
VALIDATION_NODES = 500  # the public split: the 500 nodes after the training nodes


# -- the restricted unpickler --------------------------------------------------------------------------
class _Sparse:
    """The pickled state of a scipy sparse matrix (never a scipy object): ``fmt`` and ``__dict__``."""

    fmt = ""

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = {**(state[0] or {}), **(state[1] or {})}
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"a {self.fmt} matrix with state of type {type(state).__name__}")
        self.__dict__.update(state)


class _CSR(_Sparse):
    fmt = "csr"


class _CSC(_Sparse):
    fmt = "csc"


class _COO(_Sparse):
    fmt = "coo"


_NUMPY_RECONSTRUCT = np.zeros(0).__reduce__()[0]  # numpy.(_)core.multiarray._reconstruct
_NUMPY_SCALAR = np.float64(0).__reduce__()[0]  # numpy.(_)core.multiarray.scalar


class _NDArrayName:
    """What ``numpy.ndarray`` resolves to: only an argument of :func:`_reconstruct`, not a callable
    (``ndarray(shape)`` would allocate whatever shape the file names)."""


_NDARRAY = _NDArrayName()


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """``ndarray`` reconstruction (the empty array ``__setstate__`` then fills), for plain arrays only."""
    if subtype is not _NDARRAY:
        raise pickle.UnpicklingError(f"array subtype {subtype!r} is not numpy.ndarray")
    if not isinstance(shape, tuple) or _count(shape) is None or _count(shape) > MAX_DENSE_ENTRIES:
        raise pickle.UnpicklingError(f"array shape {shape!r} is not a small tuple of sizes")
    return _NUMPY_RECONSTRUCT(np.ndarray, shape, dtype)


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """numpy's protocol-5 array reconstruction (``numpy._core.numeric._frombuffer``)."""
    if not isinstance(buf, bytes | bytearray | memoryview) or not isinstance(shape, tuple):
        raise pickle.UnpicklingError("malformed protocol-5 numpy array")
    if order not in ("C", "F"):
        raise pickle.UnpicklingError(f"array order {order!r} is not 'C' or 'F'")
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order)


def _scalar(dtype: Any, *args: Any) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf":
        raise pickle.UnpicklingError(f"numpy scalar of dtype {dtype!r}")
    return _NUMPY_SCALAR(dtype, *args)


def _encode(text: Any, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode``: how Python 3 pickles ``bytes`` at protocols 0-2 (always ``latin1``)."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is allowed only for latin1 text")
    return text.encode("latin1")


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copy_reg._reconstructor`` (protocol 0/1 pickles of new-style objects): plain objects only."""
    if base is not object or not (isinstance(cls, type) and issubclass(cls, _Sparse)):
        raise pickle.UnpicklingError(f"copy_reg._reconstructor of {cls!r} from {base!r}")
    return object.__new__(cls)


def _sparse_names() -> dict[tuple[str, str], Any]:
    names: dict[tuple[str, str], Any] = {}
    for fmt, cls in (("csr", _CSR), ("csc", _CSC), ("coo", _COO)):
        for module in ("scipy.sparse", f"scipy.sparse.{fmt}", f"scipy.sparse._{fmt}"):
            for kind in ("matrix", "array"):
                names[(module, f"{fmt}_{kind}")] = cls
    return names


_ALLOWED: dict[tuple[str, str], Any] = {
    **{(m, "_reconstruct"): _reconstruct for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "scalar"): _scalar for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "_frombuffer"): _frombuffer for m in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): np.dtype,
    ("collections", "defaultdict"): __import__("collections").defaultdict,
    ("_codecs", "encode"): _encode,
    ("copy_reg", "_reconstructor"): _reconstructor,
    ("copyreg", "_reconstructor"): _reconstructor,
    **{
        (module, name): getattr(__import__("builtins"), name)
        for module in ("builtins", "__builtin__")
        for name in ("list", "dict", "set", "frozenset", "tuple", "object")
    },
    **_sparse_names(),
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals Planetoid's files need (see the module docstring).

    Any other ``module.name`` raises :class:`DataError` naming the file and the refused global; nothing
    is imported.
    """

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="latin1")
        self.path = path

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 - see the class docstring
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            what = f"{module}.{name}"
            what = what if what.isprintable() and len(what) <= 200 else repr(what[:200])
            raise DataError(
                f"{self.path}: refusing to unpickle {what}: a Planetoid file holds only numpy "
                "arrays, scipy sparse matrices and an adjacency dict (the file may be booby-trapped)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102
        raise DataError(f"{self.path}: refusing a persistent id in a Planetoid pickle")


def restricted_load(path: Path) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`; any failure is a :class:`DataError`."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        return RestrictedUnpickler(io.BytesIO(data), path).load()
    except DataError:
        raise
    except RecursionError:
        raise DataError(f"{path} is nested too deeply to be a Planetoid file") from None
    except MemoryError:
        raise DataError(f"{path} asks for more memory than is available") from None
    except Exception as e:  # noqa: BLE001 - a malformed pickle raises almost any type
        detail = " ".join(str(e).split())[:200]  # the message may quote the file's content
        raise DataError(f"{path} is not a readable Planetoid pickle: {type(e).__name__}: {detail}") from None


# -- turning the unpickled objects into arrays ---------------------------------------------------------
def _count(shape: tuple[Any, ...]) -> int | None:
    """The number of entries of ``shape``, or None when it is not a tuple of non-negative ints."""
    total = 1
    for s in shape:
        if isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 0:
            return None
        total *= int(s)
    return total


def _numeric(arr: Any, path: Path, what: str) -> np.ndarray:
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        kind = type(arr).__name__ if not isinstance(arr, np.ndarray) else f"array of {arr.dtype}"
        raise DataError(f"{path}: {what} is {kind}, not a numeric array")
    return arr


def _shape2(obj: Any, path: Path) -> tuple[int, int]:
    shape = obj.__dict__.get("_shape", obj.__dict__.get("shape"))
    if not isinstance(shape, tuple) or len(shape) != 2:
        raise DataError(f"{path}: the sparse matrix has no 2-D shape (got {shape!r})")
    count = _count(shape)
    if count is None:
        raise DataError(f"{path}: the sparse matrix shape {shape!r} is not two sizes")
    if count > MAX_DENSE_ENTRIES:
        raise DataError(
            f"{path}: a {shape[0]} x {shape[1]} matrix exceeds the cap of {MAX_DENSE_ENTRIES:,} entries"
        )
    return int(shape[0]), int(shape[1])


def _int_vector(obj: Any, path: Path, what: str, length: int | None = None) -> np.ndarray:
    arr = _numeric(obj, path, what)
    if arr.ndim != 1 or arr.dtype.kind not in "iu" or (length is not None and arr.size != length):
        raise DataError(f"{path}: {what} must be a 1-D integer array" + (f" of {length}" if length else ""))
    return arr.astype(np.int64)


def _dense_from_sparse(obj: _Sparse, path: Path) -> np.ndarray:
    rows, cols = _shape2(obj, path)
    state = obj.__dict__
    data = _numeric(state.get("data"), path, "the sparse data")
    if data.ndim != 1:
        raise DataError(f"{path}: the sparse data must be 1-D")
    if obj.fmt == "coo":
        coords = state.get("coords", (state.get("row"), state.get("col")))
        if not isinstance(coords, tuple) or len(coords) != 2:
            raise DataError(f"{path}: the coo matrix has no (row, col) coordinates")
        r = _int_vector(coords[0], path, "the coo rows", data.size)
        c = _int_vector(coords[1], path, "the coo columns", data.size)
    else:
        major = rows if obj.fmt == "csr" else cols
        indptr = _int_vector(state.get("indptr"), path, "indptr", major + 1)
        indices = _int_vector(state.get("indices"), path, "indices", data.size)
        if indptr[0] != 0 or indptr[-1] != data.size or (np.diff(indptr) < 0).any():
            raise DataError(f"{path}: the {obj.fmt} matrix has a malformed indptr")
        outer = np.repeat(np.arange(major), np.diff(indptr))
        r, c = (outer, indices) if obj.fmt == "csr" else (indices, outer)
    if r.size and (r.min() < 0 or r.max() >= rows or c.min() < 0 or c.max() >= cols):
        raise DataError(f"{path}: the sparse matrix has entries outside its {rows} x {cols} shape")
    dense = np.zeros((rows, cols), dtype=np.float64 if data.dtype.kind == "f" else np.float32)
    np.add.at(dense, (r, c), data)  # duplicates sum, as scipy's todense does
    return dense


def read_matrix(path: Path) -> torch.Tensor:
    """A 2-D float32 tensor from a Planetoid feature / label file (numpy array or sparse matrix)."""
    obj = restricted_load(path)
    if isinstance(obj, _Sparse):
        arr = _dense_from_sparse(obj, path)
    else:
        arr = _numeric(obj, path, "the content")
        if arr.ndim != 2:
            raise DataError(f"{path}: expected a 2-D array, got shape {arr.shape}")
        if arr.size > MAX_DENSE_ENTRIES:
            raise DataError(f"{path}: {arr.shape} exceeds the cap of {MAX_DENSE_ENTRIES:,} entries")
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


def read_adjacency(path: Path, num_nodes: int) -> torch.Tensor:
    """``edge_index [2, E]`` from the ``graph`` file (a dict node -> list of neighbours)."""
    obj = restricted_load(path)
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict of adjacency lists, got {type(obj).__name__}")
    rows: list[int] = []
    cols: list[int] = []
    for key, value in dict(obj).items():  # a plain dict: a defaultdict's factory is never called
        if not isinstance(value, list | tuple | np.ndarray):
            raise DataError(f"{path}: node {key!r} has neighbours of type {type(value).__name__}")
        ids = [key, *value] if not isinstance(value, np.ndarray) else [key, *value.tolist()]
        if any(isinstance(v, bool) or not isinstance(v, int | np.integer) for v in ids):
            raise DataError(f"{path}: node {key!r} has a non-integer node id in its adjacency list")
        rows += itertools.repeat(int(key), len(ids) - 1)
        cols += [int(v) for v in ids[1:]]
    edge_index = torch.tensor([rows, cols], dtype=torch.long).view(2, -1)
    if edge_index.numel() and (edge_index.min() < 0 or edge_index.max() >= num_nodes):
        raise DataError(f"{path}: adjacency refers to nodes outside 0..{num_nodes - 1}")
    return edge_index


def read_test_index(path: Path) -> torch.Tensor:
    """The test node ids, one integer per line."""
    try:
        size = path.stat().st_size
        if size > MAX_INDEX_BYTES:
            raise DataError(f"{path} is {size:,} bytes; a test.index file is at most {MAX_INDEX_BYTES:,}")
        text = path.read_bytes().decode("ascii")
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path} is not ASCII text (one node index per line)") from None
    try:
        values = [int(v) for v in text.split()]
    except ValueError as e:
        raise DataError(f"{path}: not one integer per line ({e})") from None
    if not values:
        raise DataError(f"{path} lists no test nodes")
    return torch.tensor(values, dtype=torch.long)


# -- the graph -----------------------------------------------------------------------------------------
def read_planetoid(raw: Path, name: str) -> dict[str, torch.Tensor]:
    """Read ``raw/ind.<name>.*``: ``x [N, F]`` float32, ``y [N]`` int64, ``edge_index [2, E]`` (as in the
    files: directed, may hold self-loops and duplicates) and the public split's masks.

    Raises:
        DataError: a file is unreadable, holds a refused global, or disagrees with the others.
    """
    prefix = name.lower()

    def file(suffix: str) -> Path:
        return raw / f"ind.{prefix}.{suffix}"

    x, tx, allx, y, ty, ally = (read_matrix(file(s)) for s in ("x", "tx", "allx", "y", "ty", "ally"))
    test_index = read_test_index(file("test.index"))
    for a, b, what in ((x, y, "x/y"), (allx, ally, "allx/ally"), (tx, ty, "tx/ty")):
        if a.size(0) != b.size(0):
            raise DataError(f"{raw}: {what} have {a.size(0)} and {b.size(0)} rows; they must agree")
    if not (x.size(1) == allx.size(1) == tx.size(1)):
        raise DataError(f"{raw}: x, allx, tx have {x.size(1)}, {allx.size(1)}, {tx.size(1)} feature columns")
    if not (y.size(1) == ally.size(1) == ty.size(1)) or y.size(1) < 2:
        raise DataError(f"{raw}: y, ally, ty must be one-hot with the same number (>= 2) of classes")
    if x.size(0) > allx.size(0):
        raise DataError(f"{raw}: x has more rows ({x.size(0)}) than allx ({allx.size(0)})")
    if test_index.numel() != tx.size(0):
        raise DataError(f"{file('test.index')} lists {test_index.numel()} nodes but tx has {tx.size(0)} rows")
    if test_index.unique().numel() != test_index.numel():
        raise DataError(f"{file('test.index')} lists a node twice")
    sorted_test_index = test_index.sort()[0]
    lo, hi = int(sorted_test_index[0]), int(sorted_test_index[-1])
    if prefix == "citeseer":
        # isolated CiteSeer nodes are missing from the test files: zero rows keep the ids consecutive
        span = hi - lo + 1
        if lo < allx.size(0) or (span + allx.size(0)) * max(tx.size(1), ty.size(1)) > MAX_DENSE_ENTRIES:
            raise DataError(
                f"{file('test.index')}: test ids {lo}..{hi} do not follow the {allx.size(0)} allx rows"
            )
        tx_ext = torch.zeros(span, tx.size(1))
        tx_ext[sorted_test_index - lo] = tx
        ty_ext = torch.zeros(span, ty.size(1))
        ty_ext[sorted_test_index - lo] = ty
        tx, ty = tx_ext, ty_ext
    n = allx.size(0) + tx.size(0)
    if lo < 0 or hi >= n:
        raise DataError(f"{file('test.index')}: test ids {lo}..{hi} lie outside 0..{n - 1}")

    features = torch.cat([allx, tx], dim=0)
    features[test_index] = features[sorted_test_index]
    labels = torch.cat([ally, ty], dim=0).max(dim=1)[1]
    labels[test_index] = labels[sorted_test_index]

    def mask(index: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(n, dtype=torch.bool)
        out[index] = True
        return out

    n_train = y.size(0)
    return {
        "x": features,
        "y": labels,
        "edge_index": read_adjacency(file("graph"), n),
        "train_mask": mask(torch.arange(n_train)),
        "val_mask": mask(torch.arange(n_train, min(n_train + VALIDATION_NODES, n))),
        "test_mask": mask(test_index),
    }
