"""What a Graph Ladling run writes: ``results.json`` (the shared results schema), ``soups.json``
(how each soup was made), ``soup.safetensors`` (the chosen soup) and ``ladling.png``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from slimkit.core.io import atomic_dir, save_tensors, write_json
from slimkit.graph.ladling.runner import BaselineResult, LadlingResult


def results_dict(
    result: LadlingResult,
    dataset: str,
    *,
    baseline: BaselineResult | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``make_results`` metrics: one task per ingredient, per soup, the best ingredient and (optionally)
    the full-graph baseline; each with ``val_acc``, ``test_acc`` and ``n`` (= test nodes)."""
    from slimkit.evaluate.results import make_results  # lazy: slimkit.evaluate pulls in transformers

    n = result.n_test
    metrics: dict[str, dict[str, Any]] = {}
    for ing, test in zip(result.ingredients, result.ingredient_test, strict=True):
        entry = {"val_acc": ing.val_acc, "test_acc": test, "seconds": ing.seconds, "steps": ing.steps, "n": n}
        if not math.isnan(ing.peak_memory_mb):
            entry["peak_memory_mb"] = ing.peak_memory_mb
        metrics[f"ingredient_{ing.index}"] = entry
    best = result.best_ingredient
    metrics["best_ingredient"] = {
        "val_acc": result.ingredients[best].val_acc,
        "test_acc": result.ingredient_test[best],
        "index": best,
        "n": n,
    }
    for name, soup in result.soups.items():
        metrics[f"soup_{name}"] = {
            "val_acc": soup.val_acc,
            "test_acc": result.soup_test[name],
            "ingredients_used": sum(w > 0 for w in soup.weights),
            "val_evaluations": soup.evaluations,
            "n": n,
        }
    if baseline is not None:
        metrics["full_graph"] = {
            "val_acc": baseline.val_acc,
            "test_acc": baseline.test_acc,
            "epochs": baseline.epochs,
            "seconds": baseline.seconds,
            "n": n,
        }
    metrics["timing"] = {
        "train_seconds": result.train_seconds,
        "soup_seconds": result.soup_seconds,
        "world_size": result.world_size,
        "n": len(result.ingredients),
    }
    config = {"dataset": dataset, "ladling": result.config.to_dict(), **(extra or {})}
    return make_results(f"ladling:{dataset}", metrics, config=config, seed=result.config.seed)


def soups_detail(result: LadlingResult) -> dict[str, Any]:
    return {
        name: {
            "val_acc": soup.val_acc,
            "test_acc": result.soup_test[name],
            "weights": soup.weights,
            "order": soup.order,
            "alphas": soup.alphas,
            "evaluations": soup.evaluations,
        }
        for name, soup in result.soups.items()
    }


def plot_ladling(result: LadlingResult, path: str | Path, *, baseline: BaselineResult | None = None) -> Path:
    """Bars of validation and test accuracy: ingredients (by validation rank), then every soup."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = sorted(range(len(result.ingredients)), key=lambda i: -result.ingredients[i].val_acc)
    labels = [f"ing {i}" for i in order] + [f"soup\n{name}" for name in result.soups]
    val = [result.ingredients[i].val_acc for i in order] + [s.val_acc for s in result.soups.values()]
    test = [result.ingredient_test[i] for i in order] + list(result.soup_test.values())
    if baseline is not None:
        labels.append(f"full graph\n{baseline.epochs} ep")
        val.append(baseline.val_acc)
        test.append(baseline.test_acc)
    xs = range(len(labels))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(labels)), 4.0))
    ax.bar([x - 0.2 for x in xs], val, width=0.4, label="validation", color="#9db4d0")
    ax.bar([x + 0.2 for x in xs], test, width=0.4, label="test", color="#2f5d8c")
    ax.axvline(len(order) - 0.5, color="grey", linestyle=":")
    lo = min(val + test)
    ax.set_ylim(max(0.0, lo - 0.05), min(1.0, max(val + test) + 0.03))
    ax.set_xticks(list(xs), labels, fontsize=7)
    ax.set_ylabel("accuracy")
    cfg = result.config
    ax.set_title(
        f"Graph Ladling: {cfg.ingredients} × {cfg.model.arch}, view {cfg.view.kind}, init {cfg.init}"
    )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def save_run(
    result: LadlingResult,
    out: str | Path,
    dataset: str,
    *,
    baseline: BaselineResult | None = None,
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
    protect: tuple[str | Path, ...] = (),
) -> Path:
    """Write the run's files to ``out`` (atomically: all of them or none). ``overwrite`` and ``protect``
    (input paths ``out`` may not be or contain) as in :func:`slimkit.core.io.atomic_dir`."""
    with atomic_dir(out, overwrite=overwrite, protect=protect) as tmp:
        write_json(tmp / "results.json", results_dict(result, dataset, baseline=baseline, extra=extra))
        write_json(tmp / "soups.json", soups_detail(result))
        save_tensors(tmp / "soup.safetensors", result.soup.state, metadata={"soup": result.config.soup})
        plot_ladling(result, tmp / "ladling.png", baseline=baseline)
    return Path(out)
