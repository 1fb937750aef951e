"""Junk DNA analysis: how knowledge of each difficulty dies as sparsity grows, and whether it comes back.

Yin, Jaiswal et al., "Junk DNA Hypothesis: Pruning Small Pre-Trained Weights Irreversibly and
Monotonically Impairs 'Difficult' Downstream Tasks in LLMs" (ICML'24, arXiv 2310.02277): removing
small-magnitude weights hurts hard tasks first and more, and downstream training does not bring the
loss back. For every method x sparsity this pipeline prunes a copy of the model, evaluates the KICK
tasks split by difficulty, and normalises each difficulty level to the dense model::

    normalised(method, s, axis, level) = score(method, s, level) / score(dense, level)

On the built-in world the difficulty axes are: fact popularity (popular vs rare half, and quartiles),
options in multiple choice (2 vs 4 vs 8), context length in retrieval (short vs long), and hops
(one-hop factoid vs two-hop composition). On real data, every tag a task groups by is an axis.

It reports the curves (one PNG per method, one panel per axis), the first sparsity at which each
level drops below 90% and 50% of dense, and the paper's two fine-tune-after-pruning modes, trained
with slimkit's loop on ``finetune_data`` (the world's corpus by default: the very text the knowledge
came from, so this is the most favourable case for recovery):

* ``frozen``: pruned weights stay zero (the mask is applied again after every step — the paper's
  "sparse transfer");
* ``regrow``: every weight trains, so pruned ones may regrow (its "sparse-to-dense transfer");
* ``dense``: the unpruned model trained the same way, the control that separates recovery from
  what more training alone does.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from slimkit.core.config import Config, check_positive, check_range
from slimkit.core.errors import ConfigError
from slimkit.core.io import atomic_dir, check_output_dir, write_json, write_text
from slimkit.core.progress import console

HOPS_AXIS = "hops (factoid vs twohop)"
FINETUNE_MODES = ("frozen", "regrow", "dense")
THRESHOLDS = (0.9, 0.5)


@dataclass(frozen=True)
class JunkDNAConfig(Config):
    """The sparsity x difficulty sweep and the fine-tuning runs.

    Attributes:
        model (str | None): a model directory; None = the built-in world's default model.
        methods (tuple[str, ...]): pruning methods (short names). Default: magnitude, wanda, sparsegpt.
        sparsities (tuple[float, ...]): unstructured sparsities in [0, 1); 0 is the dense model.
            Default: 0, 0.1, ..., 0.7.
        data (str | tuple[str, ...] | None): KICK reader spec(s); None = the built-in world.
        tasks (tuple[str, ...]): KICK tasks; () = every one the data provides. Default: ().
        limit (int | None): items per task, >= 1 (the world's files are shuffled, so the first N
            sample every level). Default: None (all).
        task_options (dict[str, dict]): per-task overrides (see ``KickSuiteConfig``). Default: {}.
        calib (str | None): calibration text; None = the world's corpus. Default: None.
        nsamples, calib_seqlen (int): calibration sequences and length. Default: 64 x 128.
        finetune_methods (tuple[str, ...]): methods whose pruned models are fine-tuned (subset of
            ``methods``). Default: ("magnitude",) — the paper's setting.
        finetune_sparsities (tuple[float, ...]): sparsities fine-tuned, in (0, 1). Default: (0.5,).
        finetune_steps (int): optimizer steps per fine-tuning run, >= 1; 0 disables fine-tuning.
            Default: 150.
        finetune_lr (float): AdamW peak learning rate. Default: 3e-4.
        finetune_data (str | None): text source to fine-tune on; None = ``world:corpus``.
        batch_size (int | None): evaluation batch size for every task. Default: each task's own.
        device (str): compute device. Default: "cpu".
        seed (int): calibration and fine-tuning seed. Default: 0.
    """

    model: str | None = None
    methods: tuple[str, ...] = ("magnitude", "wanda", "sparsegpt")
    sparsities: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
    data: str | tuple[str, ...] | None = None
    tasks: tuple[str, ...] = ()
    limit: int | None = None
    task_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    calib: str | None = None
    nsamples: int = 64
    calib_seqlen: int = 128
    finetune_methods: tuple[str, ...] = ("magnitude",)
    finetune_sparsities: tuple[float, ...] = (0.5,)
    finetune_steps: int = 150
    finetune_lr: float = 3e-4
    finetune_data: str | None = None
    batch_size: int | None = None
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("methods", "sparsities", "tasks", "finetune_methods", "finetune_sparsities", "data"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        super().__post_init__()
        if not self.methods:
            raise ConfigError("junkdna needs at least one method")
        if self.model is not None and self.data is None:
            raise ConfigError("junkdna on your own model needs data (the KICK tasks to split by difficulty)")
        if not self.sparsities:
            raise ConfigError("junkdna needs at least one sparsity")
        for s in self.sparsities:
            check_range("sparsity", s, 0.0, 1.0, hi_inclusive=False)
        for s in self.finetune_sparsities:
            check_range("finetune sparsity", s, 0.0, 1.0, lo_inclusive=False, hi_inclusive=False)
        extra = [m for m in self.finetune_methods if m not in self.methods]
        if extra:
            raise ConfigError(f"finetune_methods {extra} are not among methods {list(self.methods)}")
        check_range("finetune_steps", self.finetune_steps, 0, None)
        check_range("finetune_lr", self.finetune_lr, 0.0, None, lo_inclusive=False)
        for name in ("nsamples", "calib_seqlen"):
            check_positive(name, getattr(self, name))
        if self.limit is not None:
            check_positive("limit", self.limit)

    def kick_config(self) -> Any:
        """The KICK suite config every variant is evaluated with."""
        from slimkit.evaluate.kick import KickSuiteConfig

        options = dict(self.task_options)
        if self.data is None and "factoid" not in options:
            # quartiles of fact popularity show the gradient the two halves only hint at
            options["factoid"] = {"group_by_tags": ["popularity_half", "popularity_quartile"]}
        return KickSuiteConfig(
            data=self.data,
            tasks=self.tasks,
            limit=self.limit,
            batch_size=self.batch_size,
            task_options=options,
        )


# -- pure analysis over metrics dicts --------------------------------------------------------------------
def difficulty_levels(metrics: dict[str, dict[str, Any]]) -> dict[str, list[tuple[str, str, str]]]:
    """Difficulty axes found in one model's KICK metrics: axis -> [(level, task, metric key), ...].

    Every ``primary@tag=value`` key of a task is a level of the axis ``"task: tag"`` (the task's
    primary metric, see :data:`slimkit.evaluate.kick.PRIMARY_METRIC`); with both ``factoid`` and
    ``twohop`` present the hops axis compares their overall scores.
    """
    from slimkit.evaluate.kick import PRIMARY_METRIC

    axes: dict[str, list[tuple[str, str, str]]] = {}
    for task, values in metrics.items():
        primary = PRIMARY_METRIC.get(task)
        if primary is None:
            continue
        for key in values:
            if key.startswith(f"{primary}@"):
                tag, level = key.split("@", 1)[1].split("=", 1)
                axes.setdefault(f"{task}: {tag}", []).append((level, task, key))
    if "factoid" in metrics and "twohop" in metrics:
        axes[HOPS_AXIS] = [
            ("one-hop", "factoid", PRIMARY_METRIC["factoid"]),
            ("two-hop", "twohop", PRIMARY_METRIC["twohop"]),
        ]
    return axes


def normalised_scores(
    dense: dict[str, dict[str, Any]],
    variant: dict[str, dict[str, Any]],
    axes: dict[str, list[tuple[str, str, str]]],
) -> dict[str, dict[str, float | None]]:
    """axis -> level -> score / dense score (None where the dense model scores 0 on the level)."""
    out: dict[str, dict[str, float | None]] = {}
    for axis, levels in axes.items():
        out[axis] = {}
        for level, task, key in levels:
            base = dense.get(task, {}).get(key)
            value = variant.get(task, {}).get(key)
            out[axis][level] = None if not base or value is None else value / base
    return out


def first_below(curve: list[tuple[float, float | None]], threshold: float) -> float | None:
    """The smallest sparsity whose normalised score is below ``threshold`` (None if it never is)."""
    for sparsity, value in sorted(curve):
        if value is not None and value < threshold:
            return sparsity
    return None


# -- the pipeline ----------------------------------------------------------------------------------------
def run_junkdna(cfg: JunkDNAConfig, out: str | Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Run the sweep and the fine-tuning, write ``results.json``, ``report.md`` and PNGs to ``out``.

    ``out`` is checked before any work, as in :func:`slimkit.pipelines.study.run_study`.
    """
    protect = (cfg.model,) if cfg.model else ()
    check_output_dir(out, protect=protect, overwrite=overwrite)
    from slimkit.compress import build_config
    from slimkit.evaluate import make_results, run_suite, validate_results
    from slimkit.pipelines._sweep import compressed_copy, load_subject, shared_calibration

    configs = {(m, s): build_config(m, sparsity=s) for m in cfg.methods for s in cfg.sparsities if s > 0}
    kick = cfg.kick_config()
    dense_model, tokenizer, name = load_subject(cfg.model, cfg.device)
    calib = shared_calibration(
        list(configs.values()),
        tokenizer,
        cfg.calib,
        nsamples=cfg.nsamples,
        seqlen=cfg.calib_seqlen,
        seed=cfg.seed,
    )

    def evaluate_model(model: Any) -> dict[str, dict[str, Any]]:
        return run_suite(model, tokenizer, kick).metrics

    console().print("[bold]junkdna[/bold] dense model")
    t0 = time.perf_counter()
    dense_metrics = evaluate_model(dense_model)
    eval_time = time.perf_counter() - t0
    axes = difficulty_levels(dense_metrics)
    variants: list[dict[str, Any]] = []
    total = len(configs)
    for i, ((method, sparsity), config) in enumerate(configs.items()):
        console().print(f"[bold]junkdna[/bold] [{i + 1}/{total}] {method} {sparsity:.0%}")
        model, info = compressed_copy(dense_model, config, calib, cfg.device)
        metrics = evaluate_model(model)
        del model
        res = make_results(
            f"{name} [{method} {sparsity:.0%}]",
            metrics,
            config={"compression": config.to_dict()},
            seed=cfg.seed,
        )
        res["variant"] = {"name": f"{method} {sparsity:.0%}", "method": method, "sparsity": sparsity, **info}
        variants.append(res)

    finetune = _finetune_runs(cfg, dense_model, tokenizer, calib, evaluate_model, dense_metrics, axes)
    analysis = analyse(cfg, dense_metrics, variants, axes)
    analysis["finetune"] = finetune
    analysis["dense_eval_time_s"] = eval_time

    results = make_results(name, dense_metrics, config={"junkdna": cfg.to_dict()}, seed=cfg.seed)
    results["variants"] = variants
    results["junkdna"] = analysis
    validate_results(results)
    with atomic_dir(out, protect=protect, overwrite=overwrite) as tmp:
        write_json(tmp / "results.json", results)
        from slimkit.evaluate.report import write_junkdna_report

        write_text(tmp / "report.md", write_junkdna_report(results, tmp))
    return results


