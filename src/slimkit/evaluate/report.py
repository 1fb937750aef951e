"""Results JSON -> ``report.md`` with tables and PNG plots.

Input: a results dict following DESIGN.md's schema, optionally with ``variants`` (each itself a
results dict with a ``variant`` entry: name, method, sparsity, pattern, allocation). Output: markdown
text; when there is a sweep, ``perplexity_vs_sparsity.png`` and ``accuracy_vs_sparsity.png`` are
written next to it (one line per method over unstructured sparsity, N:M and OWL points as markers).
"""

from __future__ import annotations

import math
import re
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
    ("mc accuracy", "mc", "accuracy"),
    ("retrieval EM", "retrieval", "exact_match"),
    ("two-hop EM", "twohop", "exact_match"),
    ("ROUGE-L", "summarization", "rougeL"),
    ("judge score", "instruct", "score"),
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


# enough to keep a name literal inside a heading or a table cell: no link, image, HTML, emphasis or
# code span can start, and no cell can be split ("_" inside words is literal in GFM and stays readable)
_MD_SPECIAL = re.compile(r"([\\`*\[\]<>|])")


def md_text(value: Any) -> str:
    """``value`` as literal markdown text: one line, markup characters escaped.

    Names in a results file (the model path, variant and task names) are data: a model directory named
    ``x\n![t](http://...)`` must not inject an image, a link or a table row into ``report.md``.
    """
    text = " ".join(str(value).split())
    return _MD_SPECIAL.sub(r"\\\1", text).replace("&", "&amp;")


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
) -> list[tuple[str, list[str]]]:
    """Variants whose perplexity stays within ``ppl_tolerance`` of dense while some knowledge task's
    primary metric drops by more than ``drop_points`` (absolute) — LLM-KICK's point that perplexity
    hides knowledge loss. Returns ``[(variant name, [task, ...]), ...]``."""
    from slimkit.evaluate.kick import PRIMARY_METRIC

    variants = _variants(results)
    dense = next((v for v in variants if v.get("variant", {}).get("method") == "dense"), None)
    if dense is None:
        return []
    d_ppl = dense["metrics"].get("ppl", {}).get("perplexity")
    if d_ppl is None:
        return []
    out = []
    for v in variants:
        ppl = v["metrics"].get("ppl", {}).get("perplexity")
        if ppl is None or ppl > d_ppl * (1 + ppl_tolerance):
            continue
        lost = []
        for task, metric in PRIMARY_METRIC.items():
            before = dense["metrics"].get(task, {}).get(metric)
            after = v["metrics"].get(task, {}).get(metric)
            if before is not None and after is not None and before - after > drop_points:
                lost.append(task)
        if lost:
            out.append((_name(v), lost))
    return out


