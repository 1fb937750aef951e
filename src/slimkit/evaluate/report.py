"""Results JSON -> ``report.md`` with tables and PNG plots.

Input: a results dict following DESIGN.md's schema, optionally with ``variants`` (each itself a
results dict with a ``variant`` entry: name, method, sparsity, pattern, allocation). Output: markdown
text; when there is a sweep, ``perplexity_vs_sparsity.png`` and ``accuracy_vs_sparsity.png`` are
written next to it (one line per method over unstructured sparsity, N:M and OWL points as markers).
"""

from __future__ import annotations

import math
from collections import defaultdict
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

PLOTS = (
    ("perplexity_vs_sparsity.png", "Perplexity (log scale)", (("ppl", "perplexity", "-"),), True),
    (
        "accuracy_vs_sparsity.png",
        "Closed-book factoid exact match",
        (
            ("factoid", "exact_match@popularity_half=popular", "-"),
            ("factoid", "exact_match@popularity_half=rare", "--"),
        ),
        False,
    ),
)


def _variants(results: dict[str, Any]) -> list[dict[str, Any]]:
    return results.get("variants") or [results]


def _name(v: dict[str, Any]) -> str:
    return v.get("variant", {}).get("name", v["model"])


def metric_rows(metrics: dict[str, dict[str, Any]]) -> list[tuple[str, str, Any, Any]]:
    """``(task, metric, value, n)`` for every metric of ``{task: {metric: value, "n": n, "n@tag=v": n}}``.

    A per-tag metric (``exact_match@popularity_half=rare``) gets its own count ``n@popularity_half=rare``.
    """
    rows = []
    for task, values in metrics.items():
        for metric, value in values.items():
            if metric == "n" or metric.startswith("n@"):
                continue
            tagged = "@" in metric
            n = values.get(f"n@{metric.split('@', 1)[1]}", values.get("n")) if tagged else values.get("n")
            rows.append((task, metric, value, n))
    return rows


def summary_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the study table: one row per variant, the columns present in any variant."""
    variants = _variants(results)
    columns = [c for c in SUMMARY_COLUMNS if any(c[2] in v["metrics"].get(c[1], {}) for v in variants)]
    with_sparsity = any("achieved_sparsity" in v.get("variant", {}) for v in variants)
    header = ["variant"] + (["sparsity"] if with_sparsity else []) + [c[0] for c in columns]
    rows = []
    for v in variants:
        row = [_name(v)]
        if with_sparsity:
            row.append(f"{v.get('variant', {}).get('achieved_sparsity', 0.0):.3f}")
        for _, task, metric in columns:
            value = v["metrics"].get(task, {}).get(metric)
            row.append(
                "—" if value is None else (f"{value:.2f}" if metric == "perplexity" else f"{value:.3f}")
            )
        rows.append(row)
    return header, rows


def write_plots(results: dict[str, Any], out_dir: str | Path) -> list[str]:
    """PNG plots of each metric against sparsity, one line per method; returns the file names written."""
    variants = [v for v in _variants(results) if "variant" in v]
    if len(variants) < 2:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dense = next((v for v in variants if v["variant"].get("method") == "dense"), None)
    written = []
    for filename, title, series, log_y in PLOTS:
        if not any(metric in v["metrics"].get(task, {}) for v in variants for task, metric, _ in series):
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        lines: dict[str, list[tuple[float, float]]] = defaultdict(list)
        markers: list[tuple[str, float, float]] = []
        for task, metric, style in series:
            suffix = "" if len(series) == 1 else f" ({metric.rsplit('=', 1)[-1]})"
            for v in variants:
                info, value = v["variant"], v["metrics"].get(task, {}).get(metric)
                if value is None or (isinstance(value, float) and not math.isfinite(value)):
                    continue
                x = info.get("achieved_sparsity", info.get("sparsity", 0.0))
                if info.get("method") == "dense":
                    continue
                if info.get("pattern") == "unstructured" and not info.get("allocation"):
                    lines[f"{info['method']}{suffix}|{style}"].append((x, value))
                else:
                    markers.append((f"{info['name']}{suffix}", x, value))
            if dense is not None and metric in dense["metrics"].get(task, {}):
                d = dense["metrics"][task][metric]
                for key in [k for k in lines if k.endswith(f"{suffix}|{style}")]:
                    lines[key].append((0.0, d))
        # one colour per method, so its popular/rare lines and its N:M / OWL markers read together
        methods = sorted({v["variant"]["method"] for v in variants if v["variant"].get("method") != "dense"})
        colour_of = _method_colours(methods)

        for key, points in lines.items():
            label, style = key.rsplit("|", 1)
            xs, ys = zip(*sorted(points), strict=True)
            ax.plot(xs, ys, style, marker="o", label=label, color=colour_of(label))
        for label, x, y in markers:
            marker = "s" if ":" in label else "^"
            filled = "rare" not in label
            ax.scatter(
                [x],
                [y],
                marker=marker,
                s=40,
                label=label,
                zorder=3,
                edgecolors=colour_of(label),
                facecolors=colour_of(label) if filled else "none",
            )
        if log_y:
            ax.set_yscale("log")
        ax.set_xlabel("sparsity (fraction of decoder-linear weights removed)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        fig.savefig(Path(out_dir) / filename, dpi=120)
        plt.close(fig)
        written.append(filename)
    return written


def _method_colours(methods: list[str]):
    """label -> matplotlib colour of the label's method (the label's first word, before any '+')."""
    colour = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    return lambda label: colour.get(label.split(" ")[0].split("+")[0], "black")


def flagged_variants(
    results: dict[str, Any], ppl_tolerance: float = 0.10, drop_points: float = 0.10
) -> list[str]:
    """Variants whose perplexity stays within ``ppl_tolerance`` of dense while factoid EM drops by more
    than ``drop_points`` (absolute): LLM-KICK's point that perplexity hides knowledge loss."""
    variants = _variants(results)
    dense = next((v for v in variants if v.get("variant", {}).get("method") == "dense"), None)
    if dense is None:
        return []
    d_ppl = dense["metrics"].get("ppl", {}).get("perplexity")
    d_em = dense["metrics"].get("factoid", {}).get("exact_match")
    if d_ppl is None or d_em is None:
        return []
    out = []
    for v in variants:
        ppl = v["metrics"].get("ppl", {}).get("perplexity")
        em = v["metrics"].get("factoid", {}).get("exact_match")
        if (
            ppl is not None
            and em is not None
            and ppl <= d_ppl * (1 + ppl_tolerance)
            and d_em - em > drop_points
        ):
            out.append(_name(v))
    return out


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
        "Sparsity: the achieved fraction of zero weights over the compressed decoder linears.",
        "",
    ]
    flagged = flagged_variants(results)
    if flagged:
        lines += [
            "**Perplexity hides knowledge loss** in: "
            + ", ".join(flagged)
            + " (perplexity within 10% of dense,",
            "factoid exact match more than 10 points lower).",
            "",
        ]
    for filename in write_plots(results, out_dir):
        lines += [f"![{filename}]({filename})", ""]
    lines += ["## All metrics", ""]
    for v in _variants(results):
        lines.append(f"### {_name(v)}")
        lines.append("")
        lines.append("| task | metric | value | n |")
        lines.append("|---|---|---|---|")
        for task, metric, value, n in metric_rows(v["metrics"]):
            shown = f"{value:.4f}" if isinstance(value, float) else str(value)
            lines.append(f"| {task} | {metric} | {shown} | {n} |")
        lines.append("")
    return "\n".join(lines) + "\n"