def analyse(
    cfg: JunkDNAConfig,
    dense_metrics: dict[str, dict[str, Any]],
    variants: list[dict[str, Any]],
    axes: dict[str, list[tuple[str, str, str]]],
) -> dict[str, Any]:
    """Normalised curves and the 90% / 50% thresholds per method, axis and level."""
    curves: dict[str, dict[str, dict[str, list[tuple[float, float | None]]]]] = {}
    for method in cfg.methods:
        curves[method] = {
            axis: {level: [(0.0, 1.0)] for level, _, _ in levels} for axis, levels in axes.items()
        }
    for v in variants:
        info = v["variant"]
        norm = normalised_scores(dense_metrics, v["metrics"], axes)
        for axis, levels in norm.items():
            for level, value in levels.items():
                curves[info["method"]][axis][level].append((info["sparsity"], value))
    thresholds = []
    for method, by_axis in curves.items():
        for axis, by_level in by_axis.items():
            for level, curve in by_level.items():
                row = {"method": method, "axis": axis, "level": level}
                for t in THRESHOLDS:
                    row[f"below_{round(t * 100)}"] = first_below(curve, t)
                thresholds.append(row)
    dense_levels = {
        axis: {level: dense_metrics.get(task, {}).get(key) for level, task, key in levels}
        for axis, levels in axes.items()
    }
    return {"axes": {a: [lv for lv, _, _ in levels] for a, levels in axes.items()}, "dense": dense_levels,
            "curves": curves, "thresholds": thresholds}  # fmt: skip


