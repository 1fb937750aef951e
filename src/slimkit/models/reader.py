"""A world model that reads its context: the opt-in reader recipe and the copy probe (issue 13 item 5).

The default world model (:mod:`slimkit.models.default`) answers closed-book questions but does not
read: on open-book retrieval it writes a well-formed answer with an invented entity, because
nothing in its 4-minute budget rewarded copying from the window. Small transformers learn to copy
(an induction head: attend to the token after the previous occurrence of the current token, copy
it; Olsson et al., "In-context Learning and Induction Heads", arXiv 2209.11895) when the training
data pays for it, they need >= 2 layers, and the passage must sit in the same window as the question.

:data:`READER_RECIPE` trains the default architecture on a world with the reader options of
:class:`~slimkit.data.factworld.WorldConfig` switched on. Switching the default model to it is the
one line ``DEFAULT_RECIPE = READER_RECIPE`` in :mod:`slimkit.models.default` (it changes every
world-model number in the docs, so it is not done here).

:func:`copy_probe` is the cheap gate before a full training run: train a recipe for a few hundred
steps and measure

    induction = mean over second-half tokens t of [argmax p(t | "A B C. A B ...") == t]

on fresh sequences of world words written twice (``"Lorin 1943 Veda. Lorin 1943 Veda."``; the
first-half accuracy is the no-copy floor), and open-book exact match on the first ``n_passages``
short retrieval passages of the recipe's world. Measured runs are in docs/factworld.md.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from slimkit.models.default import DefaultModelRecipe, train_recipe

READER_WORLD: dict[str, Any] = {
    "n_reading_docs": 6000,
    "reading_answer": "bare",
    "reading_questions": 2,
    "n_copy_docs": 1500,
    "twohop_chain": "bridge",
    "qa_per_fact": 1,
    "corpus_repeats": 25,
}
"""The reader world's options (each explained in :class:`~slimkit.data.factworld.WorldConfig`)."""

READER_RECIPE = DefaultModelRecipe(
    seqlen=256,
    world=READER_WORLD,
    train={
        "steps": 850,
        "batch_size": 8,
        "seqlen": 256,
        "warmup_steps": 40,
        "min_lr_ratio": 0.1,
        "grad_clip": 1.0,
        "optimizer": {"type": "AdamWConfig", "lr": 1.5e-3, "betas": [0.9, 0.95], "weight_decay": 0.1},
        "seed": 0,
        "log_every": 50,
    },
)
"""The default architecture on 256-token windows (passage and question share one window; the
longest retrieval prompt is ~190 tokens), 850 steps of 8 x 256 tokens (1.74 M tokens: ~5.4 minutes at
the default model's measured 5.4 k tokens/s on 2 quiet cores, an estimate, not a measured run), on
the reader world. It has not met the issue's targets (docs/factworld.md, "A model that reads its
context")."""

PROBE_STEPS = 250
PROBE_PASSAGES = 20
PROBE_GATE = {"induction": 0.5, "retrieval_short": 0.25}
"""A candidate passes the probe when both numbers reach these after :data:`PROBE_STEPS` steps."""


@dataclass(frozen=True)
class ProbeResult:
    """What :func:`copy_probe` measured (accuracies in [0, 1], times in seconds)."""

    steps: int
    induction: float
    induction_floor: float
    retrieval_short: float
    n_passages: int
    final_loss: float
    corpus_tokens: int
    train_wall_s: float
    train_cpu_s: float
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def induction_accuracy(
    model: Any, tokenizer: Any, words: list[str], *, n: int = 32, length: int = 10, seed: int = 0
) -> tuple[float, float]:
    """(second-half, first-half) greedy next-token accuracy on ``n`` sequences of ``length`` words, each
    written twice (``"A B C. A B C."``), teacher-forced.

    The sequences come from their own RNG stream, so they are not the corpus's copy documents. The
    first token of each half is not scored (nothing predicts where a sequence starts). Returns the
    copy accuracy and its floor: the same model's accuracy on the first half, where copying cannot help.
    """
    rng = random.Random(f"copyprobe:{seed}")
    hits = [0, 0]
    totals = [0, 0]
    device = next(model.parameters()).device
    for _ in range(n):
        seq = " ".join(rng.choice(words) for _ in range(length))
        first = tokenizer(f"{seq}.", add_special_tokens=False)["input_ids"]
        second = tokenizer(f" {seq}.", add_special_tokens=False)["input_ids"]
        ids = torch.tensor([first + second], device=device)
        with torch.no_grad():
            predicted = model(ids).logits[0, :-1].argmax(-1).tolist()
        targets = ids[0, 1:].tolist()
        for half, (lo, hi) in enumerate(((1, len(first)), (len(first) + 1, len(first) + len(second)))):
            # position p predicts token p + 1
            for p in range(lo - 1, hi - 1):
                hits[1 - half] += int(predicted[p] == targets[p])
                totals[1 - half] += 1
    return hits[0] / max(totals[0], 1), hits[1] / max(totals[1], 1)


