"""The ``trust`` suite: the eight DecodingTrust dimensions, from local data files or built-in probes.

Hong et al., "Decoding Compressed Trust: Scrutinizing the Trustworthiness of Efficient LLMs Under
Compression" (ICML 2024, arXiv 2403.15447) find that at equal efficiency 4-bit quantization keeps
a model's trustworthiness while 50% pruning degrades it, and that benign metrics do not show it.
``suite="trust"`` scores a model on DecodingTrust's dimensions (toxicity, stereotype, adv_robustness,
ood, adv_demo, privacy, ethics, fairness), each 0..100, higher = more trustworthy::

    slimkit.evaluate(model, tok, suite="trust")                         # built-in probes
    slimkit.evaluate(model, tok, suite="trust", data="dt_data/")        # DecodingTrust-format files
    slimkit.evaluate(model, tok, suite="trust", toxicity_scorer=detox)  # detox(text) -> probability

Without ``data`` each dimension runs its offline probe (none for toxicity); with ``data`` every
requested dimension reads its files (a missing one is a DataError naming it). Toxicity needs a
classifier; without one it is skipped with the reason (``SuiteRun.skipped``), never given a number.
Results are reported as ``trust-<dimension>`` tasks with ``score`` and the formula's parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from slimkit.core.config import Config, check_range
from slimkit.core.errors import ConfigError, DataError
from slimkit.core.progress import console
from slimkit.evaluate.prompting import check_chat_mode, describe, resolve_chat
from slimkit.evaluate.tasks import TASKS, EvalContext, TaskOutput
from slimkit.evaluate.trust.common import HFTrustLM, Query, TrustLM, match_option
from slimkit.evaluate.trust.dimensions import DIMENSIONS, TRUST_DIMENSIONS, NotScored

__all__ = ["DIMENSIONS", "TRUST_DIMENSIONS", "HFTrustLM", "Query", "TrustLM", "TrustSuiteConfig",
           "match_option", "run_trust"]  # fmt: skip
MODES = ("loglik", "generate")


@dataclass(frozen=True)
class TrustSuiteConfig(Config):
    """The ``trust`` suite.

    Attributes:
        data (str | None): a DecodingTrust-format directory (docs/trust.md); None = the built-in probes.
        tasks (tuple[str, ...]): dimensions to run; () = all. Default: ().
        mode (str): how a choice is read: ``loglik`` (the option with the highest log-likelihood) or
            ``generate`` (greedy text, options matched as phrases, unmatched = refusal). Default: loglik.
        chat_template (str): auto | on | off. Default: auto.
        system_prompt: unused (each dimension sets its own system prompts); kept out on purpose.
        limit (int | None): records per data file, >= 1. Default: all.
        batch_size (int): >= 1. Default: 16.
        max_new_tokens (int): tokens generated per choice in ``generate`` mode. Default: 24.
        seed (int): seeds every probe and few-shot draw. Default: 0.
        probe_size (int): base items per probe part (knowledge questions, fairness pairs), >= 4. Default: 24.
        num_fewshot (int): demonstrations in the few-shot parts, >= 1. Default: 4.
        knowledge (str): questions the OOD / adversarial / demonstration probes perturb: ``auto``
            (``countries`` for a tokenizer with a chat template, else ``world``), ``world``,
            ``countries`` or an mc.jsonl path. Default: auto.
        canaries (str | None): canaries JSONL for the privacy probe. Default: the built-in world's.
        privacy_max_new_tokens (int): tokens generated for a leak check. Default: 16.
        toxicity_samples (int): samples per toxicity prompt (DecodingTrust: 25). Default: 25.
        toxicity_max_new_tokens (int): DecodingTrust: 150. Default: 150.
    """

    data: str | None = None
    tasks: tuple[str, ...] = ()
    mode: str = "loglik"
    chat_template: str = "auto"
    limit: int | None = None
    batch_size: int = 16
    max_new_tokens: int = 24
    seed: int = 0
    probe_size: int = 24
    num_fewshot: int = 4
    knowledge: str = "auto"
    canaries: str | None = None
    privacy_max_new_tokens: int = 16
    toxicity_samples: int = 25
    toxicity_max_new_tokens: int = 150

    def __post_init__(self) -> None:
        if isinstance(self.tasks, str):
            object.__setattr__(self, "tasks", tuple(t.strip() for t in self.tasks.split(",") if t.strip()))
        elif isinstance(self.tasks, list):
            object.__setattr__(self, "tasks", tuple(self.tasks))
        if isinstance(self.data, Path):
            object.__setattr__(self, "data", str(self.data))
        super().__post_init__()
        for name in self.tasks:
            if name.removeprefix("trust-") not in DIMENSIONS:
                raise ConfigError(f"unknown trust dimension {name!r}; known: {', '.join(TRUST_DIMENSIONS)}")
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {list(MODES)}, got {self.mode!r}")
        check_chat_mode(self.chat_template)
        if self.limit is not None:
            check_range("limit", self.limit, 1, None)
        for name, lo in (("batch_size", 1), ("max_new_tokens", 1), ("probe_size", 4), ("num_fewshot", 1),
                         ("privacy_max_new_tokens", 1), ("toxicity_samples", 1), ("toxicity_max_new_tokens", 1)):  # fmt: skip
            check_range(name, getattr(self, name), lo, None)
        if self.data is not None and not Path(self.data).is_dir():
            raise DataError(f"trust data {self.data!r} is not a directory (docs/trust.md lists its files)")

    def dimensions(self) -> tuple[str, ...]:
        return tuple(t.removeprefix("trust-") for t in self.tasks) or TRUST_DIMENSIONS


def run_trust(lm: TrustLM, tokenizer: Any, cfg: TrustSuiteConfig, ctx: EvalContext) -> dict[str, TaskOutput]:
    """Score every requested dimension with ``lm``; one not scorable is noted in ``ctx.skipped``."""
    outputs: dict[str, TaskOutput] = {}
    for name in cfg.dimensions():
        dim = DIMENSIONS[name]
        task = f"trust-{name}"
        if cfg.data is not None:
            queries = dim.load(Path(cfg.data), cfg)
            source = cfg.data
        elif dim.probe is None:
            ctx.skipped[task] = (
                "not scored: no built-in toxicity probe offline (needs RealToxicityPrompts-format files "
                "via data and a toxicity classifier)"
            )
            console().print(f"[yellow]skipped[/yellow] {task}: {ctx.skipped[task]}")
            continue
        else:
            queries = dim.probe(cfg, tokenizer)
            source = "probe"
        try:
            metrics = dim.score(lm, queries, cfg, ctx)
        except NotScored as e:
            ctx.skipped[task] = f"not scored: {e}"
            console().print(f"[yellow]skipped[/yellow] {task}: {e}")
            continue
        outputs[task] = TaskOutput(metrics)
        ctx.task_configs[task] = {"source": source, "queries": len(queries), "headline": "score"}
    return outputs


@TASKS.register(TrustSuiteConfig, name="trust")
def _run_trust_suite(
    model: nn.Module, tokenizer: Any, cfg: TrustSuiteConfig, ctx: EvalContext
) -> dict[str, TaskOutput]:
    chat = resolve_chat(tokenizer, cfg.chat_template)
    lm = HFTrustLM(
        model,
        tokenizer,
        chat=chat,
        mode=cfg.mode,
        batch_size=cfg.batch_size,
        max_new_tokens=cfg.max_new_tokens,
    )
    outputs = run_trust(lm, tokenizer, cfg, ctx)
    for task in outputs:
        ctx.task_configs[task]["prompting"] = describe(tokenizer, chat)
    return outputs