def _finetune_runs(
    cfg, dense_model, tokenizer, calib, evaluate_model, dense_metrics, axes
) -> list[dict[str, Any]]:
    """The frozen / regrow / dense-control fine-tuning runs; each evaluated like the sweep."""
    if cfg.finetune_steps == 0 or not cfg.finetune_methods or not cfg.finetune_sparsities:
        return []
    import copy

    from slimkit.compress import build_config
    from slimkit.data.sources import read_documents
    from slimkit.pipelines._sweep import compressed_copy
    from slimkit.train import TrainConfig, tokenize_documents, train

    docs = read_documents(cfg.finetune_data or "world:corpus")
    token_ids = tokenize_documents(tokenizer, docs, separator="\n\n")
    train_cfg = TrainConfig.from_dict(
        {
            "steps": cfg.finetune_steps,
            "batch_size": 16,
            "seqlen": cfg.calib_seqlen,
            "warmup_steps": max(1, cfg.finetune_steps // 10),
            "min_lr_ratio": 0.1,
            "optimizer": {"type": "AdamWConfig", "lr": cfg.finetune_lr, "weight_decay": 0.0},
            "seed": cfg.seed,
            "device": cfg.device,
            "log_every": 25,
        }
    )
    runs = []
    control: dict[str, Any] | None = None
    for method in cfg.finetune_methods:
        for sparsity in cfg.finetune_sparsities:
            pruned, _ = compressed_copy(
                dense_model, build_config(method, sparsity=sparsity), calib, cfg.device
            )
            before = evaluate_model(pruned)
            for mode in FINETUNE_MODES:
                if mode == "dense" and control is not None:
                    runs.append({**control, "method": method, "sparsity": sparsity})
                    continue
                console().print(f"[bold]junkdna[/bold] fine-tune {method} {sparsity:.0%} ({mode})")
                model = copy.deepcopy(dense_model if mode == "dense" else pruned)
                callbacks = [KeepPruned(model)] if mode == "frozen" else []
                with torch.inference_mode(False):
                    model.train()
                    result = train(model, token_ids, train_cfg, callbacks=callbacks)
                model.eval()
                after = evaluate_model(model)
                run = {
                    "mode": mode,
                    "steps": cfg.finetune_steps,
                    "final_loss": result.losses[-1],
                    "sparsity_after": _zero_fraction(model),
                    "normalised": normalised_scores(dense_metrics, after, axes),
                    "metrics": after,
                }
                if mode == "dense":
                    control = run
                runs.append({**run, "method": method, "sparsity": sparsity})
            runs.append(
                {
                    "mode": "none",
                    "method": method,
                    "sparsity": sparsity,
                    "steps": 0,
                    "sparsity_after": _zero_fraction(pruned),
                    "normalised": normalised_scores(dense_metrics, before, axes),
                    "metrics": before,
                }
            )
    return runs


class KeepPruned:
    """Training callback: zero the pruned weights again after every step (the mask is taken at start).

    Only weights that are exactly zero when training starts count as pruned, in the decoder-block
    linears the pruning methods target.
    """

    def __init__(self, model: Any) -> None:
        from slimkit.models.adapters import block_linear_filter

        keep = block_linear_filter(model)
        self.masks = []
        for module_name, module in model.named_modules():
            if keep(module_name, module):
                mask = module.weight != 0  # in the stored layout, whatever it is (Conv1D included)
                if not bool(mask.all()):
                    self.masks.append((module, mask))

    def on_step_end(self, step: int, loss: float, model: Any) -> None:
        with torch.no_grad():
            for module, mask in self.masks:
                module.weight.mul_(mask)


def _zero_fraction(model: Any) -> float:
    from slimkit.models.adapters import block_linear_filter

    keep = block_linear_filter(model)
    zeros = total = 0
    for module_name, module in model.named_modules():
        if keep(module_name, module):
            zeros += int((module.weight == 0).sum())
            total += module.weight.numel()
    return zeros / total if total else math.nan
