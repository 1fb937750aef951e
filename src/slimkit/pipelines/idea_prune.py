"""IDEA Prune: enlarge → train → iterative structured FFN pruning → recovery, under one cosine schedule.

IDEA Prune (Li, Du, Jaiswal, Lei, Zhao, Wang, Wang; arXiv 2503.05920) trains a model whose FFNs are
``enlarge`` times wider than the target's (2.6x is the paper's best), and prunes the FFN width back to
the target inside the same training run: one learning-rate schedule (linear warm-up, cosine decay)
from the first step to the last, no re-warm-up, no optimizer reset. With ``T`` optimizer steps of the
token budget and the pruning phase ``(s0, s1]``::

    steps 1 .. s0          train the enlarged model (the default 50% of the budget)
    steps s0+1 .. s1       keep training; each step updates the EMA of |θ ⊙ ∇θ| per neuron and masks
                           the weakest until the width follows the cubic schedule down to the target
    step s1                remove the masked neurons (Adam moments of the survivors carry over)
    steps s1+1 .. T        recover: train the smaller dense model

    lr(step) = cosine_with_warmup(step, T, warmup, min_lr_ratio)       for every step of the three phases

It is one call of :func:`slimkit.train.train` with the
:class:`~slimkit.compress.structured.iterative.IterativeFFNPrune` callback; no trainer subclass.

Baselines under the same token budget (``--baselines``):

* ``scratch``: the target architecture trained for all ``T`` steps;
* ``naive``: the enlarged model trained for its share ``s0`` of the steps with its own complete cosine
  schedule, pruned in one shot by the same sensitivity score (on ``nsamples`` training windows), then
  recovered for ``T - s0`` steps with a fresh optimizer and a re-warmed schedule.

Run directory (``--out``): ``tokenizer/`` (when trained), ``idea/``, ``scratch/``, ``naive/{enlarged,
pruned,recover}/`` (each with ``checkpoints/`` while training and ``model/`` when done), and
``comparison.json`` / ``comparison.md``. With ``resume`` a finished stage is skipped and an unfinished
one continues from its newest checkpoint, so an interrupted run picks up at any stage.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit.core.config import Config, check_choice, check_range
from slimkit.core.errors import CheckpointError, ConfigError
from slimkit.core.io import write_json
from slimkit.core.progress import console

PIPELINES = ("idea", "scratch", "naive")


@dataclass(frozen=True, kw_only=True)
class IdeaPruneConfig(Config):
    """An IDEA Prune run (and its baselines), as ``slimkit idea-prune CONFIG.yaml`` reads it.

    Attributes:
        model (dict): ``{"init": {"family": ..., <HF config fields>}}``: the *target* architecture
            (its FFN width field, e.g. ``intermediate_size``, is the target width).
        tokenizer (str | dict): a tokenizer directory, or ``{"train": {"vocab_size": N}}``.
        data (str): the training text source (e.g. ``world:corpus``).
        enlarge (float): FFN width of the enlarged model as a multiple of the target's, >= 1. Default: 2.6.
        total_tokens (int): the token budget of each pipeline (predicted tokens). Default: 300_000.
        enlarged_fraction (float): share of the budget spent training the enlarged model before pruning
            starts (also the naive baseline's enlarged-training share), in (0, 1). Default: 0.5.
        prune_start (float | None): pruning-phase start as a fraction of the budget; None: ``enlarged_fraction``.
        prune_end (float): pruning-phase end (physical removal) as a fraction of the budget, in
            (prune_start, 1]. Default: 0.75.
        schedule (str): width schedule ``cubic`` | ``linear`` | ``cosine``. Default: ``cubic``.
        ema_beta (float): EMA factor of the sensitivity score, in [0, 1). Default: 0.85.
        prune_every (int): mask update interval in steps. Default: 1.
        naive_nsamples (int): training windows the naive baseline scores its one-shot pruning on. Default: 64.
        train (dict): :class:`~slimkit.train.TrainConfig` fields but ``steps`` (batch_size, seqlen,
            warmup_steps, min_lr_ratio, optimizer, seed, ...).
        eval (dict): ``ppl`` (text source, default ``world:heldout``), ``factoid`` (a factoid JSONL, or
            ``world`` for the built-in world's file, or None), ``limit`` (factoid questions, default
            200), ``seqlen`` (default: the training seqlen), ``speed_batch`` (default 8).
        out (str): the run directory (``--out`` replaces it).
    """

    model: dict[str, Any]
    tokenizer: str | dict[str, Any]
    data: str
    enlarge: float = 2.6
    total_tokens: int = 300_000
    enlarged_fraction: float = 0.5
    prune_start: float | None = None
    prune_end: float = 0.75
    schedule: str = "cubic"
    ema_beta: float = 0.85
    prune_every: int = 1
    naive_nsamples: int = 64
    train: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=dict)
    out: str = "idea-prune"

    def __post_init__(self) -> None:
        super().__post_init__()
        from slimkit.compress.structured.importance import WIDTH_SCHEDULES
        from slimkit.train.recipe import check_model_section, check_tokenizer_section

        check_model_section(self.model)
        if "init" not in self.model:
            raise ConfigError("idea-prune: model must be {init: {family: ..., ...}}, the target architecture")
        check_tokenizer_section(self.tokenizer, has_model_path=False)
        if not isinstance(self.enlarge, int | float) or isinstance(self.enlarge, bool) or self.enlarge < 1.0:
            raise ConfigError(
                f"enlarge={self.enlarge!r}: the enlarged FFN width must be at least the target width "
                "(enlarge >= 1, e.g. 2.6)"
            )
        check_range("total_tokens", self.total_tokens, 1, None)
        check_range(
            "enlarged_fraction", self.enlarged_fraction, 0.0, 1.0, lo_inclusive=False, hi_inclusive=False
        )
        start = self.start_fraction
        if not 0.0 <= start < 1.0:
            raise ConfigError(
                f"prune_start={start} is outside the token budget: give a fraction of total_tokens in [0, 1)"
            )
        if not start < self.prune_end <= 1.0:
            raise ConfigError(
                f"prune_end={self.prune_end} must be a fraction of total_tokens in (prune_start={start}, 1]; "
                "a pruning phase outside the token budget cannot run"
            )
        check_choice("schedule", self.schedule, sorted(WIDTH_SCHEDULES))
        check_range("ema_beta", self.ema_beta, 0.0, 1.0, hi_inclusive=False)
        check_range("prune_every", self.prune_every, 1, None)
        check_range("naive_nsamples", self.naive_nsamples, 1, None)
        if "steps" in self.train:
            raise ConfigError("train.steps is set by total_tokens; remove it (the budget decides the steps)")
        self.train_config(self.total_steps)  # validates the train fields now
        unknown = sorted(set(self.eval) - {"ppl", "factoid", "limit", "seqlen", "speed_batch"})
        if unknown:
            raise ConfigError(
                f"eval: unknown key(s) {unknown}; known: factoid, limit, ppl, seqlen, speed_batch"
            )
        target, enlarged = self.target_width, self.enlarged_width
        if enlarged < target:
            raise ConfigError(f"enlarged FFN width {enlarged} is smaller than the target width {target}")
        steps = self.total_steps
        s0, s1 = self.phase_steps(steps)
        if s1 <= s0:
            raise ConfigError(
                f"the pruning phase ({self.start_fraction}, {self.prune_end}] of {steps} steps rounds to no "
                "step; raise total_tokens or widen the phase"
            )

    # -- derived quantities ------------------------------------------------------------------------------------
    @property
    def start_fraction(self) -> float:
        return self.enlarged_fraction if self.prune_start is None else self.prune_start

    @property
    def width_field(self) -> str:
        init = self.model["init"]
        for name in ("intermediate_size", "ffn_dim", "n_inner", "ffn_hidden_size", "d_ff"):
            if isinstance(init.get(name), int):
                return name
        raise ConfigError(
            "model.init must give the target FFN width (intermediate_size, ffn_dim or n_inner) as an integer"
        )

    @property
    def target_width(self) -> int:
        width = self.model["init"][self.width_field]
        check_range(f"model.init.{self.width_field}", width, 1, None)
        return int(width)

    @property
    def enlarged_width(self) -> int:
        return int(round(self.enlarge * self.target_width))

    def train_config(self, steps: int) -> Any:
        from slimkit.train import TrainConfig

        return TrainConfig.from_dict({**dict(self.train), "steps": steps})

    @property
    def tokens_per_step(self) -> int:
        from slimkit.train import TrainConfig

        # a throw-away step count large enough for any warm-up: only the batch shape is read
        return TrainConfig.from_dict({**dict(self.train), "steps": 10**12}).tokens_per_step

    @property
    def total_steps(self) -> int:
        per_step = self.tokens_per_step
        steps = self.total_tokens // per_step
        if steps < 2:
            raise ConfigError(
                f"total_tokens={self.total_tokens} is fewer than two steps of {per_step} tokens; raise it"
            )
        return steps

    def phase_steps(self, steps: int) -> tuple[int, int]:
        """The pruning phase ``(s0, s1]`` in optimizer steps."""
        return round(self.start_fraction * steps), round(self.prune_end * steps)


def load_idea_config(path: str | Path, *, out: str | Path | None = None) -> IdeaPruneConfig:
    """Read an idea-prune YAML (relative ``data`` / ``tokenizer`` paths resolve against its directory)."""
    from slimkit.train.recipe import read_config_mapping, resolve_input

    path = Path(path)
    raw = read_config_mapping(path, "idea-prune config", "model, tokenizer, data, ...")
    if out is not None:
        raw["out"] = str(out)
    base = path.resolve().parent
    if isinstance(raw.get("data"), str):
        raw["data"] = resolve_input(raw["data"], base)
    if isinstance(raw.get("tokenizer"), str):
        raw["tokenizer"] = resolve_input(raw["tokenizer"], base)
    return IdeaPruneConfig.from_dict(raw)


# -- the run --------------------------------------------------------------------------------------------------
@dataclass
class PipelineResult:
    """One pipeline's outcome: its final model directory, the LR of every step, and its metrics."""

    name: str
    model_dir: Path
    steps: int
    tokens: int
    lrs: list[float]
    metrics: dict[str, Any] = field(default_factory=dict)


class LRRecorder:
    """Records the learning rate the schedule sets after every optimizer step (checkpointed with the run).

    ``lrs[k - 1]`` is the lr after step ``k``, i.e. the one step ``k + 1`` uses.
    """

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_update(self, step: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.lrs.append(float(optimizer.param_groups[0]["lr"]))

    def on_step_end(self, step: int, loss: float, model: nn.Module) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"lrs": list(self.lrs)}

    def load_state_dict(self, state: dict[str, Any], model: nn.Module) -> None:
        self.lrs = [float(x) for x in state["lrs"]]


def run_idea_prune(
    cfg: IdeaPruneConfig,
    *,
    baselines: bool = False,
    resume: bool = False,
    evaluate: bool = True,
    pipelines: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Run IDEA Prune (and with ``baselines`` the scratch and naive pipelines); returns the comparison.

    Raises:
        CheckpointError: ``cfg.out`` already holds a run and ``resume`` is off.
        ConfigError / DataError: a bad config or too little text.
    """
    from slimkit.core.distributed import distributed_context, local_device

    names = pipelines or (PIPELINES if baselines else ("idea",))
    for n in names:
        check_choice("pipeline", n, PIPELINES)
    # under torchrun one process group spans every stage; each train() call joins it
    with distributed_context(local_device(cfg.train.get("device", "cpu"))):
        return _run(cfg, names, resume, evaluate)


def _run(cfg: IdeaPruneConfig, names: tuple[str, ...], resume: bool, evaluate: bool) -> dict[str, Any]:
    """The pipelines on every rank (training in lockstep under DDP); rank 0 writes and evaluates."""
    from slimkit.core.distributed import barrier, broadcast_object, is_main_process

    out = Path(cfg.out)
    if not resume and out.exists() and any(out.iterdir()):
        raise CheckpointError(
            f"{out} already holds an idea-prune run; pass --resume to continue it or choose another --out"
        )
    barrier()  # every rank has looked at --out before rank 0 writes into it
    if is_main_process():
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", cfg.to_dict())
        tokenizer, docs = _tokenizer_and_docs(cfg, out, resume)
    barrier()  # a tokenizer rank 0 trained is on disk now; the other ranks load it
    if not is_main_process():
        tokenizer, docs = _tokenizer_and_docs(cfg, out, resume)
    from slimkit.train import tokenize_documents

    token_ids = tokenize_documents(tokenizer, docs)
    results: dict[str, PipelineResult] = {}
    for name in names:
        console().print(f"[bold]idea-prune[/bold]: pipeline {name}")
        results[name] = _PIPELINE_RUNNERS[name](cfg, tokenizer, token_ids, out / name)
    comparison: dict[str, Any] = {
        "config": cfg.to_dict(),
        "total_steps": cfg.total_steps,
        "tokens_per_step": cfg.tokens_per_step,
        "target_width": cfg.target_width,
        "enlarged_width": cfg.enlarged_width,
        "pipelines": {},
    }
    if is_main_process():  # the models are identical on every rank: one evaluation is enough
        for name, r in results.items():
            entry = {"model": str(r.model_dir), "steps": r.steps, "tokens": r.tokens}
            if evaluate:
                entry["metrics"] = evaluate_model(r.model_dir, cfg)
            comparison["pipelines"][name] = entry
        if evaluate and "idea" in results:
            comparison["speed"] = speed_comparison(cfg, results["idea"].model_dir, tokenizer)
        write_json(out / "comparison.json", comparison)
        (out / "comparison.md").write_text(comparison_markdown(comparison), encoding="utf-8")
    return broadcast_object(comparison)


def _tokenizer_and_docs(cfg: IdeaPruneConfig, out: Path, resume: bool) -> tuple[Any, list[str]]:
    from slimkit.train.recipe import load_recipe_tokenizer, read_recipe_documents

    docs = read_recipe_documents(cfg.data)
    if isinstance(cfg.tokenizer, str):
        return load_recipe_tokenizer(cfg.tokenizer), docs
    if "path" in cfg.tokenizer:
        return load_recipe_tokenizer(cfg.tokenizer["path"]), docs
    saved = out / "tokenizer"
    if saved.is_dir():
        return load_recipe_tokenizer(str(saved)), docs
    from slimkit.core.io import atomic_dir
    from slimkit.data.tokenizer import train_bpe_tokenizer

    tok = train_bpe_tokenizer(docs, **cfg.tokenizer["train"])
    with atomic_dir(saved) as tmp:
        tok.save_pretrained(tmp)
    return tok, docs


def build_model(cfg: IdeaPruneConfig, tokenizer: Any, width: int, seed: int) -> nn.Module:
    """A fresh model of the target architecture with FFN width ``width`` (weights from ``seed``)."""
    from slimkit.train.recipe import fresh_model

    init = {**cfg.model["init"], cfg.width_field: width}
    torch.manual_seed(seed)
    return fresh_model(init, tokenizer)


def _done(stage: Path) -> bool:
    return (stage / "model" / "config.json").is_file()


def _train_stage(
    model: nn.Module, token_ids: torch.Tensor, train_cfg: Any, stage: Path, callbacks: list[Any]
) -> list[float]:
    """Train (or continue from the stage's newest checkpoint); returns the lr after every step."""
    from slimkit.train import train
    from slimkit.train.checkpoint import list_checkpoints

    recorder = LRRecorder()
    resume = bool(list_checkpoints(stage / "checkpoints"))
    with torch.inference_mode(False):
        train(model, token_ids, train_cfg, stage, resume=resume, callbacks=[*callbacks, recorder])
    model.eval()
    return recorder.lrs


def _save(model: nn.Module, tokenizer: Any, stage: Path, metadata: dict[str, Any]) -> Path:
    """Rank 0 saves (every rank holds the same model); the others wait until it is on disk."""
    from slimkit.core.distributed import barrier, is_main_process
    from slimkit.models.loading import save_model

    path = stage / "model"
    if is_main_process():
        save_model(model, tokenizer, path, metadata=metadata)
    barrier()
    return path


def _load(stage: Path) -> nn.Module:
    from slimkit.models.loading import load_model

    model, _ = load_model(stage / "model", dtype="float32", with_tokenizer=False)
    return model


def run_idea(cfg: IdeaPruneConfig, tokenizer: Any, token_ids: torch.Tensor, stage: Path) -> PipelineResult:
    """The IDEA pipeline: one training run of the enlarged model with iterative pruning inside."""
    from slimkit.compress.structured import IterativeFFNPrune

    steps = cfg.total_steps
    train_cfg = cfg.train_config(steps)
    s0, s1 = cfg.phase_steps(steps)
    lrs: list[float] = []
    if not _done(stage):
        model = build_model(cfg, tokenizer, cfg.enlarged_width, train_cfg.seed)
        pruner = IterativeFFNPrune(
            model,
            target_width=cfg.target_width,
            start_step=s0,
            end_step=s1,
            schedule=cfg.schedule,
            beta=cfg.ema_beta,
            every=cfg.prune_every,
        )
        lrs = _train_stage(model, token_ids, train_cfg, stage, [pruner])
        meta = {
            "method": "idea-prune",
            "pipeline": "idea",
            "config": cfg.to_dict(),
            "phase_steps": [s0, s1],
            "widths": [list(w) for w in pruner.widths],
            "lrs": lrs,
        }
        _save(model, tokenizer, stage, meta)
    return PipelineResult("idea", stage / "model", steps, steps * train_cfg.tokens_per_step, lrs)


def run_scratch(cfg: IdeaPruneConfig, tokenizer: Any, token_ids: torch.Tensor, stage: Path) -> PipelineResult:
    """The target architecture trained from scratch on the whole budget."""
    steps = cfg.total_steps
    train_cfg = cfg.train_config(steps)
    lrs: list[float] = []
    if not _done(stage):
        model = build_model(cfg, tokenizer, cfg.target_width, train_cfg.seed)
        lrs = _train_stage(model, token_ids, train_cfg, stage, [])
        _save(
            model,
            tokenizer,
            stage,
            {"method": "idea-prune", "pipeline": "scratch", "config": cfg.to_dict(), "lrs": lrs},
        )
    return PipelineResult("scratch", stage / "model", steps, steps * train_cfg.tokens_per_step, lrs)


def run_naive(cfg: IdeaPruneConfig, tokenizer: Any, token_ids: torch.Tensor, stage: Path) -> PipelineResult:
    """Enlarged model to the end of its own schedule, one-shot pruned, recovered with a re-warmed schedule."""
    from slimkit.compress import compress_
    from slimkit.compress.structured import FFNStructuredConfig
    from slimkit.train.data import PackedSampler

    steps = cfg.total_steps
    s0, _ = cfg.phase_steps(steps)
    first = cfg.train_config(s0)
    second = cfg.train_config(steps - s0)
    lrs: list[float] = []
    enlarged, pruned, recover = stage / "enlarged", stage / "pruned", stage / "recover"
    if not _done(enlarged):
        model = build_model(cfg, tokenizer, cfg.enlarged_width, first.seed)
        lrs += _train_stage(model, token_ids, first, enlarged, [])
        _save(model, tokenizer, enlarged, {"method": "idea-prune", "pipeline": "naive/enlarged", "lrs": lrs})
    if not _done(pruned):
        model = _load(enlarged)
        # the calibration windows come from the training text (a fixed seed apart from the training order)
        calib = PackedSampler(token_ids, first.seqlen, seed=first.seed + 1).next_batch(cfg.naive_nsamples)
        report = compress_(model, FFNStructuredConfig(target_width=cfg.target_width), calib, progress=False)
        _save(
            model,
            tokenizer,
            pruned,
            {"method": "idea-prune", "pipeline": "naive/pruned", "report": report.to_dict()},
        )
    if not _done(recover):
        model = _load(pruned)
        lrs += _train_stage(model, token_ids, second, recover, [])
        _save(
            model, tokenizer, recover, {"method": "idea-prune", "pipeline": "naive", "config": cfg.to_dict()}
        )
    return PipelineResult("naive", recover / "model", steps, steps * first.tokens_per_step, lrs)


_PIPELINE_RUNNERS = {"idea": run_idea, "scratch": run_scratch, "naive": run_naive}


# -- evaluation -----------------------------------------------------------------------------------------------
def evaluate_model(model_dir: Path, cfg: IdeaPruneConfig) -> dict[str, Any]:
    """Held-out perplexity (and answer-token perplexity when the text has answer spans), factoid accuracy
    (popular / rare) and the parameter count of a finished model."""
    from slimkit.compress.structured import count_parameters, ffn_width
    from slimkit.evaluate import evaluate
    from slimkit.evaluate.perplexity import perplexity
    from slimkit.models.loading import load_model

    model, tok = load_model(model_dir, dtype="float32")
    seqlen = int(cfg.eval.get("seqlen") or cfg.train_config(cfg.total_steps).seqlen)
    metrics: dict[str, Any] = {"params": count_parameters(model), "ffn_width": ffn_width(model)}
    ppl = perplexity(model, tok, cfg.eval.get("ppl", "world:heldout"), seqlen=seqlen, batch_size=16)
    metrics["ppl"] = ppl.ppl
    if ppl.answer_ppl is not None:  # the NLL of the facts' object tokens only (world held-out text v2)
        metrics["answer_ppl"] = ppl.answer_ppl
    factoid = cfg.eval.get("factoid", "world")
    if factoid:
        if factoid == "world":
            from slimkit.models.default import default_world_data

            factoid = default_world_data("factoid")
        m = evaluate(model, tok, "factoid", data=factoid, limit=int(cfg.eval.get("limit", 200)))["factoid"]
        metrics["factoid"] = m["exact_match"]
        metrics["factoid_popular"] = m.get("exact_match@popularity_half=popular")
        metrics["factoid_rare"] = m.get("exact_match@popularity_half=rare")
    return metrics


@torch.no_grad()
def forward_speed(model: nn.Module, vocab: int, *, batch: int, seqlen: int, repeats: int = 10) -> float:
    """Median tokens/s of full forward passes on random ids ``[batch, seqlen]`` (after one warm-up pass)."""
    model.eval()
    ids = torch.randint(0, vocab, (batch, seqlen), generator=torch.Generator().manual_seed(0))
    model(input_ids=ids)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model(input_ids=ids)
        times.append(time.perf_counter() - t0)
    return batch * seqlen / statistics.median(times)


def speed_comparison(cfg: IdeaPruneConfig, pruned_dir: Path, tokenizer: Any) -> dict[str, Any]:
    """Forward tokens/s and parameters of the pruned model against an enlarged one of the same family."""
    from slimkit.compress.structured import count_parameters

    pruned = _load(pruned_dir.parent)
    enlarged = build_model(cfg, tokenizer, cfg.enlarged_width, 0)
    seqlen = int(cfg.eval.get("seqlen") or cfg.train_config(cfg.total_steps).seqlen)
    batch = int(cfg.eval.get("speed_batch", 8))
    vocab = len(tokenizer)
    out = {}
    for name, model in (("enlarged", enlarged), ("pruned", pruned)):
        out[name] = {
            "params": count_parameters(model),
            "tokens_per_s": forward_speed(model, vocab, batch=batch, seqlen=seqlen),
        }
    out["speedup"] = out["pruned"]["tokens_per_s"] / out["enlarged"]["tokens_per_s"]
    out["setting"] = f"forward, batch {batch} x seqlen {seqlen}, {torch.get_num_threads()} CPU threads"
    return out


def comparison_markdown(comparison: dict[str, Any]) -> str:
    """The comparison as a markdown table."""
    lines = [
        f"IDEA Prune comparison: {comparison['total_steps']} steps x {comparison['tokens_per_step']} tokens per "
        f"pipeline; FFN width {comparison['enlarged_width']} -> {comparison['target_width']}",
        "",
        "| pipeline | params | ppl | answer ppl | factoid | popular | rare |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    fmt = lambda v: "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))  # noqa: E731
    for name, entry in comparison["pipelines"].items():
        m = entry.get("metrics", {})
        lines.append(
            f"| {name} | {m.get('params', '-')} | {fmt(m.get('ppl'))} | {fmt(m.get('answer_ppl'))} | "
            f"{fmt(m.get('factoid'))} | "
            f"{fmt(m.get('factoid_popular'))} | {fmt(m.get('factoid_rare'))} |"
        )
    if "speed" in comparison:
        s = comparison["speed"]
        lines += [
            "",
            f"Speed ({s['setting']}): enlarged {s['enlarged']['tokens_per_s']:.0f} tok/s, pruned "
            f"{s['pruned']['tokens_per_s']:.0f} tok/s ({s['speedup']:.2f}x).",
        ]
    return "\n".join(lines) + "\n"


__all__ = [
    "PIPELINES",
    "IdeaPruneConfig",
    "LRRecorder",
    "PipelineResult",
    "comparison_markdown",
    "evaluate_model",
    "forward_speed",
    "load_idea_config",
    "run_idea_prune",
]
