"""The debiasing harness: train any registered method, evaluate it the same way, write results.

    from slimkit.debias import ColoredDigitsConfig, SebraConfig, colored_digits, run_method

    splits = colored_digits(ColoredDigitsConfig(alignment=0.99))
    run = run_method(SebraConfig(), splits, seed=0)
    run.metrics["test"]["bias_conflicting_accuracy"], run.metrics["ranking"]["auroc"]

Every run is evaluated on the test split (and the validation split, when there is one) with
:func:`slimkit.debias.metrics.classification_metrics`; Sebra's ranking is scored against the training
bias labels (AUROC). ``run.results`` is the shared results-JSON schema (``make_results``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from slimkit.core.devices import resolve_device
from slimkit.core.io import atomic_dir, save_tensors, write_json
from slimkit.core.seed import seed_everything
from slimkit.debias import baselines as _baselines  # noqa: F401 - registers the baselines
from slimkit.debias import sebra as _sebra  # noqa: F401 - registers sebra
from slimkit.debias.config import METHODS, DebiasConfig
from slimkit.debias.datasets import BiasDataset, DebiasSplits
from slimkit.debias.metrics import classification_metrics, group_proportions, ranking_auroc
from slimkit.debias.training import FitContext, Fitted, predict_logits
from slimkit.evaluate.results import make_results


@dataclass
class RunResult:
    """One trained method on one seed."""

    method: str
    seed: int
    metrics: dict[str, dict[str, float | int]]
    results: dict[str, Any]
    fitted: Fitted
    train_seconds: float


def method_name(cfg: DebiasConfig) -> str:
    """The registered short name of ``cfg``'s method (``sebra``, ``erm``, ...)."""
    for name in METHODS.names():
        if METHODS.config_for(name) is type(cfg):
            return name
    return type(cfg).__name__


def evaluate_split(
    model: torch.nn.Module, data: BiasDataset, train: BiasDataset, device: torch.device
) -> dict:
    """:func:`classification_metrics` of ``model`` on ``data``, I.D. accuracy weighted by ``train``'s groups."""
    pred = predict_logits(model, data, device).argmax(1)
    return classification_metrics(
        pred,
        data.labels,
        data.bias,
        data.group_ids,
        data.conflicting,
        data.num_groups,
        group_proportions(train.group_ids, train.num_groups),
    )


def ranking_metrics(ranks: Tensor, train: BiasDataset, rounds: int) -> dict[str, float | int]:
    """How well the stage-1 ranks find the bias-conflicting training samples (needs bias labels)."""
    conflicting = train.conflicting
    out: dict[str, float | int] = {"rounds": rounds, "n": len(ranks)}
    auroc = ranking_auroc(ranks, conflicting)
    if auroc is not None:
        out["auroc"] = auroc
        out["mean_rank_aligned"] = ranks[~conflicting].float().mean().item()
        out["mean_rank_conflicting"] = ranks[conflicting].float().mean().item()
    return out


def run_method(
    cfg: DebiasConfig,
    splits: DebiasSplits,
    *,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
) -> RunResult:
    """Train ``cfg``'s method on ``splits.train`` with ``seed``; evaluate on test (and validation)."""
    dev = resolve_device(device)
    trainer = METHODS.lookup(cfg)
    seed_everything(seed)
    ctx = FitContext(dev, torch.Generator().manual_seed(seed), progress)
    start = time.perf_counter()
    fitted = trainer(cfg, splits, ctx)
    seconds = time.perf_counter() - start

    name = method_name(cfg)
    metrics: dict[str, dict[str, float | int]] = {
        "test": evaluate_split(fitted.model, splits.test, splits.train, dev)
    }
    if splits.val is not None:
        metrics["val"] = evaluate_split(fitted.model, splits.val, splits.train, dev)
    if fitted.ranks is not None:
        metrics["ranking"] = ranking_metrics(fitted.ranks, splits.train, int(ctx.log.get("rounds", 0)))
    metrics["training"] = {"seconds": seconds, **ctx.log, "n": len(splits.train)}
    config = {
        "method": cfg.to_dict(),
        "dataset": splits.name,
        "data": splits.summary(),
        "group_labels_used_for_training": isinstance(cfg, _baselines.GroupBalancedConfig),
        "group_labels_used_for_selection": cfg.model_selection == "val-worst-group",
    }
    results = make_results(f"{name}/{splits.name}", metrics, config=config, seed=seed)
    return RunResult(name, seed, metrics, results, fitted, seconds)


def run_seeds(
    cfg: DebiasConfig,
    splits: DebiasSplits,
    seeds: list[int],
    *,
    device: str = "cpu",
    progress: bool = False,
) -> tuple[list[RunResult], dict[str, Any]]:
    """Run every seed; returns the runs and a summary results dict (mean and ``*_std`` per metric)."""
    runs = [run_method(cfg, splits, seed=s, device=device, progress=progress) for s in seeds]
    return runs, summarize(runs, cfg, splits)


def summarize(runs: list[RunResult], cfg: DebiasConfig, splits: DebiasSplits) -> dict[str, Any]:
    """Mean and sample standard deviation (``<metric>_std``) over seeds of every numeric metric."""
    metrics: dict[str, dict[str, float | int]] = {}
    for task in runs[0].metrics:
        keys = [k for k in runs[0].metrics[task] if k not in ("n", "worst_group")]
        entry: dict[str, float | int] = {}
        for key in keys:
            values = [r.metrics[task][key] for r in runs if key in r.metrics[task]]
            mean, std = mean_std(values)
            entry[key], entry[f"{key}_std"] = mean, std
        entry["seeds"] = len(runs)
        entry["n"] = runs[0].metrics[task]["n"]
        metrics[task] = entry
    config = {
        "method": cfg.to_dict(),
        "dataset": splits.name,
        "data": splits.summary(),
        "seeds": [r.seed for r in runs],
    }
    return make_results(f"{runs[0].method}/{splits.name}", metrics, config=config, seed=None)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var)


def save_runs(
    out_dir: str | Path,
    runs: list[RunResult],
    summary: dict[str, Any],
    splits: DebiasSplits,
    *,
    overwrite: bool = False,
    protect: tuple[str | Path, ...] = (),
) -> Path:
    """Write ``results.json`` (summary), ``seed<k>/results.json``, Sebra's ``seed<k>/ranks.safetensors``
    and ``ranking.png`` into ``out_dir`` (atomically: all or nothing). ``overwrite`` and ``protect``
    (input paths ``out_dir`` may not be or contain) as in :func:`slimkit.core.io.atomic_dir`."""
    with atomic_dir(out_dir, overwrite=overwrite, protect=protect) as tmp:
        write_json(tmp / "results.json", summary)
        for run in runs:
            write_json(tmp / f"seed{run.seed}" / "results.json", run.results)
            if run.fitted.ranks is not None:
                save_tensors(
                    tmp / f"seed{run.seed}" / "ranks.safetensors",
                    {
                        "ranks": run.fitted.ranks,
                        "labels": splits.train.labels,
                        "conflicting": splits.train.conflicting.to(torch.uint8),
                    },
                    metadata={"method": run.method, "dataset": splits.name},
                )
        ranked = [r for r in runs if r.fitted.ranks is not None]
        if ranked:
            from slimkit.debias.plots import plot_ranking

            plot_ranking(
                [(f"seed {r.seed}", r.fitted.ranks) for r in ranked],
                splits.train.conflicting,
                tmp / "ranking.png",
                title=f"Sebra spuriosity ranking, {splits.name}",
            )
    return Path(out_dir)
