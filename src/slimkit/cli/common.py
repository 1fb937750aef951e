"""Helpers shared by the command modules: model resolution, tables, the shared flag definitions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

# soft_wrap: paths and commands are printed whole (a terminal wraps them visually; a log keeps them
# copyable), tables still fit the width
stdout = Console(soft_wrap=True)

DEFAULT_MODEL = "default"
# the text sources a model other than the world's default gets when the user names none: real English
# prose every CPython carries (pydoc_data), in two disjoint parts
REAL_TEXT_CALIB = "python-docs:calib"
REAL_TEXT_EVAL = "python-docs:eval"

# the same --overwrite on every command that writes an output directory (see core.io.check_output_dir)
OVERWRITE = typer.Option(
    False, "--overwrite", help="Replace an existing --out directory even if slimkit did not write it."
)


def resolve_model(
    model: str | None, *, device: str = "cpu", dtype: str | None = None
) -> tuple[Any, Any, str]:
    """Load ``model``: a directory, a ``.gguf`` file, a named offline model (``smollm2-135m``), or
    ``default``/None for the built-in world's default model.

    Returns (model, tokenizer, display name).
    """
    if model is None or model == DEFAULT_MODEL:
        from slimkit.models.default import default_model

        m, tok = default_model(device=device, dtype=dtype)
        return m, tok, "factworld-default"
    from slimkit.models import load_model

    m, tok = load_model(model, device=device, dtype=dtype)
    return m, tok, str(Path(model))


def derives_from_world_model(model: str | None, *, max_depth: int = 16) -> bool:
    """Whether ``model`` is the built-in world's default model or a directory made from it (its
    ``slimkit.json`` parent chain reaches the cached default model), so that commands give it the
    world's text by default rather than real English."""
    if model is None or model == DEFAULT_MODEL:
        return True
    from slimkit.core.errors import SlimkitError
    from slimkit.models.default import cache_root
    from slimkit.models.metadata import read_slimkit_json

    current = Path(model)
    for _ in range(max_depth):
        if current.parent.resolve() == cache_root().resolve() and current.name.startswith("default-model-"):
            return True
        try:
            parent = read_slimkit_json(current).get("parent") if current.is_dir() else None
        except SlimkitError:
            return False
        if not isinstance(parent, str):
            return False
        current = Path(parent)
    return False


def model_source_dir(model: str) -> Path:
    """The directory a model argument loads from: itself, or for a ``.gguf`` file or a named model
    (``smollm2-135m``) its converted directory in the cache (e.g. to record as a parent)."""
    from slimkit.models.named import resolve_model_source

    return resolve_model_source(model)


def metrics_table(metrics: dict[str, dict[str, Any]], title: str | None = None) -> Table:
    """A rich table of ``{task: {metric: value, "n": n}}``."""
    from slimkit.evaluate.report import metric_rows  # lazy: importing slimkit.evaluate loads torch

    table = Table(title=title)
    table.add_column("task")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("n", justify="right")
    for task, name, value, n in metric_rows(metrics):
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        table.add_row(task, name, shown, "" if n is None else str(n))
    return table
