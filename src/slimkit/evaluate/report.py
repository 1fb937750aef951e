"""Results JSON -> ``report.md`` with tables and PNG plots.

Input: a results dict following DESIGN.md's schema, optionally with ``variants`` (each itself a
results dict with a ``variant`` entry: ``name``, ``method``, ``family``, ``series``, ``options`` and,
from the compression, ``achieved_sparsity`` and ``size_fraction``) and ``higher_is_better``
(``{task: {metric: bool}}``, see :func:`metric_directions`). Output: markdown text; when there is a
sweep, ``perplexity_vs_size.png`` and ``accuracy_vs_size.png`` are written next to it: one panel per
family (``prune``, ``lowrank``, ...), the metric against the variant's size (stored bits / dense bits
of the compressed matrices, so pruned, low-rank and quantized variants share one axis), one curve per
series, the dense model as a reference line, and the legends below the panels.

Metric direction: a metric is higher-is-better unless the results say otherwise or it is one of
:data:`LOWER_IS_BETTER` (perplexity, toxicity, leakage, ...); counts (``n``, ``n_windows``) have none.
The knowledge-loss flag and the tables read it, so a lower-is-better task is never flagged for
improving.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

# the columns every study table shows, in order: (label, task, metric)
PPL_METRICS = frozenset({"perplexity", "answer_perplexity"})
"""Shown with two decimals in the study table."""

SUMMARY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("perplexity", "ppl", "perplexity"),
    ("answer ppl", "ppl", "answer_perplexity"),
    ("factoid EM", "factoid", "exact_match"),
    ("EM popular half", "factoid", "exact_match@popularity_half=popular"),
    ("EM rare half", "factoid", "exact_match@popularity_half=rare"),
    ("contains", "factoid", "contains"),
    ("mc accuracy", "mc", "accuracy"),
    ("retrieval EM", "retrieval", "exact_match"),
    ("two-hop EM", "twohop", "exact_match"),
    ("ROUGE-L", "summarization", "rougeL"),
    ("key-fact recall", "summarization", "key_fact_recall"),
    ("judge score", "instruct", "score"),
)

# (file, title, y label, [(task, metric, legend suffix)], log y); the first metric of a plot is drawn
# solid / filled, the second dashed / hollow
PLOTS = (
    (
        "perplexity_vs_size.png",
        "Perplexity",
        "perplexity, log scale",
        (("ppl", "perplexity", "every token"), ("ppl", "answer_perplexity", "answer tokens")),
        True,
    ),
    (
        "accuracy_vs_size.png",
        "Closed-book factoid exact match",
        "exact match",
        (
            ("factoid", "exact_match@popularity_half=popular", "popular half"),
            ("factoid", "exact_match@popularity_half=rare", "rare half"),
        ),
        False,
    ),
)

SIZE_LABEL = "size: stored bits / dense bits of the compressed matrices"

LOWER_IS_BETTER = frozenset(
    {
        "perplexity",
        "mean_nll",
        "answer_perplexity",
        "answer_mean_nll",
        "toxicity",
        "expected_max_toxicity",
        "toxicity_rate",
        "leak_rate",
        "leakage",
        "memorization",
        "demographic_parity_gap",
        "error_rate",
    }
)
"""Metric names (before any ``@tag=value``) for which a smaller value is better."""

NOT_SCORES = frozenset({"n", "n_windows", "n_tokens", "n_responses", "seqlen", "chance", "rated"})
"""Bookkeeping values reported beside the metrics: they have no direction."""


def higher_is_better(task: str, metric: str, declared: dict[str, Any] | None = None) -> bool | None:
    """Whether a larger ``metric`` of ``task`` is better (None: a count, not a score).

    ``declared`` is a results file's ``higher_is_better`` (``{task: {metric: bool}}``, per-tag metrics
    under their base name); it wins over the built-in :data:`LOWER_IS_BETTER` / :data:`NOT_SCORES`.
    """
    base = metric.split("@", 1)[0]
    value = ((declared or {}).get(task) or {}).get(base)
    if isinstance(value, bool):
        return value
    if base in NOT_SCORES or base.startswith("n_"):
        return None
    return base not in LOWER_IS_BETTER


def metric_directions(results: list[dict[str, Any]]) -> dict[str, dict[str, bool]]:
    """``{task: {metric: higher_is_better}}`` for every scored metric in ``results`` (tags folded away)."""
    out: dict[str, dict[str, bool]] = {}
    for res in results:
        declared = res.get("higher_is_better")
        for task, values in res["metrics"].items():
            for metric in values:
                direction = higher_is_better(task, metric, declared)
                if direction is not None:
                    out.setdefault(task, {})[metric.split("@", 1)[0]] = direction
    return out


def _arrow(direction: bool | None) -> str:
    return "" if direction is None else (" ↑" if direction else " ↓")


def _variants(results: dict[str, Any]) -> list[dict[str, Any]]:
    return results.get("variants") or [results]


def _name(v: dict[str, Any]) -> str:
    return v.get("variant", {}).get("name", v["model"])


def _is_dense(v: dict[str, Any]) -> bool:
    return v.get("variant", {}).get("method") == "dense"


def _size(info: dict[str, Any]) -> float | None:
    """A variant's stored bits / dense bits (older results: 1 - sparsity of a pruned variant)."""
    if info.get("method") == "dense":
        return 1.0
    size = info.get("size_fraction")
    if isinstance(size, int | float):
        return float(size)
    sparsity = info.get("achieved_sparsity")
    return 1.0 - float(sparsity) if isinstance(sparsity, int | float) else None


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
    """(header, rows) of the study table: one row per variant, the columns present in any variant.

    ``size`` is stored bits / dense bits, ``sparsity`` the achieved fraction of zero weights (for
    low-rank variants: of removed parameters); metric headers carry their direction (↑ / ↓).
    """
    variants = _variants(results)
    declared = results.get("higher_is_better")
    columns = [c for c in SUMMARY_COLUMNS if any(c[2] in v["metrics"].get(c[1], {}) for v in variants)]
    with_size = any("size_fraction" in v.get("variant", {}) for v in variants)
    with_sparsity = any("achieved_sparsity" in v.get("variant", {}) for v in variants)
    header = (
        ["variant"]
        + (["size"] if with_size else [])
        + (["sparsity"] if with_sparsity else [])
        + [label + _arrow(higher_is_better(task, metric, declared)) for label, task, metric in columns]
    )
    rows = []
    for v in variants:
        info = v.get("variant", {})
        row = [_name(v)]
        if with_size:
            size = _size(info) if ("size_fraction" in info or _is_dense(v)) else None
            row.append("—" if size is None else f"{size:.3f}")
        if with_sparsity:
            row.append(f"{info.get('achieved_sparsity', 0.0):.3f}")
        for _, task, metric in columns:
            value = v["metrics"].get(task, {}).get(metric)
            row.append(
                "—" if value is None else (f"{value:.2f}" if metric in PPL_METRICS else f"{value:.3f}")
            )
        rows.append(row)
    return header, rows


