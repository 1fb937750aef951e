"""Progress bars (rich) for long work: training, evaluation, compression.

Bars go to stderr so a command's stdout stays machine-readable. They are hidden when
``SLIMKIT_PROGRESS=0`` or when stderr is not a terminal (CI logs), unless ``SLIMKIT_PROGRESS=1``,
and always on a ``torchrun`` rank other than 0.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

_console = Console(stderr=True)


def progress_enabled() -> bool:
    if int(os.environ.get("RANK", "0")) != 0:
        return False  # under torchrun only rank 0 draws bars: the others would interleave theirs
    flag = os.environ.get("SLIMKIT_PROGRESS")
    if flag is not None:
        return flag not in ("0", "false", "no", "")
    return sys.stderr.isatty()


def console() -> Console:
    """The shared stderr console (status messages, bars)."""
    return _console


class _NullBar:
    def update(self, advance: int = 1, **fields: Any) -> None:
        pass


class _Bar:
    def __init__(self, progress: Progress, task_id: int) -> None:
        self._p, self._id = progress, task_id

    def update(self, advance: int = 1, **fields: Any) -> None:
        """Advance by ``advance`` and set the extra fields (e.g. ``loss=...``) shown after the bar."""
        info = " ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
        self._p.update(self._id, advance=advance, info=info)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


@contextlib.contextmanager
def progress_bar(total: int | None, description: str) -> Iterator[_Bar | _NullBar]:
    """A bar with an info field: ``with progress_bar(n, "train") as bar: bar.update(1, loss=...)``."""
    if not progress_enabled():
        yield _NullBar()
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=_console,
        transient=False,
    )
    with progress:
        task_id = progress.add_task(description, total=total, info="")
        yield _Bar(progress, task_id)


def track(iterable: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with progress_bar(total, description) as bar:
        for item in iterable:
            yield item
            bar.update(1)
