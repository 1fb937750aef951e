"""The study: evaluate a model (and, as compression methods land, a sweep of compressed variants).

``run_study(StudyConfig())`` on the built-in world loads (training on first use) the default model,
measures perplexity on the world's held-out text and closed-book factoid accuracy split by fact
popularity, and writes ``results.json`` (DESIGN.md's schema, with one entry per variant under
``variants``), ``report.md`` and PNG plots to ``out``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slimkit.core.config import Config, check_positive
from slimkit.core.errors import DataError
from slimkit.core.io import atomic_dir, write_json, write_text
from slimkit.core.progress import console


@dataclass(frozen=True)
class StudyConfig(Config):
    """What the study evaluates.

    Attributes:
        model (str | None): a model directory; None = the built-in world's default model.
        ppl_data (str | None): perplexity text source; None = the world's held-out text.
        factoid_data (str | None): factoid JSONL; None = the world's questions (skipped for a
            non-world model unless given).
        seqlen (int): perplexity window. Default: 128 (the default model's training length).
        limit (int | None): evaluate at most this many windows / questions per task.
        batch_size (int): evaluation batch size. Default: 32.
        device (str): compute device. Default: "cpu".
        seed (int): recorded in provenance. Default: 0.
    """

    model: str | None = None
    ppl_data: str | None = None
    factoid_data: str | None = None
    seqlen: int = 128
    limit: int | None = None
    batch_size: int = 32
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("seqlen", self.seqlen)
        check_positive("batch_size", self.batch_size)
        if self.limit is not None:
            check_positive("limit", self.limit)


def run_study(cfg: StudyConfig, out: str | Path) -> dict[str, Any]:
    """Run the study and write its files to ``out`` (atomically: all or nothing). Returns results."""
    from slimkit.evaluate import evaluate, make_results, validate_results
    from slimkit.evaluate.report import write_report

    model, tokenizer, name, ppl_data, factoid_data = _resolve(cfg)
    variants: list[dict[str, Any]] = []

    t0 = time.perf_counter()
    metrics = _evaluate_variant(evaluate, model, tokenizer, cfg, ppl_data, factoid_data)
    dense = make_results(name, metrics, config={"study": cfg.to_dict(), "variant": "dense"}, seed=cfg.seed)
    dense["variant"] = {
        "name": "dense",
        "method": "dense",
        "ratio": 0.0,
        "eval_time_s": time.perf_counter() - t0,
    }
    variants.append(dense)

    results = dict(dense)
    results["variants"] = variants
    validate_results(results)
    for v in variants:
        validate_results(v)
    with atomic_dir(out) as tmp:
        write_json(tmp / "results.json", results)
        write_text(tmp / "report.md", write_report(results, tmp))
    return results


def _evaluate_variant(evaluate, model, tokenizer, cfg: StudyConfig, ppl_data, factoid_data) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    metrics.update(
        evaluate(
            model,
            tokenizer,
            suite="ppl",
            data=ppl_data,
            seqlen=cfg.seqlen,
            limit=cfg.limit,
            batch_size=cfg.batch_size,
        )
    )
    if factoid_data is not None:
        metrics.update(
            evaluate(
                model,
                tokenizer,
                suite="factoid",
                data=factoid_data,
                limit=cfg.limit,
                batch_size=cfg.batch_size,
            )
        )
    return metrics


def _resolve(cfg: StudyConfig) -> tuple[Any, Any, str, str, str | None]:
    if cfg.model is None:
        from slimkit.models.default import default_model, default_world_dir

        world = default_world_dir()
        model, tokenizer = default_model(device=cfg.device)
        return (
            model,
            tokenizer,
            "factworld-default",
            cfg.ppl_data or str(world / "heldout.txt"),
            cfg.factoid_data or str(world / "factoid.jsonl"),
        )
    from slimkit.models.loading import load_model

    model, tokenizer = load_model(cfg.model, device=cfg.device)
    if cfg.ppl_data is None:
        raise DataError("a study of your own model needs --data (a text source for perplexity)")
    return model, tokenizer, cfg.model, cfg.ppl_data, cfg.factoid_data


def print_summary(results: dict[str, Any]) -> None:
    """Print the study table (one row per variant) to stdout."""
    from rich.console import Console

    from slimkit.evaluate.report import summary_rows

    header, rows = summary_rows(results)
    from rich.table import Table

    table = Table(title=f"slimkit study — {results['model']}")
    for h in header:
        table.add_column(h, justify="left" if h == "variant" else "right")
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    console().print("")