def write_plots(results: dict[str, Any], out_dir: str | Path) -> list[str]:
    """PNG plots of each metric against size, one panel per family; returns the file names written."""
    variants = [v for v in _variants(results) if "variant" in v]
    if len(variants) < 2:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    declared = results.get("higher_is_better")
    dense = next((v for v in variants if _is_dense(v)), None)
    compressed = [v for v in variants if not _is_dense(v) and _size(v["variant"]) is not None]
    families = list(dict.fromkeys(v["variant"].get("family") or "variants" for v in compressed))
    if not families:
        return []
    # one colour per method across every panel; within a method, one marker per single-point series
    colour = {
        m: f"C{i % 10}" for i, m in enumerate(dict.fromkeys(v["variant"]["method"] for v in compressed))
    }
    written = []
    for filename, title, ylabel, series_spec, log_y in PLOTS:
        present = [
            (task, metric, suffix)
            for task, metric, suffix in series_spec
            if any(_finite(v["metrics"].get(task, {}).get(metric)) for v in compressed)
        ]
        if not present:
            continue
        cols = min(len(families), 3)
        rows = math.ceil(len(families) / cols)
        values = [
            v["metrics"][task][metric]
            for v in [*compressed, *([dense] if dense else [])]
            for task, metric, _ in present
            if _finite(v["metrics"].get(task, {}).get(metric))
        ]
        # one y range for every panel, unless (perplexity) one family blows up by orders of magnitude
        share = not log_y or (min(values) > 0 and max(values) / min(values) <= 10)
        fig, grid = plt.subplots(
            rows, cols, figsize=(5.0 * cols, 4.4 * rows), squeeze=False, sharey=share, sharex=True
        )
        for k, family in enumerate(families):
            ax = grid[k // cols][k % cols]
            members = [v for v in compressed if (v["variant"].get("family") or "variants") == family]
            _plot_panel(ax, members, dense, present, colour)
            ax.set_title(family, fontsize=10)
            ax.grid(alpha=0.3)
            ax.set_xlim(0.0, 1.05)
            if log_y:
                _plain_log_axis(ax)
            if k % cols == 0:
                direction = higher_is_better(present[0][0], present[0][1], declared)
                ax.set_ylabel(
                    ylabel + {True: " (higher is better)", False: " (lower is better)"}.get(direction, "")
                )
            ax.set_xlabel(SIZE_LABEL, fontsize=8)
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=7, frameon=False)
        for k in range(len(families), rows * cols):
            grid[k // cols][k % cols].set_visible(False)
        styles = ""
        if len(present) > 1:
            styles = (
                "   ("
                + "; ".join(
                    f"{suffix}: {'solid / filled' if i == 0 else 'dashed / hollow'}"
                    for i, (_, _, suffix) in enumerate(present)
                )
                + ")"
            )
        fig.suptitle(title + styles, fontsize=11)
        fig.tight_layout()
        fig.savefig(Path(out_dir) / filename, dpi=120, bbox_inches="tight")
        plt.close(fig)
        written.append(filename)
    return written


def _plain_log_axis(ax: Any) -> None:
    """A log y axis labelled 6, 8, 10 rather than 6x10^0, with enough labels for its range: every minor
    tick within about a decade, 1-2-5 steps up to a few decades, powers of ten beyond."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    plain = FuncFormatter(lambda y, _: f"{y:,.0f}" if y >= 1000 else f"{y:g}")
    ax.yaxis.set_major_formatter(plain)
    lo, hi = ax.get_ylim()
    decades = math.log10(hi / lo) if lo > 0 and hi > lo else 0.0
    if decades > 1.1 and decades <= 3.5:
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_minor_formatter(plain if decades <= 1.1 else NullFormatter())
    ax.tick_params(axis="y", which="both", labelsize=8)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


_SINGLE_MARKERS = ("s", "^", "D", "v", "P", "X", "<", ">")
DODGE = 0.012  # x offset between single markers drawn at the same size


def _plot_panel(
    ax: Any, members: list[dict[str, Any]], dense: dict[str, Any] | None, present, colour
) -> None:
    """One family's panel: a line per multi-point series, a marker per single-point one, dense as a line."""
    series: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for v in members:
        series[v["variant"].get("series") or _name(v)].append(v)
    marker_of: dict[str, str] = {}
    singles: dict[str, int] = defaultdict(int)
    at_size: dict[float, list[str]] = defaultdict(list)
    for label, points in series.items():
        if len(points) == 1:
            method = points[0]["variant"]["method"]
            marker_of[label] = _SINGLE_MARKERS[singles[method] % len(_SINGLE_MARKERS)]
            singles[method] += 1
            at_size[round(_size(points[0]["variant"]), 3)].append(label)
    # single markers at one size (every method at 50%) are spread a little apart so none hides another
    dodge = {
        label: (k - (len(labels) - 1) / 2) * DODGE
        for labels in at_size.values()
        for k, label in enumerate(labels)
    }
    for i, (task, metric, _) in enumerate(present):
        first = i == 0
        if dense is not None and _finite(dense["metrics"].get(task, {}).get(metric)):
            ax.axhline(
                dense["metrics"][task][metric],
                color="black",
                linestyle=":" if first else (0, (1, 3)),
                linewidth=1.0,
                label="dense" if first else None,
            )
        for label, points in series.items():
            method = points[0]["variant"]["method"]
            xy = sorted(
                (_size(v["variant"]), v["metrics"][task][metric])
                for v in points
                if _finite(v["metrics"].get(task, {}).get(metric))
            )
            if not xy:
                continue
            xs, ys = zip(*xy, strict=True)
            c = colour.get(method, "black")
            if len(points) > 1:
                ax.plot(
                    xs, ys, "-" if first else "--", marker="o", markersize=4, color=c,
                    markerfacecolor=c if first else "white", label=label if first else None,
                )  # fmt: skip
            else:
                ax.scatter(
                    [x + dodge[label] for x in xs], ys, marker=marker_of[label], s=42, zorder=3, edgecolors=c,
                    facecolors=c if first else "none", label=label if first else None,
                )  # fmt: skip


def flag_metric(results: dict[str, Any]) -> str:
    """The perplexity the knowledge-loss flag rests on: ``answer_perplexity`` (NLL of the facts'
    object tokens alone) when the dense variant has it, else ``perplexity``.

    Whole-text perplexity on text about facts is mostly the loss of the subjects' names; a damaged
    model that flattens its name prior can lower it while it forgets the facts, which made the flag
    fire on an artefact. The answer tokens carry the knowledge the flag is about.
    """
    dense = next((v for v in _variants(results) if _is_dense(v)), None)
    has_answer = dense is not None and "answer_perplexity" in dense["metrics"].get("ppl", {})
    return "answer_perplexity" if has_answer else "perplexity"


def flagged_variants(
    results: dict[str, Any], ppl_tolerance: float = 0.10, drop_points: float = 0.10
) -> list[tuple[str, list[str]]]:
    """Variants whose perplexity (:func:`flag_metric`: answer-token perplexity where the text has
    answer spans) stays within ``ppl_tolerance`` of dense while some knowledge task's primary metric
    gets worse by more than ``drop_points`` (absolute) — LLM-KICK's point that perplexity hides
    knowledge loss. "Worse" follows each metric's direction (:func:`higher_is_better`).
    Returns ``[(variant name, [task, ...]), ...]``."""
    from slimkit.evaluate.kick import PRIMARY_METRIC

    variants = _variants(results)
    declared = results.get("higher_is_better")
    dense = next((v for v in variants if _is_dense(v)), None)
    if dense is None:
        return []
    key = flag_metric(results)
    d_ppl = dense["metrics"].get("ppl", {}).get(key)
    if d_ppl is None:
        return []
    ppl_up = higher_is_better("ppl", key, declared) is not True
    out = []
    for v in variants:
        ppl = v["metrics"].get("ppl", {}).get(key)
        if ppl is None or (
            ppl > d_ppl * (1 + ppl_tolerance) if ppl_up else ppl < d_ppl * (1 - ppl_tolerance)
        ):
            continue
        lost = []
        for task, metric in PRIMARY_METRIC.items():
            before = dense["metrics"].get(task, {}).get(metric)
            after = v["metrics"].get(task, {}).get(metric)
            if before is None or after is None:
                continue
            worse = (
                before - after if higher_is_better(task, metric, declared) is not False else after - before
            )
            if worse > drop_points:
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
    ]
    sweep = results.get("sweep")
    if isinstance(sweep, dict) and sweep.get("source"):
        lines += [
            f"Sweep: {md_text(sweep['source'])}"
            + (f" — {md_text(sweep['description'])}" if sweep.get("description") else ""),
            "",
        ]
    lines += [
        "| " + " | ".join(md_text(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(md_text(cell) for cell in r) + " |" for r in rows]
    lines += [
        "",
        "↑ higher is better, ↓ lower is better.",
        "Perplexity: exp(mean token NLL) over non-overlapping windows of the held-out text; answer ppl:",
        "the same over the facts' object tokens only (where the text ships answer spans).",
        "Factoid EM: normalised exact match of the greedy answer to closed-book questions in phrasings",
        "never seen in training; *popular* / *rare* split the facts by how often the corpus states them.",
        "mc accuracy: the option with the highest log-likelihood is the gold one (chance is reported per task).",
        "Retrieval EM: open-book answer from a passage in the prompt. Two-hop EM: the conclusion of a",
        "chain-of-thought answer composing two facts.",
        "Size: stored bits / dense bits of the compressed matrices, as slimkit saves them: a pruned",
        "matrix in bitmask storage (its kept values plus one mask bit per weight, so 50% sparsity in",
        "float32 is 0.53), a low-rank one as its factors (stored / dense parameters). In memory a",
        "pruned model still holds every weight. Sparsity: the achieved fraction of zero weights over the",
        "compressed matrices (for low-rank variants: the fraction of their parameters removed).",
        "",
    ]
    flagged = flagged_variants(results)
    if flagged:
        which = "answer-token perplexity" if flag_metric(results) == "answer_perplexity" else "perplexity"
        lines += [
            f"**Perplexity hides knowledge loss** ({which} within 10% of dense, a knowledge task more than",
            "10 points worse): "
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
    sig = analysis.get("dense_significance") or {}
    header = ["axis", "level", "dense", "chance", "n"] + [f"{m} <90% / <50%" for m in methods]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for (axis, level), per_method in by_key.items():
        dense = analysis["dense"].get(axis, {}).get(level)
        s = sig.get(axis, {}).get(level, {})
        mark = " †" if s.get("significant") is False else ""
        chance = s.get("chance")
        cells = [
            md_text(axis),
            md_text(level),
            ("n/a" if dense is None else f"{dense:.3f}") + mark,
            "—" if chance is None else f"{chance:.3f}",
            str(s.get("n", "—")),
        ]
        for m in methods:
            r = per_method.get(m)
            cells.append(
                "—" if r is None else f"{_fmt_sparsity(r['below_90'])} / {_fmt_sparsity(r['below_50'])}"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def junkdna_corrected_table(results: dict[str, Any]) -> list[str]:
    """Markdown rows: (score - chance) / (dense - chance) per level at each sparsity, per method.

    ``n/a`` where dense is not above chance; ``†`` where the pruned model's score is not
    significantly above chance (one-sided binomial test, see :mod:`slimkit.pipelines.junkdna`).
    """
    analysis = results["junkdna"]
    corrected, significant = analysis.get("corrected"), analysis.get("significant") or {}
    if not corrected:
        return []
    lines: list[str] = []
    for method, by_axis in corrected.items():
        sparsities = sorted({s for lv in by_axis.values() for c in lv.values() for s, _ in c if s > 0})
        header = ["axis", "level"] + [f"{s:.0%}" for s in sparsities]
        lines += [f"**{md_text(method)}**", "", "| " + " | ".join(header) + " |",
                  "|" + "|".join("---" for _ in header) + "|"]  # fmt: skip
        for axis, by_level in by_axis.items():
            for level, curve in by_level.items():
                values = dict(curve)
                flags = dict(significant.get(method, {}).get(axis, {}).get(level, []))
                cells = [md_text(axis), md_text(level)]
                for sp in sparsities:
                    mark = " †" if flags.get(sp) is False else ""
                    cells.append(_fmt_ratio(values.get(sp)) + mark)
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
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
        "*chance* is what guessing scores on the level (1/options; two-hop: the majority answer of each",
        "composition); † marks a dense level not significantly above it (one-sided binomial test,",
        "p < 0.05, at the level's n items): its curve carries no signal.",
        "",
    ]
    lines += junkdna_threshold_table(results)
    lines.append("")
    corrected = junkdna_corrected_table(results)
    if corrected:
        lines += [
            "## Chance-corrected: (score - chance) / (dense - chance)",
            "",
            "1.0 = all of dense's knowledge above chance kept, 0 = down to guessing; *n/a* where dense is",
            "not above chance; † = this score is not significantly above chance.",
            "",
            *corrected,
        ]
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
