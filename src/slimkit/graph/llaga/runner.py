"""Train / save / load / evaluate a LLaGA run (what ``slimkit graph llaga train|eval`` call).

A run directory holds ``llaga.json`` (the :class:`~slimkit.graph.llaga.model.LlagaConfig`, the LLM,
the graph spec, the text-feature config and which feature source was used, class names, training
statistics), ``projector.safetensors`` (the only trained weights: the LLM is frozen and not copied)
and ``results.json`` (slimkit's results schema: per task accuracy / F1 / ROUGE-L).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slimkit.core.errors import DataError, ModelLoadError
from slimkit.core.io import atomic_dir, load_tensors, read_json, save_tensors, write_json
from slimkit.graph.llaga.data import TextFeatureConfig, TextGraph, load_text_graph
from slimkit.graph.llaga.model import (
    Llaga,
    LlagaConfig,
    TrainStats,
    build_llaga,
    evaluate_llaga,
    load_llm,
    load_projector_,
    majority_accuracy,
    projector_state,
    train_llaga,
)

RUN_FILE = "llaga.json"
PROJECTOR_FILE = "projector.safetensors"


@dataclass
class Run:
    model: Llaga
    graph: TextGraph
    stats: TrainStats | None
    metrics: dict[str, dict[str, float]]
    info: dict[str, Any]


def train_run(
    cfg: LlagaConfig,
    *,
    graph_spec: str = "world:label=country",
    llm: str = "default",
    features: TextFeatureConfig | None = None,
    split_seed: int = 0,
    texts: str | None = None,
    classes: str | None = None,
    device: str = "cpu",
) -> Run:
    """Load the graph and the LLM, train the projector, evaluate on the test split."""
    features = features or TextFeatureConfig()
    graph = load_text_graph(graph_spec, features=features, texts=texts, class_names=classes, seed=split_seed)
    lm, tok = load_llm(llm, device=device)
    model = build_llaga(cfg, graph, lm, tok)
    stats = train_llaga(model, graph)
    metrics = evaluate_llaga(model, graph)
    if "nc" in metrics:
        metrics["nc"]["majority_accuracy"] = majority_accuracy(graph)
    info = {
        "config": cfg.to_dict(),
        "llm": llm,
        "graph": graph_spec,
        "graph_name": graph.name,
        "texts": texts,
        "classes": classes,
        "split_seed": split_seed,
        "features": features.to_dict(),
        "feature_source": graph.feature_source,
        "feature_dim": graph.x.size(1),
        "class_names": graph.class_names,
        "train": {
            "seconds": stats.seconds,
            "steps": stats.steps,
            "losses": stats.losses,
            "trainable_params": stats.trainable_params,
            "frozen_llm_params": stats.frozen_params,
        },
    }
    return Run(model, graph, stats, metrics, info)


def save_run(run: Run, out: str | Path, *, overwrite: bool = False) -> Path:
    from slimkit.evaluate.results import make_results

    with atomic_dir(out, overwrite=overwrite) as tmp:
        save_tensors(tmp / PROJECTOR_FILE, projector_state(run.model))
        write_json(tmp / RUN_FILE, run.info)
        write_json(
            tmp / "results.json",
            make_results(f"llaga:{run.info['llm']}", run.metrics, config=run.info, seed=run.model.cfg.seed),
        )
    return Path(out)


def load_run_info(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise DataError(f"{run_dir} is not a LLaGA run directory (no {RUN_FILE})")
    info = read_json(path)
    if not isinstance(info, dict) or "config" not in info:
        raise DataError(f"{path} is not a LLaGA run description")
    return info


def eval_run(
    run_dir: str | Path,
    *,
    graph_spec: str | None = None,
    llm: str | None = None,
    tasks: tuple[str, ...] | None = None,
    split: str = "test",
    split_seed: int | None = None,
    texts: str | None = None,
    classes: str | None = None,
    limit: int | None = None,
    device: str = "cpu",
) -> Run:
    """Evaluate a saved run, by default on its own graph and LLM; another ``graph_spec`` is zero-shot
    transfer (its features must have the training graph's width)."""
    info = load_run_info(run_dir)
    cfg = LlagaConfig.from_dict(info["config"])
    features = TextFeatureConfig.from_dict(info["features"])
    spec = graph_spec or info["graph"]
    same = graph_spec is None
    graph = load_text_graph(
        spec,
        features=features,
        texts=texts if texts is not None else (info.get("texts") if same else None),
        class_names=classes if classes is not None else (info.get("classes") if same else None),
        seed=split_seed if split_seed is not None else info.get("split_seed", 0),
    )
    if graph.x.size(1) != info["feature_dim"]:
        raise DataError(
            f"graph {spec!r} has {graph.x.size(1)}-dimensional features; the projector was trained on "
            f"{info['feature_dim']} ({info['feature_source']})"
        )
    lm, tok = load_llm(llm or info["llm"], device=device)
    model = build_llaga(cfg, graph, lm, tok)
    try:
        state = load_tensors(Path(run_dir) / PROJECTOR_FILE)
    except ModelLoadError as e:
        raise DataError(str(e)) from None
    load_projector_(model, state)
    metrics = evaluate_llaga(model, graph, tasks, split, limit=limit)
    if "nc" in metrics:
        metrics["nc"]["majority_accuracy"] = majority_accuracy(graph, split)
    out = {**info, "eval_graph": spec, "eval_split": split, "eval_llm": llm or info["llm"]}
    return Run(model, graph, None, metrics, out)
