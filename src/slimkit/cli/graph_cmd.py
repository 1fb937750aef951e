"""``slimkit graph``: graph learning systems (Graph Ladling soups, LLaGA)."""

from __future__ import annotations

import statistics
from pathlib import Path

import typer

from slimkit.cli.common import OVERWRITE, stdout

app = typer.Typer(
    help="Graph learning: GNN model soups trained without communication (Graph Ladling); graph nodes as token sequences for a frozen LLM (LLaGA).",
    no_args_is_help=True,
)

LADLING_HELP = (
    "Train K GNN ingredients independently (each its own seed and data view), then merge them into one "
    "model by weight averaging: uniform, greedy and greedy-interpolation soups (Graph Ladling, arXiv "
    "2306.10466). Writes results.json, soups.json, soup.safetensors and ladling.png to --out.\n\n"
    "Datasets: csbm[:key=value,...] | karate | world[:label=type|country] | planetoid:DIR/Cora | "
    "ogb:DIR/ogbn-arxiv (local files; --download to fetch missing ones).\n\n"
    "Under torchrun each rank trains its share of the ingredients; states are gathered once at the end. "
    "With --disjoint each ingredient trains on its share of the graph plus a --halo-hop neighbourhood, "
    "and ranks other than 0 free the rest of the graph.\n\n"
    "Examples:\n\n"
    "    slimkit graph ladling --dataset csbm --model sage --ingredients 8 --view metis --out runs/csbm\n\n"
    "    slimkit graph ladling --dataset planetoid:data/Cora --model gcn --view neighbor --soup greedy --out runs/cora\n\n"
    "    torchrun --nproc-per-node 2 -m slimkit.cli.main graph ladling --dataset csbm --out runs/csbm-2p\n\n"
    "    torchrun --nproc-per-node 2 -m slimkit.cli.main graph ladling --dataset csbm:nodes=100000 --view metis "
    "--disjoint --halo -1 --out runs/csbm-disjoint-exact"
)


def _fanouts(text: str | None, layers: int) -> tuple[int, ...]:
    from slimkit.core.errors import ConfigError

    if text is None:  # the reference's sizes [25, 10, 5, 5, ...] cut to the depth
        return tuple(([25, 10] + [5] * max(0, layers - 2))[:layers])
    if text.count(",") >= 64:  # GNNConfig allows at most 64 layers, so at most 64 hops
        raise ConfigError(f"--fanouts has {text.count(',') + 1} entries; give at most 64 (one per layer)")
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--fanouts must be comma-separated integers, got {text[:80]!r}") from None


def _dataset_dirs(spec: object) -> tuple[Path, ...]:
    """The local directories a dataset config reads (an output may not be or contain them)."""
    from slimkit.graph import OGBConfig, PlanetoidConfig

    if isinstance(spec, PlanetoidConfig):
        return (Path(spec.root) / spec.name,)
    if isinstance(spec, OGBConfig):
        return (Path(spec.path),)
    return ()


