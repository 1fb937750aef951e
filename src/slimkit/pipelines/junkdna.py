"""Junk DNA analysis: how knowledge of each difficulty dies as sparsity grows, and whether it comes back.

Yin, Jaiswal et al., "Junk DNA Hypothesis: Pruning Small Pre-Trained Weights Irreversibly and
Monotonically Impairs 'Difficult' Downstream Tasks in LLMs" (ICML'24, arXiv 2310.02277): removing
small-magnitude weights hurts hard tasks first and more, and downstream training does not bring the
loss back. For every method x sparsity this pipeline prunes a copy of the model, evaluates the KICK
tasks split by difficulty, and normalises each difficulty level to the dense model::

    normalised(method, s, axis, level) = score(method, s, level) / score(dense, level)

and, since a level's score has a floor that guessing reaches (1/options in multiple choice, the
majority answer per composition in two-hop), also to what dense knows above that floor::

    corrected(method, s, level) = (score(method, s, level) - chance(level)) / (dense(level) - chance(level))

``n/a`` (None) where the dense score is not above chance: there is nothing to lose. A level is marked
*not significant* where its score is not significantly above its chance: a one-sided exact binomial
test of ``k = round(score * n)`` successes in ``n`` items against ``p = chance``, at ``ALPHA`` = 0.05
(for multiple choice, ``chance`` is the mean of ``1 / options`` over the level's items). Levels that
dense itself does not pass carry no signal about what pruning removed.

On the built-in world the difficulty axes are: fact popularity (popular vs rare half, and quartiles),
options in multiple choice (2 vs 4 vs 8), context length in retrieval (short vs long), and hops
(one-hop factoid vs two-hop composition). On real data, every tag a task groups by is an axis, and
the readers group by their dataset's own tags (TriviaQA: context length, answer type; MMLU:
subject; FreebaseQA: parses; ``countries:``: population quartile, relation, options). Each task's
score is its headline metric (a reader's choice, e.g. containment for FreebaseQA).

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
ALPHA = 0.05
BINARY_METRICS = ("exact_match", "contains", "lenient", "accuracy", "accuracy_norm")
"""Per-item 0/1 metrics: the ones a binomial test applies to (ROUGE and F1 are not counts)."""


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
        num_fewshot, chat_template, system_prompt: the KICK suite's prompting options (see
            ``KickSuiteConfig``; e.g. ``chat_template="on"`` for an instruction-tuned model).
            Default: None (each task's own).
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
    num_fewshot: int | None = None
    chat_template: str | None = None
    system_prompt: str | None = None
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
            num_fewshot=self.num_fewshot,
            chat_template=self.chat_template,
            system_prompt=self.system_prompt,
        )


# -- pure analysis over metrics dicts --------------------------------------------------------------------
def difficulty_levels(
    metrics: dict[str, dict[str, Any]], headlines: dict[str, str | None] | None = None
) -> dict[str, list[tuple[str, str, str]]]:
    """Difficulty axes found in one model's KICK metrics: axis -> [(level, task, metric key), ...].

    Every ``headline@tag=value`` key of a task is a level of the axis ``"task: tag"`` (the task's
    headline metric: ``headlines[task]`` when given, else
    :data:`slimkit.evaluate.kick.PRIMARY_METRIC`); with both ``factoid`` and ``twohop`` present the
    hops axis compares their overall scores.
    """
    from slimkit.evaluate.kick import PRIMARY_METRIC

    def headline(task: str) -> str | None:
        chosen = (headlines or {}).get(task)
        return chosen if chosen is not None else PRIMARY_METRIC.get(task)

    axes: dict[str, list[tuple[str, str, str]]] = {}
    for task, values in metrics.items():
        primary = headline(task)
        if primary is None:
            continue
        for key in values:
            if key.startswith(f"{primary}@"):
                tag, level = key.split("@", 1)[1].split("=", 1)
                axes.setdefault(f"{task}: {tag}", []).append((level, task, key))
    if "factoid" in metrics and "twohop" in metrics:
        axes[HOPS_AXIS] = [
            ("one-hop", "factoid", headline("factoid")),
            ("two-hop", "twohop", headline("twohop")),
        ]  # type: ignore[list-item]
    return axes


def _companion(key: str, name: str) -> str:
    """``chance@tag=v`` / ``n@tag=v`` for the level key ``metric@tag=v`` (``chance`` / ``n`` overall)."""
    return f"{name}@{key.split('@', 1)[1]}" if "@" in key else name


def level_chance(metrics: dict[str, dict[str, Any]], task: str, key: str) -> float:
    """What guessing scores on a level: its ``chance`` metric, 0 for tasks that report none."""
    return float(metrics.get(task, {}).get(_companion(key, "chance"), 0.0))


def chance_corrected(
    dense: dict[str, dict[str, Any]],
    variant: dict[str, dict[str, Any]],
    axes: dict[str, list[tuple[str, str, str]]],
) -> dict[str, dict[str, float | None]]:
    """axis -> level -> (score - chance) / (dense - chance); None where dense is not above chance."""
    return _relative_to_dense(dense, variant, axes, lambda task, key: level_chance(dense, task, key))


def _relative_to_dense(
    dense: dict[str, dict[str, Any]],
    variant: dict[str, dict[str, Any]],
    axes: dict[str, list[tuple[str, str, str]]],
    baseline: Any,
) -> dict[str, dict[str, float | None]]:
    """axis -> level -> (score - b) / (dense - b) with b = ``baseline(task, key)``; None where dense <= b."""
    out: dict[str, dict[str, float | None]] = {}
    for axis, levels in axes.items():
        out[axis] = {}
        for level, task, key in levels:
            base, value = dense.get(task, {}).get(key), variant.get(task, {}).get(key)
            floor = baseline(task, key)
            ok = base is not None and value is not None and base > floor
            out[axis][level] = (value - floor) / (base - floor) if ok else None
    return out


def binomial_tail(k: int, n: int, p: float) -> float:
    """``P(X >= k)`` for ``X ~ Binomial(n, p)``, exactly (summed in log space)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
        for i in range(k, n + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def significance(
    metrics: dict[str, dict[str, Any]], axes: dict[str, list[tuple[str, str, str]]], alpha: float = ALPHA
) -> dict[str, dict[str, dict[str, Any]]]:
    """axis -> level -> ``{score, chance, n, p_value, significant}``: is the level above its chance?

    One-sided exact binomial test (module docstring); ``significant`` is None where it does not
    apply (a continuous metric such as ROUGE, or no items).
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for axis, levels in axes.items():
        out[axis] = {}
        for level, task, key in levels:
            values = metrics.get(task, {})
            score, n = values.get(key), int(values.get(_companion(key, "n"), 0) or 0)
            chance = level_chance(metrics, task, key)
            binary = key.split("@", 1)[0] in BINARY_METRICS
            if score is None or not n or not binary:
                out[axis][level] = {
                    "score": score,
                    "chance": chance,
                    "n": n,
                    "p_value": None,
                    "significant": None,
                }
                continue
            p_value = binomial_tail(round(score * n), n, chance)
            out[axis][level] = {
                "score": score,
                "chance": chance,
                "n": n,
                "p_value": p_value,
                "significant": p_value < alpha,
            }
    return out


def normalised_scores(
    dense: dict[str, dict[str, Any]],
    variant: dict[str, dict[str, Any]],
    axes: dict[str, list[tuple[str, str, str]]],
) -> dict[str, dict[str, float | None]]:
    """axis -> level -> score / dense score (None where the dense model scores 0 on the level)."""
    return _relative_to_dense(dense, variant, axes, lambda task, key: 0.0)


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
    dense_run = run_suite(dense_model, tokenizer, kick)
    dense_metrics = dense_run.metrics
    eval_time = time.perf_counter() - t0
    headlines = {task: c.get("headline") for task, c in dense_run.task_configs.items()}
    axes = difficulty_levels(dense_metrics, headlines)
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
    analysis["headlines"] = headlines
    analysis["finetune"] = finetune
    analysis["dense_eval_time_s"] = eval_time

    config = {"junkdna": cfg.to_dict(), "task_configs": dense_run.task_configs}
    results = make_results(name, dense_metrics, config=config, seed=cfg.seed)
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
    """Normalised and chance-corrected curves, significance, and the 90% / 50% thresholds per method,
    axis and level (``corrected_below_*`` on the chance-corrected curves)."""
    dense_sig = significance(dense_metrics, axes)
    curves: dict[str, dict[str, dict[str, list[tuple[float, float | None]]]]] = {}
    corrected: dict[str, dict[str, dict[str, list[tuple[float, float | None]]]]] = {}
    significant: dict[str, dict[str, dict[str, list[tuple[float, bool | None]]]]] = {}
    for method in cfg.methods:
        curves[method] = {axis: {lv: [(0.0, 1.0)] for lv, _, _ in levels} for axis, levels in axes.items()}
        corrected[method] = {
            axis: {lv: [(0.0, 1.0 if dense_sig[axis][lv]["score"] is not None
                         and dense_sig[axis][lv]["score"] > dense_sig[axis][lv]["chance"] else None)]
                   for lv, _, _ in levels}
            for axis, levels in axes.items()
        }  # fmt: skip
        significant[method] = {
            axis: {lv: [(0.0, dense_sig[axis][lv]["significant"])] for lv, _, _ in levels}
            for axis, levels in axes.items()
        }
    for v in variants:
        info = v["variant"]
        norm = normalised_scores(dense_metrics, v["metrics"], axes)
        corr = chance_corrected(dense_metrics, v["metrics"], axes)
        sig = significance(v["metrics"], axes)
        for axis, levels in norm.items():
            for level, value in levels.items():
                curves[info["method"]][axis][level].append((info["sparsity"], value))
                corrected[info["method"]][axis][level].append((info["sparsity"], corr[axis][level]))
                significant[info["method"]][axis][level].append(
                    (info["sparsity"], sig[axis][level]["significant"])
                )
    thresholds = []
    for method, by_axis in curves.items():
        for axis, by_level in by_axis.items():
            for level, curve in by_level.items():
                row: dict[str, Any] = {"method": method, "axis": axis, "level": level}
                for t in THRESHOLDS:
                    row[f"below_{round(t * 100)}"] = first_below(curve, t)
                    row[f"corrected_below_{round(t * 100)}"] = first_below(corrected[method][axis][level], t)
                thresholds.append(row)
    dense_levels = {
        axis: {level: dense_metrics.get(task, {}).get(key) for level, task, key in levels}
        for axis, levels in axes.items()
    }
    return {"axes": {a: [lv for lv, _, _ in levels] for a, levels in axes.items()}, "dense": dense_levels,
            "dense_significance": dense_sig, "curves": curves, "corrected": corrected,
            "significant": significant, "thresholds": thresholds}  # fmt: skip


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
                    "corrected": chance_corrected(dense_metrics, after, axes),
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
                    "corrected": chance_corrected(dense_metrics, before, axes),
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
