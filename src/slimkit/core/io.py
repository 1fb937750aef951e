"""Atomic file and directory writes, and safe tensor files.

Every file slimkit writes goes to a temporary sibling first and is renamed into place, so a crash
or a bad input never leaves a half-written file (or a half-filled output directory) behind.
Tensors are stored as safetensors only; nothing here unpickles.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
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
    with atomic_write(path) as f:
        json.dump(data, f, indent=indent, default=_json_default)
        f.write("\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SlimkitError(f"file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise SlimkitError(f"malformed JSON in {path}: {e}") from None


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


@contextlib.contextmanager
def atomic_dir(path: str | Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Fill a temporary sibling directory, then move it onto ``path`` on success.

    On any exception the temporary directory is removed and ``path`` is untouched, so a failed
    command leaves nothing partial behind. With ``overwrite`` an existing ``path`` is replaced.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SlimkitError(f"output path exists and is not a directory: {path}")
    if path.exists() and not overwrite:
        raise SlimkitError(f"output directory already exists: {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
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