@app.command("ladling", help=LADLING_HELP)
def ladling(
    dataset: str = typer.Option("csbm", "--dataset", help="Dataset spec (see above)."),
    model: str = typer.Option("sage", "--model", help="gcn | sage | gat."),
    layers: int = typer.Option(2, "--layers", help="Message-passing layers."),
    hidden: int = typer.Option(64, "--hidden", help="Hidden width."),
    dropout: float = typer.Option(0.5, "--dropout", help="Dropout between layers."),
    norm: str = typer.Option("none", "--norm", help="none | batch | layer."),
    ingredients: int = typer.Option(8, "--ingredients", help="Number of ingredients K."),
    view: str = typer.Option("metis", "--view", help="full | metis | random | neighbor | saint-rw."),
    parts: int = typer.Option(0, "--parts", help="Clusters for metis/random (0: about 100 nodes each)."),
    clusters_per_batch: int = typer.Option(2, "--clusters-per-batch", help="Clusters per training step."),
    disjoint: bool = typer.Option(
        False, "--disjoint", help="metis/random: each ingredient keeps to its own disjoint share of clusters."
    ),
    cluster_fraction: float = typer.Option(
        1.0,
        "--cluster-fraction",
        help="metis/random: each ingredient keeps to a random subset of this fraction of the clusters.",
    ),
    halo: int = typer.Option(
        0,
        "--halo",
        help="--disjoint: hops of neighbourhood kept around a share (0: none, validation inside the share; -1: the model's depth, exact validation).",
    ),
    fanouts: str | None = typer.Option(
        None, "--fanouts", help="neighbor: per-hop fan-out, e.g. 25,10 (default: 25,10,5,...)."
    ),
    batch_size: int = typer.Option(256, "--batch-size", help="neighbor: seed nodes per step."),
    soup: str = typer.Option(
        "greedy-interp", "--soup", help="Soup saved as the result: uniform | greedy | greedy-interp."
    ),
    init: str = typer.Option("shared", "--init", help="shared | independent initialisation."),
    epochs: int = typer.Option(50, "--epochs", help="Epochs per ingredient."),
    lr: float = typer.Option(0.01, "--lr", help="Adam learning rate."),
    grid: int = typer.Option(11, "--grid", help="α grid size of the greedy interpolation soup."),
    baseline: bool = typer.Option(
        False, "--baseline", help="Also train one full-graph model for K × epochs."
    ),
    seed: int = typer.Option(0, "--seed", help="Run seed: ingredient i depends only on (seed, i)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda (under torchrun: cuda:LOCAL_RANK)."),
    download: bool = typer.Option(False, "--download", help="Allow downloading missing Planetoid/OGB files."),
    out: Path = typer.Option(
        Path("slimkit-ladling"), "--out", help="Output directory (replaced atomically)."
    ),
    overwrite: bool = OVERWRITE,
) -> None:
    from slimkit.core.devices import resolve_device
    from slimkit.core.io import check_output_dir
    from slimkit.graph import (
        GNNConfig,
        GraphTrainConfig,
        ViewConfig,
        dataset_name,
        load_dataset,
        parse_dataset_spec,
    )
    from slimkit.graph.ladling import LadlingConfig, run_ladling, save_run, train_full_graph_baseline

    # every option is checked, and --out probed, before the dataset is read or anything is trained
    gnn = GNNConfig(arch=model, layers=layers, hidden=hidden, dropout=dropout, norm=norm)  # before --fanouts
    cfg = LadlingConfig(
        model=gnn,
        view=ViewConfig(
            kind=view,
            num_parts=parts,
            clusters_per_batch=clusters_per_batch,
            disjoint=disjoint,
            cluster_fraction=cluster_fraction,
            halo=halo,
            fanouts=_fanouts(fanouts, layers),
            batch_size=batch_size,
        ),
        train=GraphTrainConfig(epochs=epochs, lr=lr),
        ingredients=ingredients,
        init=init,
        soup=soup,
        interp_grid=grid,
        seed=seed,
    )
    spec = parse_dataset_spec(dataset)
    resolve_device(device)
    inputs = _dataset_dirs(spec)
    check_output_dir(out, protect=inputs, overwrite=overwrite)
    # a loader, not the graph: with --disjoint a non-zero torchrun rank keeps only its share (plus
    # halo) of what it loads, and frees the rest before training
    result = run_ladling(cfg, lambda: load_dataset(spec, download=download), device=device)
    if result is None:  # a non-zero torchrun rank: rank 0 reports
        return
    # the loaders are deterministic: reading the graph again costs less than holding it on every rank
    base = train_full_graph_baseline(cfg, load_dataset(spec), device=device) if baseline else None
    name = dataset_name(spec)
    path = save_run(
        result,
        out,
        name,
        baseline=base,
        extra={"dataset_spec": dataset},
        overwrite=overwrite,
        protect=inputs,
    )

    from rich.table import Table

    table = Table(
        title=f"Graph Ladling on {name} ({result.world_size} process(es), {result.train_seconds:.1f} s)"
    )
    for col in ("model", "val acc", "test acc"):
        table.add_column(col, justify="left" if col == "model" else "right")
    tests = result.ingredient_test
    best = result.best_ingredient
    spread = statistics.stdev(tests) if len(tests) > 1 else 0.0
    table.add_row(
        f"ingredients (K={len(tests)}, mean ± std)", "", f"{statistics.mean(tests):.4f} ± {spread:.4f}"
    )
    table.add_row(
        f"best ingredient (#{best})", f"{result.ingredients[best].val_acc:.4f}", f"{tests[best]:.4f}"
    )
    for soup_name, s in result.soups.items():
        mark = " *" if soup_name == cfg.soup else ""
        table.add_row(f"soup {soup_name}{mark}", f"{s.val_acc:.4f}", f"{result.soup_test[soup_name]:.4f}")
    if base is not None:
        table.add_row(f"full graph ({base.epochs} epochs)", f"{base.val_acc:.4f}", f"{base.test_acc:.4f}")
    stdout.print(table)
    stdout.print(f"wrote {path}/results.json, soups.json, soup.safetensors, ladling.png")


