"""Atomic file and directory writes, and safe tensor files.

Every file slimkit writes goes to a temporary sibling first and is renamed into place, so a crash
or a bad input never leaves a half-written file (or a half-filled output directory) behind.
Tensors are stored as safetensors only; nothing here unpickles.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from slimkit.core.errors import ModelLoadError, SlimkitError


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[Any]:
    """Open a temporary sibling of ``path`` for writing; rename it onto ``path`` on success only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_write(path) as f:
        f.write(text)


def write_json(path: str | Path, data: Any, indent: int = 2) -> None:
    """Strict JSON (NaN and infinities become ``null``: other tools refuse the bare tokens), atomically."""
    with atomic_write(path) as f:
        json.dump(_finite(data), f, indent=indent, allow_nan=False)
        f.write("\n")


def _finite(obj: Any) -> Any:
    """``obj`` as plain JSON values: non-finite floats become ``None``; tensors, paths and configs are
    converted first (by :func:`_json_default`) so that a NaN inside them is caught too."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if obj is None or isinstance(obj, str | int):
        return obj
    return _finite(_json_default(obj))


# Inputs are read whole; these caps turn a wrong file (a disk image, a link to /dev/zero, a 50 MB
# "line") into a one-line error instead of an out-of-memory kill.
MAX_TEXT_BYTES = 4 << 30
MAX_LINE_CHARS = 8 << 20
MAX_JSON_BYTES = 1 << 30


def read_text_file(
    path: str | Path, *, max_bytes: int = MAX_TEXT_BYTES, error: type[SlimkitError] = SlimkitError
) -> str:
    """A regular UTF-8 text file, whole. Devices, FIFOs and directories (also behind a link) are refused.

    Raises:
        ``error`` (a :class:`SlimkitError` subclass): missing, not a regular file, larger than
        ``max_bytes``, unreadable, or not UTF-8.
    """
    path = Path(path)
    try:
        info = path.stat()  # follows links: a link to /dev/zero is a character device here
    except FileNotFoundError:
        raise error(f"file not found: {path}") from None
    except OSError as e:
        raise error(f"cannot read {path}: {e.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{path} is not a regular file (a directory, device or pipe); give a text file")
    if info.st_size > max_bytes:
        raise error(f"{path} is {info.st_size:,} bytes; at most {max_bytes:,} are read")
    try:
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise error(f"cannot read {path}: {e.strerror}") from None
    if len(data) > max_bytes:  # grew while we read it
        raise error(f"{path} is larger than {max_bytes:,} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(
            f"{path}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}: {e.reason}); save it as UTF-8"
        ) from None


def parse_json(
    text: str, where: str, *, error: type[SlimkitError] = SlimkitError, expected: str | None = None
) -> Any:
    """``json.loads`` whose every failure is one ``error`` naming ``where``.

    Besides malformed text this covers nesting deep enough to exhaust the recursion limit and integers
    longer than Python converts (4300 digits), which ``json`` raises as RecursionError / ValueError.
    """
    hint = f"; expected {expected}" if expected else ""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{where}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno}){hint}") from None
    except RecursionError:
        raise error(f"{where}: JSON nested too deeply to read{hint}") from None
    except ValueError as e:  # e.g. "Exceeds the limit (4300 digits) for integer string conversion"
        raise error(f"{where}: unreadable JSON value ({str(e).splitlines()[0]}){hint}") from None


def read_json(path: str | Path) -> Any:
    """A JSON file (at most ``MAX_JSON_BYTES``); every failure is a one-line :class:`SlimkitError`."""
    path = Path(path)
    return parse_json(read_text_file(path, max_bytes=MAX_JSON_BYTES), f"malformed JSON in {path}")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


OUTPUT_MARKER = ".slimkit-output"
# a directory holding one of these was written by slimkit (model directories carry slimkit.json)
_SLIMKIT_MARKERS = (OUTPUT_MARKER, "slimkit.json")


def _resolve_link(path: Path) -> Path:
    """A symlinked output is written where the link points, so the link stays valid and nothing stray is left."""
    if path.is_symlink():
        target = path.resolve()
        if not target.exists():
            raise SlimkitError(f"output path {path} is a link to {target}, which does not exist")
        return target
    return path


def _probe_writable(path: Path, what: str) -> None:
    """Raise unless a file can be created beside ``path`` (the nearest existing ancestor is a writable directory).

    Creates and removes one temporary file: permission bits alone do not tell (root ignores them; a
    read-only mount does not).
    """
    ancestor = path.parent
    while not ancestor.exists():
        if ancestor.is_symlink():  # a dangling link on the way
            raise SlimkitError(f"cannot write {what} {path}: {ancestor} is a broken link")
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise SlimkitError(f"cannot write {what} {path}: {ancestor} is a file, not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".slimkit-probe.", dir=ancestor)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise SlimkitError(f"cannot write {what} {path}: {ancestor} is not writable ({e.strerror})") from None


def _is_within(child: Path, parent: Path) -> bool:
    try:
        child.relative_to(parent)
    except ValueError:
        return False
    return True


def check_output_dir(
    path: str | Path, *, protect: tuple[str | Path, ...] = (), overwrite: bool = False
) -> Path:
    """Check, before any work, that ``path`` can be written as an output directory; return where it goes.

    Refused: an empty path; the current directory or one above it; a path that is, or contains, one of
    ``protect`` (the inputs: a model directory, results files); an existing file; an existing non-empty
    directory that slimkit did not write (no ``.slimkit-output`` / ``slimkit.json``) unless
    ``overwrite``; a location that cannot be written. A symlink is followed: the directory it points
    to is the one replaced.

    Raises:
        SlimkitError: naming the path and the reason.
    """
    if str(path).strip() == "":
        raise SlimkitError("--out is empty; give a directory to write")
    path = _resolve_link(Path(path).expanduser())
    real = path.resolve()
    cwd = Path.cwd().resolve()
    if real == cwd or _is_within(cwd, real):
        raise SlimkitError(
            f"refusing to write output directory {path}: it is the current directory or contains it"
        )
    for item in protect:
        if item is None:
            continue
        source = Path(item).expanduser().resolve()
        if real == source or _is_within(source, real):
            raise SlimkitError(
                f"refusing to write output directory {path}: it is or contains the input {item}; "
                "choose another --out"
            )
    if path.exists() and not path.is_dir():
        raise SlimkitError(f"output path exists and is not a directory: {path}")
    if path.is_dir() and not overwrite:
        entries = list(path.iterdir())
        if entries and not any((path / m).exists() for m in _SLIMKIT_MARKERS):
            raise SlimkitError(
                f"output directory {path} exists and holds files slimkit did not write "
                f"(e.g. {entries[0].name}); choose another --out, remove it, or pass --overwrite"
            )
    _probe_writable(path, "output directory")
    return path


def check_output_file(path: str | Path, *, protect: tuple[str | Path, ...] = ()) -> Path:
    """Check, before any work, that ``path`` can be written as an output file (an existing file is replaced).

    Refused: an empty path, an existing directory, a path inside one of ``protect`` (input
    directories) or equal to one of them, and a location that cannot be written.

    Raises:
        SlimkitError: naming the path and the reason.
    """
    if str(path).strip() == "":
        raise SlimkitError("--out is empty; give a file to write")
    path = Path(path).expanduser()
    if path.is_dir():
        raise SlimkitError(f"output file {path} is an existing directory; give a file name")
    real = path.resolve()
    for item in protect:
        if item is None:
            continue
        source = Path(item).expanduser().resolve()
        if real == source or (source.is_dir() and _is_within(real, source)):
            raise SlimkitError(f"refusing to write {path}: it is or is inside the input {item}")
    _probe_writable(path, "output file")
    return path


@contextlib.contextmanager
def atomic_dir(
    path: str | Path, *, overwrite: bool = False, protect: tuple[str | Path, ...] = ()
) -> Iterator[Path]:
    """Fill a temporary sibling directory, then move it onto ``path`` on success.

    On any exception the temporary directory is removed and ``path`` is untouched, so a failed
    command leaves nothing partial behind. An existing ``path`` is replaced only when it is empty or
    slimkit wrote it (it holds ``.slimkit-output`` or ``slimkit.json``), or with ``overwrite``; never
    when it is or contains one of ``protect``. See :func:`check_output_dir`.
    """
    path = check_output_dir(path, protect=protect, overwrite=overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        (tmp / OUTPUT_MARKER).touch()
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_tensors(
    path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Atomically write a safetensors file (tensors made contiguous; shared storage copied)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().clone() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def load_tensors(path: str | Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Read a safetensors file; a truncated or corrupt file is a :class:`ModelLoadError`."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"tensor file not found: {path}")
    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ModelLoadError(
            f"{path} is not a readable safetensors file (truncated or corrupt?): {e}"
        ) from None
