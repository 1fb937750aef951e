"""Text sources: turn a user's ``--data`` / ``--calib`` spec into a list of documents.

One function, :func:`read_documents`, reads every text format slimkit accepts:

============================  =====================================================================
spec                          documents
============================  =====================================================================
``notes.txt``                 blocks separated by one or more blank lines (each block stripped)
``rows.jsonl``                the ``"text"`` field of every line (one JSON object per line)
``rows.jsonl:body``           the ``"body"`` field instead (same as ``column="body"``)
``table.parquet[:col]``       the ``"text"`` (or ``col``) column; needs ``pyarrow``
``saved_dataset/[:col]``      a Hugging Face dataset written by ``save_to_disk``; needs ``datasets``;
                              ``split=`` picks the split of a saved ``DatasetDict``
``world:heldout``             the built-in knowledge world's held-out text (``world:corpus``: its
                              training corpus)
``python-docs:calib``         real English prose that every CPython carries: the pages of the
                              language reference in ``pydoc_data.topics`` (see
                              :func:`python_docs_documents`); ``python-docs:eval`` is a disjoint
                              held-out part, ``python-docs:all`` both
other ``scheme:rest``         from :func:`register_source_scheme`
============================  =====================================================================

Rows of JSONL/parquet/HF sources are returned as they are, empty ones included, so that
``"\\n\\n".join(documents)`` reproduces the literature's WikiText protocol exactly. Documents are
what calibration samples from; perplexity scores :func:`read_text` instead: a ``.txt`` file exactly
as written, any other source its documents joined with ``"\\n\\n"``. Every problem
(missing file, unknown extension, missing column, no text at all) raises :class:`DataError` naming
the path and, for a missing column, the columns that exist.
"""

from __future__ import annotations

import functools
import importlib
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from slimkit.core.errors import DataError
from slimkit.core.io import MAX_LINE_CHARS, parse_json, read_text_file

SourceResolver = Callable[[str], Sequence[str]]
"""``resolver(rest) -> documents`` for a ``scheme:rest`` spec."""

DEFAULT_COLUMN = "text"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9_+-]+):(.*)$")  # >= 2 letters, so "C:\\x" is a path
_SCHEMES: dict[str, SourceResolver] = {}


def register_source_scheme(scheme: str, resolver: SourceResolver, *, replace: bool = False) -> None:
    """Make ``"{scheme}:{rest}"`` specs resolve to ``resolver(rest)``.

    ``world`` is registered here already (it imports the knowledge world only when used).
    Registering a taken scheme raises ``ValueError`` unless ``replace=True``.
    """
    if not _SCHEME.match(f"{scheme}:"):
        raise ValueError(f"source scheme {scheme!r} must be letters, digits, '_', '+' or '-' (2+ chars)")
    if scheme in _SCHEMES and not replace:
        raise ValueError(f"source scheme {scheme!r} is already registered")
    _SCHEMES[scheme] = resolver


def source_schemes() -> list[str]:
    """The registered ``scheme:`` prefixes."""
    return sorted(_SCHEMES)


def read_documents(spec: str | Path, *, column: str | None = None, split: str | None = None) -> list[str]:
    """Read the documents of a text source (see the module docstring for the accepted specs).

    Args:
        spec: a path (``.txt``, ``.jsonl``, ``.parquet``, a ``save_to_disk`` directory), optionally
            suffixed ``:column``; or a registered ``scheme:rest`` spec such as ``world:heldout``.
        column: the field holding the text in JSONL / parquet / HF sources. Default: ``"text"``.
        split: the split of a saved ``DatasetDict``; may be omitted when it has only one.

    Returns:
        The documents, in source order.

    Raises:
        DataError: missing file, unknown extension, missing column (the message lists the available
            ones), a source with no non-whitespace text, or a missing optional package.
    """
    # a scheme spec, unless a file of that very name exists
    scheme = _SCHEME.match(spec) if isinstance(spec, str) and not Path(spec).exists() else None
    if scheme is not None and scheme.group(1) in _SCHEMES:
        if column is not None or split is not None:
            raise DataError(f"{spec}: column= and split= do not apply to a '{scheme.group(1)}:' source")
        docs = list(_SCHEMES[scheme.group(1)](scheme.group(2)))
        _check_texts(docs, str(spec))
        return docs

    path, column = _split_column_suffix(Path(spec), column)
    if not path.exists():
        raise DataError(f"text source not found: {path}")
    if path.is_dir():
        docs = _read_hf_dataset(path, column or DEFAULT_COLUMN, split)
    else:
        reader = _FILE_READERS.get(path.suffix.lower())
        if reader is None:
            raise DataError(
                f"{path}: unknown text source extension {path.suffix!r}; use one of "
                f"{sorted(_FILE_READERS)}, a save_to_disk dataset directory, or {source_schemes()} specs"
            )
        if split is not None:
            raise DataError(f"{path}: split={split!r} only applies to a saved Hugging Face DatasetDict")
        if reader is _read_txt and column is not None:
            raise DataError(f"{path}: a .txt source has no columns (got column={column!r})")
        docs = reader(path, column or DEFAULT_COLUMN)
    _check_texts(docs, str(path))
    return docs