# -- LLaGA -----------------------------------------------------------------------------------------------
llaga_app = typer.Typer(
    help="LLaGA (arXiv 2402.08170): node sequences projected into a frozen LLM; train the projector, evaluate.",
    no_args_is_help=True,
)
app.add_typer(llaga_app, name="llaga")

LLAGA_TRAIN_HELP = (
    "Train LLaGA's projector (the LLM stays frozen) on a text-attributed graph with the tasks mixed: "
    "node classification (nc), link prediction (lp), node description (nd); then evaluate on the test "
    "split. Writes llaga.json, projector.safetensors and results.json to --out.\n\n"
    "Graphs: world[:label=country|type,...] (the factworld: entity descriptions as node text); "
    "tag:DIR/cora[,features=sbert|simteg] (LLaGA's processed_data.pt layout) or tag:FILE.pt (a TAPE-style "
    "PyG Data with raw_texts); ogb:DIR/ogbn-arxiv (paper texts from mapping/nodeidx2paperid.csv.gz + "
    "titleabs.tsv); or any dataset spec with --texts FILE (one text per node: lines, or JSONL with 'text') "
    "and --classes FILE.\n\n"
    "LLMs: default (the factworld model), smollm2-135m, or a model directory.\n\n"
    "Node features: a sentence encoder (--encoder all-minilm-l6-v2, installed by `make models`, or a "
    "sentence-transformers DIR; auto uses the installed one), else a hashed bag of words; the run says which. "
    "lp also reports AUC and Hits@K (lprank); nd the SBERT score when a sentence encoder is installed.\n\n"
    "Examples:\n\n"
    "    slimkit graph llaga train --graph world:label=country --template ho --tasks nc --out runs/llaga-ho\n\n"
    "    slimkit graph llaga train --graph world --template nd --fanout 6 --tasks nc,lp,nd --llm smollm2-135m "
    "--out runs/llaga-nd\n\n"
    "    slimkit graph llaga train --graph tag:data/llaga/cora,features=sbert --template ho --llm smollm2-135m "
    "--out runs/cora-ho\n\n"
    "    slimkit graph llaga train --graph ogb:data/ogbn-arxiv --encoder all-minilm-l6-v2 --template ho "
    "--out runs/arxiv-ho"
)
LLAGA_EVAL_HELP = (
    "Evaluate a trained LLaGA run: by default on its own graph, LLM and tasks; --graph another graph "
    "for zero-shot transfer (same feature width). Prints a table and writes results.json to --out.\n\n"
    "Examples:\n\n"
    "    slimkit graph llaga eval runs/llaga-ho --out runs/llaga-ho/eval.json\n\n"
    "    slimkit graph llaga eval runs/llaga-ho --graph world:world_seed=1,label=country --out zero-shot.json"
)


def _print_llaga(metrics: dict, title: str, source: str) -> None:
    from slimkit.cli.common import metrics_table

    stdout.print(metrics_table(metrics, title=title))
    stdout.print(f"node features: {source}")


