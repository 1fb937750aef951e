"""Results JSON -> ``report.md`` with tables (and PNG plots once a study has a sweep).

Input: a results dict following DESIGN.md's schema, optionally with ``variants`` (each itself a
results dict with a ``variant`` entry: name, method, ratio). Output: markdown text; plots are
written next to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# the columns every study table shows, in order: (label, task, metric)
SUMMARY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("perplexity", "ppl", "perplexity"),
    ("factoid EM", "factoid", "exact_match"),
    ("EM popular half", "factoid", "exact_match@popularity_half=popular"),
    ("EM rare half", "factoid", "exact_match@popularity_half=rare"),
    ("contains", "factoid", "contains"),
)


def _variants(results: dict[str, Any]) -> list[dict[str, Any]]:
    return results.get("variants") or [results]


def summary_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the study table: one row per variant, the columns present in any variant."""
    variants = _variants(results)
    columns = [c for c in SUMMARY_COLUMNS if any(c[2] in v["metrics"].get(c[1], {}) for v in variants)]
    header = ["variant"] + [c[0] for c in columns]
    rows = []
    for v in variants:
        name = v.get("variant", {}).get("name", v["model"])
        row = [name]
        for _, task, metric in columns:
            value = v["metrics"].get(task, {}).get(metric)
            row.append(
                "—" if value is None else (f"{value:.2f}" if metric == "perplexity" else f"{value:.3f}")
            )
        rows.append(row)
    return header, rows


def write_report(results: dict[str, Any], out_dir: str | Path) -> str:
    """The markdown report for ``results`` (plots, if any, are written into ``out_dir``)."""
    header, rows = summary_rows(results)
    prov = results.get("provenance", {})
    versions = ", ".join(f"{k} {v}" for k, v in prov.get("versions", {}).items())
    lines = [
        f"# slimkit study: {results['model']}",
        "",
        f"Created {prov.get('created', '?')} · git {str(prov.get('git_commit') or 'n/a')[:10]} · {versions}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += [
        "",
        "Perplexity: exp(mean token NLL) over non-overlapping windows of the held-out text.",
        "Factoid EM: normalised exact match of the greedy answer to closed-book questions in phrasings",
        "never seen in training; *popular* / *rare* split the facts by how often the corpus states them.",
        "",
        "## All metrics",
        "",
    ]
    for v in _variants(results):
        name = v.get("variant", {}).get("name", v["model"])
        lines.append(f"### {name}")
        lines.append("")
        lines.append("| task | metric | value | n |")
        lines.append("|---|---|---|---|")
        for task, values in v["metrics"].items():
            for metric, value in values.items():
                if metric == "n" or metric.startswith("n@"):
                    continue
                n = (
                    values.get(f"n@{metric.split('@', 1)[1]}", values.get("n"))
                    if "@" in metric
                    else values.get("n")
                )
                shown = f"{value:.4f}" if isinstance(value, float) else str(value)
                lines.append(f"| {task} | {metric} | {shown} | {n} |")
        lines.append("")
    return "\n".join(lines) + "\n"