def world_words(world: Any) -> list[str]:
    """The words a copy sequence draws from: every entity name of ``world`` and the birth years."""
    e = world.entities
    return [*e["person"], *e["city"], *e["country"], *e["company"], *(str(y) for y in range(1930, 2000))]


def copy_probe(
    recipe: DefaultModelRecipe, *, steps: int = PROBE_STEPS, n_passages: int = PROBE_PASSAGES
) -> ProbeResult:
    """Train ``recipe`` for ``steps`` steps and measure copying (module docstring); a few minutes on 2 CPUs."""
    from slimkit.core.config import check_range
    from slimkit.data.factworld.build import task_options
    from slimkit.evaluate import evaluate
    from slimkit.evaluate.tasks.retrieval import RetrievalTaskConfig

    check_range("steps", steps, 1, None)
    check_range("n_passages", n_passages, 1, None)
    cpu = time.process_time()
    model, tokenizer, token_ids, result, world = train_recipe(recipe, steps=steps)
    cpu = time.process_time() - cpu
    induction, floor = induction_accuracy(model, tokenizer, world_words(world))
    short = [r for r in world.tasks["retrieval"] if r["tags"]["context_length"] == "short"][:n_passages]
    options = task_options(world.config)["retrieval"]
    task = RetrievalTaskConfig(data=short, **options)
    retrieval = float(evaluate(model, tokenizer, task)["retrieval"]["exact_match"])
    passed = induction >= PROBE_GATE["induction"] and retrieval >= PROBE_GATE["retrieval_short"]
    return ProbeResult(
        steps=steps,
        induction=induction,
        induction_floor=floor,
        retrieval_short=retrieval,
        n_passages=len(short),
        final_loss=float(result.losses[-1]),
        corpus_tokens=int(token_ids.numel()),
        train_wall_s=float(result.wall_time_s),
        train_cpu_s=float(cpu),
        passed=passed,
    )


def reader_scores(metrics: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The issue's numbers from a KICK run: factoid popular / rare EM, retrieval short / long EM,
    two-hop EM and its majority-per-composition baseline (``chance``)."""
    f, r, t = metrics["factoid"], metrics["retrieval"], metrics["twohop"]
    return {
        "factoid_popular": f["exact_match@popularity_half=popular"],
        "factoid_rare": f["exact_match@popularity_half=rare"],
        "retrieval_short": r["exact_match@context_length=short"],
        "retrieval_long": r["exact_match@context_length=long"],
        "twohop": t["exact_match"],
        "twohop_chance": t["chance"],
    }


READER_TARGETS = {
    "factoid_popular": 0.9,
    "retrieval_short": 0.5,
    "retrieval_long": 0.3,
}
"""Issue 13 item 5's targets (two-hop must also reach 2 x its chance; training <= 360 s on 2 cores)."""


def meets_targets(scores: dict[str, float]) -> dict[str, bool]:
    """Which of the issue's targets ``scores`` (:func:`reader_scores`) meets, by name."""
    out = {name: scores[name] >= bar for name, bar in READER_TARGETS.items()}
    out["twohop_2x_chance"] = scores["twohop"] >= 2 * scores["twohop_chance"]
    out["popular_rare_gap"] = scores["factoid_popular"] - scores["factoid_rare"] >= 0.15
    return out