@llaga_app.command("train", help=LLAGA_TRAIN_HELP)
def llaga_train(
    graph: str = typer.Option("world:label=country", "--graph", help="Dataset spec (see above)."),
    template: str = typer.Option(
        "nd", "--template", help="nd (Neighborhood Detail) | ho (Hop-Field Overview)."
    ),
    llm: str = typer.Option("default", "--llm", help="default | smollm2-135m | MODEL_DIR."),
    tasks: str = typer.Option("nc", "--tasks", help="Comma-separated: nc, lp, nd."),
    hops: int = typer.Option(2, "--hops", help="nd: tree depth."),
    fanout: int = typer.Option(10, "--fanout", help="nd: neighbours per node (2 x 10 = 111 tokens)."),
    ho_hops: int = typer.Option(4, "--ho-hops", help="ho: propagation steps (tokens = this + 1)."),
    projector: str = typer.Option("linear", "--projector", help="linear | 2-layer-mlp."),
    prompt: str = typer.Option("auto", "--prompt", help="auto | paper | short."),
    answer_eos: str = typer.Option(
        "auto", "--answer-eos", help="Train answers to end with EOS: auto (chat models) | on | off."
    ),
    epochs: int = typer.Option(30, "--epochs", help="Passes over the mixed training examples."),
    batch_size: int = typer.Option(16, "--batch-size", help="Examples per step."),
    lr: float = typer.Option(1e-2, "--lr", help="AdamW learning rate of the projector."),
    encoder: str = typer.Option(
        "auto", "--encoder", help="auto | hash | all-minilm-l6-v2 | SENTENCE_MODEL_DIR."
    ),
    feature_dim: int = typer.Option(512, "--feature-dim", help="Buckets of the hashed bag of words."),
    texts: Path | None = typer.Option(None, "--texts", help="Node texts file (one per node)."),
    classes: Path | None = typer.Option(None, "--classes", help="Class names file (one per line)."),
    split_seed: int = typer.Option(0, "--split-seed", help="Seed of the 6:2:2 node and edge splits."),
    seed: int = typer.Option(0, "--seed", help="Projector initialisation and example order."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda."),
    out: Path = typer.Option(Path("slimkit-llaga"), "--out", help="Output directory (replaced atomically)."),
    overwrite: bool = OVERWRITE,
) -> None:
    from slimkit.core.devices import resolve_device
    from slimkit.core.io import check_output_dir
    from slimkit.graph.llaga import LlagaConfig, TextFeatureConfig, parse_tasks
    from slimkit.graph.llaga.runner import save_run, train_run

    cfg = LlagaConfig(
        template=template,
        hops=hops,
        fanout=fanout,
        ho_hops=ho_hops,
        projector=projector,
        tasks=parse_tasks(tasks),
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        prompt=prompt,
        answer_eos=answer_eos,
        seed=seed,
    )
    features = TextFeatureConfig(encoder=encoder, dim=feature_dim)
    resolve_device(device)
    protect = tuple(p for p in (texts, classes) if p is not None)
    check_output_dir(out, protect=protect, overwrite=overwrite)
    run = train_run(
        cfg,
        graph_spec=graph,
        llm=llm,
        features=features,
        split_seed=split_seed,
        texts=None if texts is None else str(texts),
        classes=None if classes is None else str(classes),
        device=device,
    )
    path = save_run(run, out, overwrite=overwrite)
    t = run.info["train"]
    _print_llaga(
        run.metrics,
        f"LLaGA-{template.upper()} on {run.graph.name} ({t['seconds']:.1f} s, "
        f"{t['trainable_params']:,} trainable / {t['frozen_llm_params']:,} frozen)",
        run.graph.feature_source,
    )
    stdout.print(f"wrote {path}/llaga.json, projector.safetensors, results.json")


@llaga_app.command("eval", help=LLAGA_EVAL_HELP)
def llaga_eval(
    run_dir: Path = typer.Argument(..., help="A directory written by `slimkit graph llaga train`."),
    graph: str | None = typer.Option(None, "--graph", help="Dataset spec (default: the run's)."),
    llm: str | None = typer.Option(None, "--llm", help="The LLM (default: the run's)."),
    tasks: str | None = typer.Option(None, "--tasks", help="Comma-separated tasks (default: the run's)."),
    split: str = typer.Option("test", "--split", help="train | val | test."),
    texts: Path | None = typer.Option(None, "--texts", help="Node texts file for --graph."),
    classes: Path | None = typer.Option(None, "--classes", help="Class names file for --graph."),
    limit: int | None = typer.Option(None, "--limit", help="At most this many examples per task."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda."),
    out: Path | None = typer.Option(None, "--out", help="Results JSON file to write."),
) -> None:
    from slimkit.core.devices import resolve_device
    from slimkit.core.errors import ConfigError
    from slimkit.core.io import check_output_file, write_json
    from slimkit.evaluate.results import make_results
    from slimkit.graph.llaga import LlagaConfig, parse_tasks
    from slimkit.graph.llaga.runner import eval_run

    task_tuple = None
    if tasks is not None:
        task_tuple = parse_tasks(tasks)
        LlagaConfig(tasks=task_tuple)  # validates the names
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {limit}")
    resolve_device(device)
    if out is not None:
        from slimkit.graph.llaga.runner import PROJECTOR_FILE, RUN_FILE

        if out.resolve() in {(run_dir / f).resolve() for f in (RUN_FILE, PROJECTOR_FILE)}:
            raise ConfigError(f"--out {out} would overwrite the run's own {out.name}")
        check_output_file(out)
    run = eval_run(
        run_dir,
        graph_spec=graph,
        llm=llm,
        tasks=task_tuple,
        split=split,
        texts=None if texts is None else str(texts),
        classes=None if classes is None else str(classes),
        limit=limit,
        device=device,
    )
    _print_llaga(run.metrics, f"LLaGA on {run.graph.name} ({split})", run.graph.feature_source)
    if out is not None:
        write_json(out, make_results(f"llaga:{run.info['eval_llm']}", run.metrics, config=run.info))
        stdout.print(f"wrote {out}")