DOCUMENT_SEPARATOR = "\n\n"


def read_text(spec: str | Path, *, column: str | None = None, split: str | None = None) -> str:
    """The text of a source as one string, for scoring it (perplexity) rather than sampling it.

    A ``.txt`` file is returned **exactly as written** (its bytes decoded as UTF-8: no re-split at
    blank lines, no stripping), so its perplexity is the perplexity of the file. Every other source
    is its documents joined with ``"\\n\\n"`` (:func:`read_documents`; for the rows of WikiText-2
    from Hugging Face datasets that join is the literature's protocol).

    Raises:
        DataError: as :func:`read_documents`.
    """
    path = _plain_text_file(spec, column, split)
    if path is None:
        return DOCUMENT_SEPARATOR.join(read_documents(spec, column=column, split=split))
    text = _read_text_file(path)
    _check_texts([text], str(path))
    return text


def _plain_text_file(spec: str | Path, column: str | None, split: str | None) -> Path | None:
    """``spec`` as a ``.txt`` file to read whole, or ``None`` (a scheme, another format, bad options)."""
    if column is not None or split is not None:
        return None  # read_documents explains why those do not apply
    path = Path(spec)  # a scheme spec names no file; anything that is not a plain file errs in read_documents
    return path if path.suffix.lower() == ".txt" and path.is_file() else None


# -- file formats --------------------------------------------------------------------------------------
def _read_txt(path: Path, column: str) -> list[str]:
    """Documents are separated by blank lines (lines holding only whitespace count as blank)."""
    text = _read_text_file(path)
    return [block.strip() for block in re.split(r"\n[ \t\r\f\v]*\n", text) if block.strip()]


def _read_jsonl_texts(path: Path, column: str) -> list[str]:
    docs = []
    for lineno, row in _iter_jsonl(path):
        if column not in row:
            raise DataError(
                f"{path}:{lineno}: no column {column!r}; available: {sorted(row)} "
                f"(pick one with column= or '{path}:NAME')"
            )
        docs.append(_as_text(row[column], f"{path}:{lineno} column {column!r}"))
    return docs


def _read_parquet(path: Path, column: str) -> list[str]:
    pq = _optional_import("pyarrow.parquet", "pyarrow", f"reading {path}")
    try:
        names = pq.ParquetFile(path).schema_arrow.names
        if column not in names:
            raise DataError(f"{path}: no column {column!r}; available: {names}")
        values = pq.read_table(path, columns=[column]).column(column).to_pylist()
    except DataError:
        raise
    except Exception as e:  # pyarrow raises its own hierarchy for corrupt files
        raise DataError(f"{path}: not a readable parquet file ({e})") from None
    return [_as_text(v, f"{path} row {i} column {column!r}") for i, v in enumerate(values)]


def _read_hf_dataset(path: Path, column: str, split: str | None) -> list[str]:
    markers = ("dataset_info.json", "state.json", "dataset_dict.json")
    if not any((path / name).is_file() for name in markers):
        raise DataError(
            f"{path}: a directory source must be a Hugging Face dataset saved with save_to_disk "
            f"(it has none of {list(markers)})"
        )
    datasets = _optional_import("datasets", "datasets", f"reading {path}")
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:  # datasets raises FileNotFoundError/ValueError for half-written dirs
        raise DataError(f"{path}: cannot load the saved dataset ({e})") from None
    if isinstance(ds, datasets.DatasetDict):
        splits = list(ds)
        if split is None and len(splits) != 1:
            raise DataError(f"{path}: holds splits {splits}; choose one with split=")
        chosen = split if split is not None else splits[0]
        if chosen not in ds:
            raise DataError(f"{path}: no split {chosen!r}; available: {splits}")
        ds = ds[chosen]
    elif split is not None:
        raise DataError(f"{path}: a single saved Dataset has no splits (got split={split!r})")
    if column not in ds.column_names:
        raise DataError(f"{path}: no column {column!r}; available: {ds.column_names}")
    return [_as_text(v, f"{path} row {i} column {column!r}") for i, v in enumerate(ds[column])]


_FILE_READERS: dict[str, Callable[[Path, str], list[str]]] = {
    ".txt": _read_txt,
    ".jsonl": _read_jsonl_texts,
    ".parquet": _read_parquet,
}


# -- the built-in knowledge world ----------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _default_world() -> Any:
    # imported here so text sources never pay for (or depend on) the world generator
    from slimkit.data.factworld import WorldConfig, generate_world

    return generate_world(WorldConfig())


