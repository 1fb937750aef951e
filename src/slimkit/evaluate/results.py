"""The results JSON: one schema for every evaluation slimkit writes.

::

    {
      "model": "runs/llama-wanda50",
      "provenance": {
        "versions": {"slimkit": "0.1.0", "torch": "2.13.0", "transformers": "5.24.0", "python": "3.11.9"},
        "seed": 0,
        "config": {...} | null,            # what produced the model / the evaluation, JSON-safe
        "git_commit": "3f2c..." | null,    # of the slimkit checkout, when it is one
        "created": "2026-09-01T12:00:00+00:00"
      },
      "metrics": {"ppl": {"perplexity": 21.3, "mean_nll": 3.06, "n": 16256}, "factoid": {...}}
    }

Every task dict has ``"n"`` (an int >= 0: how many items the metrics average over) and only numeric
metric values; :func:`validate_results` checks exactly that, naming the first problem.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any, NoReturn

from slimkit.core.config import Config
from slimkit.core.errors import DataError, SlimkitError

_PROVENANCE_KEYS = ("versions", "seed", "config", "git_commit", "created")


def make_results(
    model: str,
    metrics: dict[str, dict[str, Any]],
    *,
    config: dict[str, Any] | Config | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """A validated results dict for ``metrics`` (``{task: {metric: value, "n": count}}``) of ``model``.

    Args:
        model: what was evaluated (a path or a name).
        metrics: as returned by :func:`slimkit.evaluate.evaluate`. Tensor / numpy scalars become
            Python numbers.
        config: the configuration to record (a dict, or a :class:`Config`); must be JSON-serializable.
        seed: the seed the run used, if any.

    Raises:
        SlimkitError: the metrics or config do not fit the schema (the message names the first problem).
    """
    if isinstance(config, Config):
        config = config.to_dict()
    if config is not None:
        try:
            config = json.loads(json.dumps(config))
        except (TypeError, ValueError) as e:
            raise SlimkitError(f"results config is not JSON-serializable: {e}") from None
    plain_metrics = (
        {
            str(task): {str(k): _plain_number(v) for k, v in values.items()}
            if isinstance(values, dict)
            else values
            for task, values in metrics.items()
        }
        if isinstance(metrics, dict)
        else metrics
    )
    results = {
        "model": str(model),
        "provenance": {
            "versions": versions(),
            "seed": seed,
            "config": config,
            "git_commit": git_commit(),
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        },
        "metrics": plain_metrics,
    }
    validate_results(results)
    return results


def validate_results(obj: Any) -> None:
    """Check ``obj`` against the results schema; raise :class:`SlimkitError` naming the first problem."""
    if not isinstance(obj, dict):
        _fail("results", "must be a JSON object", obj)
    for key in ("model", "provenance", "metrics"):
        if key not in obj:
            raise DataError(f"results: missing key {key!r} (need 'model', 'provenance', 'metrics')")
    if not isinstance(obj["model"], str):
        _fail("results.model", "must be a string", obj["model"])

    prov = obj["provenance"]
    if not isinstance(prov, dict):
        _fail("results.provenance", "must be an object", prov)
    for key in _PROVENANCE_KEYS:
        if key not in prov:
            raise DataError(f"results.provenance: missing key {key!r} (need {list(_PROVENANCE_KEYS)})")
    if not isinstance(prov["versions"], dict) or not all(
        isinstance(v, str) for v in prov["versions"].values()
    ):
        _fail("results.provenance.versions", "must map package names to version strings", prov["versions"])
    if prov["seed"] is not None and (isinstance(prov["seed"], bool) or not isinstance(prov["seed"], int)):
        _fail("results.provenance.seed", "must be an int or null", prov["seed"])
    if prov["config"] is not None and not isinstance(prov["config"], dict):
        _fail("results.provenance.config", "must be an object or null", prov["config"])
    if prov["git_commit"] is not None and not isinstance(prov["git_commit"], str):
        _fail("results.provenance.git_commit", "must be a string or null", prov["git_commit"])
    if not isinstance(prov["created"], str):
        _fail("results.provenance.created", "must be an ISO-8601 string", prov["created"])

    metrics = obj["metrics"]
    if not isinstance(metrics, dict):
        _fail("results.metrics", "must be an object {task: {metric: value, 'n': count}}", metrics)
    for task, values in metrics.items():
        where = f"results.metrics[{task!r}]"
        if not isinstance(values, dict):
            _fail(where, "must be an object {metric: value, 'n': count}", values)
        if "n" not in values:
            raise DataError(f"{where}: missing 'n' (the number of items the metrics average over)")
        n = values["n"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            _fail(f"{where}['n']", "must be an int >= 0", n)
        for metric, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                _fail(f"{where}[{metric!r}]", "must be a number", value)


def versions() -> dict[str, str]:
    """Versions of slimkit, torch, transformers and Python."""
    import torch
    import transformers

    import slimkit

    return {
        "slimkit": slimkit.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """``git rev-parse HEAD`` of the checkout slimkit runs from, or None (installed wheel, no git).

    Only a repository that actually contains this package counts: a virtualenv inside some other
    project's repository must not stamp that project's commit on our results.
    """
    package_dir = Path(__file__).resolve().parents[1]
    try:
        top = _git(package_dir, "rev-parse", "--show-toplevel")
        if top is None or not any(
            (Path(top) / sub / "slimkit").resolve() == package_dir for sub in ("src", ".")
        ):
            return None
        return _git(package_dir, "rev-parse", "HEAD")
    except OSError:
        return None


def _git(cwd: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def _plain_number(value: Any) -> Any:
    # tensors and numpy scalars have .item(); anything else is left for validate_results to judge
    if not isinstance(value, bool | int | float | str) and hasattr(value, "item"):
        try:
            value = value.item()
        except (TypeError, ValueError, RuntimeError):
            return value
    return value


def _fail(where: str, problem: str, value: Any) -> NoReturn:
    raise DataError(f"{where}: {problem}, got {value!r:.80}")
