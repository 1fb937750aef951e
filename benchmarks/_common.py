"""Shared bits of the benchmark scripts: machine description, result writing, table printing."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """What the numbers came from: CPU/GPU, threads, library versions, git commit."""
    import transformers

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    }
    try:
        info["git_commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        info["git_commit"] = None
    return info


def write_result(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_name(f".{path.name}.tmp")  # then renamed: a reader never sees half a file
    tmp.write_text(json.dumps({"benchmark": name, "machine": machine(), **payload}, indent=2) + "\n")
    tmp.replace(path)
    return path


def print_table(header: list[str], rows: list[list[Any]]) -> None:
    cells = [header] + [[f"{c:,.1f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for k, row in enumerate(cells):
        print(
            "  ".join(
                c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if k == 0:
            print("  ".join("-" * w for w in widths))


def seed_summary(
    records: list[dict[str, Any]],
    keys: tuple[str, ...],
    reference_ppl: Callable[[dict[str, Any]], float],
) -> list[dict[str, Any]]:
    """Per group of ``records`` equal on ``keys`` and run on two or more calibration seeds: the mean
    perplexities of slimkit and the reference, and the paired relative difference (mean, min, max), so
    a tool comparison shows its own spread. A record needs ``slimkit.ppl`` and ``ppl_rel_diff``."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in records:
        if r.get("ppl_rel_diff") is not None:
            groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for key, rs in groups.items():
        if len(rs) < 2:
            continue
        diffs = [r["ppl_rel_diff"] for r in rs]
        out.append(
            {
                **dict(zip(keys, key, strict=True)),
                "seeds": len(rs),
                "slimkit_ppl_mean": sum(r["slimkit"]["ppl"] for r in rs) / len(rs),
                "reference_ppl_mean": sum(reference_ppl(r) for r in rs) / len(rs),
                "ppl_rel_diff_mean": sum(diffs) / len(diffs),
                "ppl_rel_diff_min": min(diffs),
                "ppl_rel_diff_max": max(diffs),
            }
        )
    return out


def print_seed_summary(summary: list[dict[str, Any]], keys: tuple[str, ...]) -> None:
    """The table of :func:`seed_summary` (nothing when no group ran on several seeds)."""
    if not summary:
        return
    print("\nover calibration seeds (paired: both tools on each seed's ids):")
    print_table(
        [*keys, "seeds", "ppl slimkit mean", "ppl reference mean", "diff mean", "diff min", "diff max"],
        [
            [
                *(str(s[k]) for k in keys),
                str(s["seeds"]),
                f"{s['slimkit_ppl_mean']:.3f}",
                f"{s['reference_ppl_mean']:.3f}",
                f"{100 * s['ppl_rel_diff_mean']:+.2f}%",
                f"{100 * s['ppl_rel_diff_min']:+.2f}%",
                f"{100 * s['ppl_rel_diff_max']:+.2f}%",
            ]
            for s in summary
        ],
    )