_WORLD_PARTS: dict[str, str] = {"heldout": "heldout_documents", "corpus": "corpus_documents"}


def _resolve_world(part: str) -> list[str]:
    if part not in _WORLD_PARTS:
        raise DataError(
            f"world:{part}: unknown part {part!r}; use one of {[f'world:{p}' for p in _WORLD_PARTS]}"
        )
    return list(getattr(_default_world(), _WORLD_PARTS[part])())


register_source_scheme("world", _resolve_world)


def world_heldout_answer_spans() -> list[tuple[int, int]]:
    """``(start, end)`` character spans of the facts' objects in ``world:heldout``'s text."""
    return [(s["start"], s["end"]) for s in _default_world().heldout_answer_spans()]


# -- Python's own documentation ------------------------------------------------------------------------
PYTHON_DOCS_PARTS = ("calib", "eval", "all")
_PYTHON_DOCS_EVAL_EVERY = 5  # about one topic in five is held out for evaluation


def python_docs_split(topic: str) -> str:
    """``"eval"`` or ``"calib"``: the part of ``python-docs:`` a ``pydoc_data`` topic belongs to.

    Decided by the topic's *name* alone (``crc32(name) % 5 == 0`` is held out), so a topic keeps
    its part across Python versions that add or rewrite topics, and the two parts never share a
    topic.
    """
    return "eval" if zlib.crc32(topic.encode("utf-8")) % _PYTHON_DOCS_EVAL_EVERY == 0 else "calib"


def python_docs_documents(part: str = "all") -> list[str]:
    """The pages of the Python language reference shipped with CPython (``pydoc_data.topics``).

    Each document is one help topic (``"assert"``, ``"class"``, ``"formatstrings"``, ...: a
    statement, an operator, a built-in type), in topic-name order; a text that two topics share
    (``"if"`` and ``"else"``) is kept once, under the first name. ``part`` is ``"calib"`` (about
    80% of the topics), ``"eval"`` (the rest, see :func:`python_docs_split`) or ``"all"``; calib and
    eval never overlap, so calibration text is never perplexity text. On CPython 3.11 that is 79
    topics, about 465k characters (113k SmolLM2 tokens: 89k calib, 24k eval).

    Raises:
        DataError: an unknown part, or a Python built without ``pydoc_data``.
    """
    if part not in PYTHON_DOCS_PARTS:
        raise DataError(
            f"python-docs:{part}: unknown part {part!r}; use one of "
            f"{[f'python-docs:{p}' for p in PYTHON_DOCS_PARTS]}"
        )
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions strip it (python3-minimal)
        raise DataError(
            "python-docs: this Python has no pydoc_data.topics (a stripped build); give a text file instead"
        ) from None
    seen: set[str] = set()
    docs = []
    for name in sorted(topics):
        text = topics[name]
        if text in seen:
            continue
        seen.add(text)
        if part == "all" or python_docs_split(name) == part:
            docs.append(text)
    return docs


register_source_scheme("python-docs", python_docs_documents)


# -- helpers -------------------------------------------------------------------------------------------
def jsonl_rows(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for every non-blank line of a JSONL file; DataError when malformed."""
    return list(_iter_jsonl(Path(path)))


def _iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        raise DataError(f"JSONL file not found: {path}")
    for lineno, line in enumerate(_read_text_file(path).splitlines(), start=1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE_CHARS:
            raise DataError(
                f"{path}:{lineno}: a line of {len(line):,} characters; at most {MAX_LINE_CHARS:,} are read"
            )
        row = parse_json(line, f"{path}:{lineno}", error=DataError)
        if not isinstance(row, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object per line, got {type(row).__name__}")
        yield lineno, row


def _read_text_file(path: Path) -> str:
    return read_text_file(path, error=DataError)


def _split_column_suffix(path: Path, column: str | None) -> tuple[Path, str | None]:
    """``rows.jsonl:body`` -> (``rows.jsonl``, ``"body"``) unless a file really has that name."""
    text = str(path)
    if path.exists() or ":" not in text:
        return path, column
    head, _, suffix = text.rpartition(":")
    base = Path(head)
    if not suffix or not (base.is_dir() or base.suffix.lower() in (".jsonl", ".parquet")):
        return path, column
    if column is not None and column != suffix:
        raise DataError(f"{text}: the spec names column {suffix!r} but column={column!r} was also given")
    return base, suffix


def _as_text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"{where}: expected a string, got {type(value).__name__} ({value!r:.60})")
    return value


def _check_texts(docs: Sequence[str], where: str) -> None:
    if not any(isinstance(d, str) and d.strip() for d in docs):
        raise DataError(
            f"{where}: the text source is empty (no non-whitespace text in {len(docs)} documents)"
        )


def _optional_import(module: str, package: str, purpose: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise DataError(f"{purpose} needs the '{package}' package: pip install {package}") from None