def write_report(results: dict[str, Any], out_dir: str | Path) -> str:
    """The markdown report for ``results`` (plots, if any, are written into ``out_dir``)."""
    header, rows = summary_rows(results)
    prov = results.get("provenance", {})
    versions = ", ".join(f"{k} {v}" for k, v in prov.get("versions", {}).items())
    lines = [
        f"# slimkit study: {md_text(results['model'])}",
        "",
        f"Created {md_text(prov.get('created', '?'))} · git {md_text(str(prov.get('git_commit') or 'n/a')[:10])} "
        f"· {md_text(versions)}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(md_text(cell) for cell in r) + " |" for r in rows]
    lines += [
        "",
        "Perplexity: exp(mean token NLL) over non-overlapping windows of the held-out text.",
        "Factoid EM: normalised exact match of the greedy answer to closed-book questions in phrasings",
        "never seen in training; *popular* / *rare* split the facts by how often the corpus states them.",
        "mc accuracy: the option with the highest log-likelihood is the gold one (chance is reported per task).",
        "Retrieval EM: open-book answer from a passage in the prompt. Two-hop EM: the conclusion of a",
        "chain-of-thought answer composing two facts.",
        "Sparsity: the achieved fraction of zero weights over the compressed decoder linears (for",
        "low-rank variants: the achieved reduction of their parameter count).",
        "",
    ]
    flagged = flagged_variants(results)
    if flagged:
        lines += [
            "**Perplexity hides knowledge loss** (perplexity within 10% of dense, a knowledge task more than",
            "10 points lower): "
            + "; ".join(f"{md_text(name)} ({md_text(', '.join(tasks))})" for name, tasks in flagged)
            + ".",
            "",
        ]
    for filename in write_plots(results, out_dir):
        lines += [f"![{filename}]({filename})", ""]
    lines += ["## All metrics", ""]
    for v in _variants(results):
        lines.append(f"### {md_text(_name(v))}")
        lines.append("")
        lines.append("| task | metric | value | n |")
        lines.append("|---|---|---|---|")
        for task, metric, value, n in metric_rows(v["metrics"]):
            shown = f"{value:.4f}" if isinstance(value, float) else str(value)
            lines.append(f"| {md_text(task)} | {md_text(metric)} | {md_text(shown)} | {md_text(n)} |")
        lines.append("")
    return "\n".join(lines) + "\n"


# -- Junk DNA ------------------------------------------------------------------------------------------------
def _fmt_sparsity(value: float | None) -> str:
    return "never" if value is None else f"{value:.0%}"


def _fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def write_junkdna_plots(results: dict[str, Any], out_dir: str | Path) -> list[str]:
    """One PNG per method: a panel per difficulty axis, a line per level (score / dense vs sparsity)."""
    analysis = results["junkdna"]
    axes = list(analysis["axes"])
    if not axes:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    cols = min(4, len(axes))
    rows = math.ceil(len(axes) / cols)
    for method, by_axis in analysis["curves"].items():
        # noisy levels (a few correct answers) can exceed dense by far; show them, within reason
        peak = max(
            (y for lv in by_axis.values() for c in lv.values() for _, y in c if y is not None), default=1.0
        )
        top = min(3.0, max(1.25, 1.05 * peak))
        fig, grid = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False, sharey=True)
        for k, axis in enumerate(axes):
            ax = grid[k // cols][k % cols]
            for level, curve in by_axis[axis].items():
                points = sorted((x, y) for x, y in curve if y is not None)
                if points:
                    xs, ys = zip(*points, strict=True)
                    ax.plot(xs, ys, marker="o", markersize=3, label=level)
            for t, style in ((0.9, ":"), (0.5, "--")):
                ax.axhline(t, color="grey", linestyle=style, linewidth=0.8)
            ax.set_title(axis, fontsize=9)
            ax.set_ylim(-0.05, top)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            if k % cols == 0:
                ax.set_ylabel("score / dense")
            if k // cols == rows - 1:
                ax.set_xlabel("sparsity")
        for k in range(len(axes), rows * cols):
            grid[k // cols][k % cols].set_visible(False)
        fig.suptitle(f"Junk DNA: {method}", fontsize=11)
        fig.tight_layout()
        filename = f"junkdna_{method}.png"
        fig.savefig(Path(out_dir) / filename, dpi=110)
        plt.close(fig)
        written.append(filename)
    return written


def junkdna_threshold_table(results: dict[str, Any]) -> list[str]:
    """Markdown rows: for each difficulty level, where each method first drops below 90% / 50% of dense."""
    analysis = results["junkdna"]
    methods = list(analysis["curves"])
    by_key: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in analysis["thresholds"]:
        by_key[(row["axis"], row["level"])][row["method"]] = row
    header = ["axis", "level", "dense"] + [f"{m} <90% / <50%" for m in methods]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for (axis, level), per_method in by_key.items():
        dense = analysis["dense"].get(axis, {}).get(level)
        cells = [axis, level, "n/a" if dense is None else f"{dense:.3f}"]
        for m in methods:
            r = per_method.get(m)
            cells.append(
                "—" if r is None else f"{_fmt_sparsity(r['below_90'])} / {_fmt_sparsity(r['below_50'])}"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def junkdna_finetune_table(results: dict[str, Any]) -> list[str]:
    """Markdown rows: score / dense per difficulty level before and after each fine-tuning mode."""
    runs = results["junkdna"].get("finetune") or []
    if not runs:
        return []
    lines: list[str] = []
    groups: dict[tuple[str, float], list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        groups[(run["method"], run["sparsity"])].append(run)
    order = {"none": 0, "frozen": 1, "regrow": 2, "dense": 3}
    for (method, sparsity), group in groups.items():
        group = sorted(group, key=lambda r: order.get(r["mode"], 9))
        label = {"none": "pruned", "frozen": "+ft frozen", "regrow": "+ft regrow", "dense": "dense +ft"}
        header = ["axis", "level"] + [label.get(r["mode"], r["mode"]) for r in group]
        lines += [
            f"**{method} {sparsity:.0%}** ({group[-1]['steps']} steps; sparsity after: "
            + ", ".join(f"{label.get(r['mode'], r['mode'])} {r['sparsity_after']:.2f}" for r in group)
            + ")",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join("---" for _ in header) + "|",
        ]
        for axis, levels in group[0]["normalised"].items():
            for level in levels:
                cells = [axis, level] + [_fmt_ratio(r["normalised"].get(axis, {}).get(level)) for r in group]
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def write_junkdna_report(results: dict[str, Any], out_dir: str | Path) -> str:
    """The markdown report of a Junk DNA run (plots are written into ``out_dir``)."""
    prov = results.get("provenance", {})
    lines = [
        f"# Junk DNA analysis: {md_text(results['model'])}",
        "",
        f"Created {md_text(prov.get('created', '?'))} · git {md_text(str(prov.get('git_commit') or 'n/a')[:10])}",
        "",
        "Scores are normalised to the dense model (1.0 = no loss). For each difficulty level: the first",
        "sparsity at which it falls below 90% and below 50% of dense (*never* = not within the sweep).",
        "",
    ]
    lines += junkdna_threshold_table(results)
    lines.append("")
    for filename in write_junkdna_plots(results, out_dir):
        lines += [f"![{filename}]({filename})", ""]
    finetune = junkdna_finetune_table(results)
    if finetune:
        lines += [
            "## Does lost knowledge come back with training?",
            "",
            "Score / dense after fine-tuning the pruned model on the training text: *frozen* keeps pruned",
            "weights at zero, *regrow* lets them train; *dense +ft* is the unpruned model trained the same way.",
            "",
            *finetune,
        ]
    return "\n".join(lines) + "\n"


def combine_results(paths: list[str | Path]) -> dict[str, Any]:
    """One results dict from results JSON files: a single file as is, several as variants side by side.

    Raises:
        DataError: a missing or unreadable file, or one that does not follow the results schema.
    """
    from slimkit.core.errors import DataError
    from slimkit.core.io import MAX_JSON_BYTES, parse_json, read_text_file
    from slimkit.evaluate.results import validate_results

    if not paths:
        raise DataError("no results files given")
    loaded = []
    for path in paths:
        if not Path(path).exists():
            raise DataError(f"results file not found: {path}")
        text = read_text_file(path, max_bytes=MAX_JSON_BYTES, error=DataError)
        obj = parse_json(text, f"{path}: not a readable JSON file;", error=DataError)
        try:
            validate_results(obj)
        except DataError as e:
            raise DataError(f"{path}: {e}") from None
        loaded.append(obj)
    if len(loaded) == 1:
        return loaded[0]
    variants = []
    for i, obj in enumerate(loaded):
        for v in obj.get("variants") or [obj]:
            info = dict(v.get("variant") or {})
            info.setdefault("name", v["model"])
            info.setdefault("method", "dense" if i == 0 and "variant" not in v else "results")
            variants.append({**v, "variant": info})
    first = dict(loaded[0])
    first["variants"] = variants
    return first
