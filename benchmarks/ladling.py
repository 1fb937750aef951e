"""Graph Ladling: soups vs their ingredients vs one full-graph model; 1 vs 2 processes; peak memory.

For each dataset (the CSBM graph always; Cora / ogbn-arxiv when a local copy is given) and each
ingredient recipe (data view × shared/independent initialisation), over 3 run seeds:

- best ingredient (by validation), uniform soup, greedy soup, greedy-interpolation soup;
- one model trained full-batch on the whole graph for the ingredients' total epochs (K × epochs).

Test accuracy is mean ± std over the seeds (the graph is fixed; the seed drives initialisation,
sampling and dropout). Then wall-clock of the whole ingredient phase with ``torchrun`` 1 vs 2 processes
(gloo, 1 thread each), and the peak resident-memory increase while training one ingredient vs the
full-graph model, each measured in a fresh process on a larger CSBM graph; and the whole resident memory
(graph included) of a disjoint worker — its share plus halo, the rest of the graph freed, as a non-zero
``torchrun`` rank holds it — vs a process training on the full graph. Prints tables, writes
``benchmarks/results/ladling.json``.

    python benchmarks/ladling.py [--quick] [--planetoid DIR/Cora] [--ogb DIR/ogbn-arxiv]
    python benchmarks/ladling.py --process-only --out-name ladling_workers
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_result  # noqa: E402

PAPER = {"ogbn-arxiv": {"node-sampled soup (GraphSAGE)": 72.83, "data-partition soup": 72.35}}
CSBM = "csbm"  # CSBMConfig defaults: 2000 nodes, 4 classes, degree 8, homophily 0.7, 10/20/70 split
MEMORY_GRAPH = "csbm:nodes=100000,avg_degree=16,feature_dim=128"
MEMORY_EPOCHS = 5  # with the default eval_every=5: one validation pass, as every default run has
RECIPES = {  # name -> (view, init, extra ViewConfig fields)
    # the three readings of the paper's partition soup (docs/graph_ladling.md): every ingredient samples
    # every cluster; each owns a disjoint share; each owns a random half of the clusters
    "metis/shared (cluster-sampled)": ("metis", "shared", {}),
    "metis-disjoint/shared (strictly partitioned)": ("metis", "shared", {"disjoint": True}),
    "metis-half/shared (random half of the clusters)": ("metis", "shared", {"cluster_fraction": 0.5}),
    "metis/independent": ("metis", "independent", {}),
    "random/shared": ("random", "shared", {}),
    "neighbor/shared": ("neighbor", "shared", {}),
    "neighbor/independent": ("neighbor", "independent", {}),
    "saint-rw/shared": ("saint-rw", "shared", {}),
}
ROWS = ["best ingredient", "uniform soup", "greedy soup", "greedy-interp soup"]


def ladling_config(view: str, init: str, seed: int, args: argparse.Namespace, extra: dict | None = None):
    from slimkit.graph import GNNConfig, GraphTrainConfig, ViewConfig
    from slimkit.graph.ladling import LadlingConfig

    return LadlingConfig(
        model=GNNConfig(arch="sage", layers=2, hidden=args.hidden),
        view=ViewConfig(kind=view, **(extra or {})),
        train=GraphTrainConfig(epochs=args.epochs),
        ingredients=args.ingredients,
        init=init,
        seed=seed,
    )


def mean_std(values: list[float]) -> dict[str, Any]:
    return {
        "mean": statistics.mean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values,
    }


def fmt(stat: dict[str, Any]) -> str:
    return f"{100 * stat['mean']:.2f} ± {100 * stat['std']:.2f}"


def accuracy_study(spec: str, args: argparse.Namespace) -> dict[str, Any]:
    from slimkit.graph import load_dataset
    from slimkit.graph.ladling import run_ladling, train_full_graph_baseline

    data = load_dataset(spec)
    seeds = list(range(args.seeds))
    out: dict[str, Any] = {
        "spec": spec,
        "nodes": data.num_nodes,
        "edges": data.edge_index.size(1),
        "recipes": {},
    }
    for key, (view, init, extra) in RECIPES.items():
        if args.recipes and not any(key.startswith(r) for r in args.recipes):
            continue
        tests: dict[str, list[float]] = {row: [] for row in ROWS}
        vals: dict[str, list[float]] = {row: [] for row in ROWS}
        mean_ingredient, seconds = [], []
        for seed in seeds:
            result = run_ladling(ladling_config(view, init, seed, args, extra), data, progress=False)
            assert result is not None
            best = result.best_ingredient
            picks = {
                "best ingredient": (result.ingredients[best].val_acc, result.ingredient_test[best]),
                **{f"{n} soup": (s.val_acc, result.soup_test[n]) for n, s in result.soups.items()},
            }
            for row, (val, test) in picks.items():
                vals[row].append(val)
                tests[row].append(test)
            mean_ingredient.append(statistics.mean(result.ingredient_test))
            seconds.append(result.train_seconds)
        out["recipes"][key] = {
            "test": {row: mean_std(v) for row, v in tests.items()},
            "val": {row: mean_std(v) for row, v in vals.items()},
            "mean_ingredient_test": mean_std(mean_ingredient),
            "train_seconds": mean_std(seconds),
        }
        print(f"  {spec} {key}: " + ", ".join(f"{r} {fmt(mean_std(tests[r]))}" for r in ROWS), flush=True)
    full_tests, full_vals, full_seconds = [], [], []
    for seed in seeds:
        base = train_full_graph_baseline(ladling_config("full", "shared", seed, args), data)
        full_tests.append(base.test_acc)
        full_vals.append(base.val_acc)
        full_seconds.append(base.seconds)
    out["full_graph"] = {
        "epochs": args.ingredients * args.epochs,
        "test": mean_std(full_tests),
        "val": mean_std(full_vals),
        "seconds": mean_std(full_seconds),
    }
    print(
        f"  {spec} full graph ({args.ingredients * args.epochs} epochs): {fmt(mean_std(full_tests))}",
        flush=True,
    )
    return out


def wallclock(args: argparse.Namespace) -> dict[str, Any]:
    """``torchrun`` with 1 and 2 gloo processes (1 thread each) on the CSBM metis recipe."""
    out: dict[str, Any] = {}
    soups = {}
    for nproc in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
            cmd += ["-m", "slimkit.cli.main", "graph", "ladling", "--dataset", CSBM, "--view", "metis"]
            cmd += [
                "--ingredients",
                str(args.ingredients),
                "--epochs",
                str(args.epochs),
                "--hidden",
                str(args.hidden),
            ]
            cmd += ["--out", tmp]
            env = {**os.environ, "OMP_NUM_THREADS": "1", "SLIMKIT_PROGRESS": "0"}
            start = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
            total = time.perf_counter() - start
            results = json.loads((Path(tmp) / "results.json").read_text())
            soups[nproc] = results["metrics"]["soup_greedy-interp"]["test_acc"]
            out[f"{nproc}_process"] = {
                "ingredient_phase_seconds": results["metrics"]["timing"]["train_seconds"],
                "process_wall_seconds": total,
            }
    out["same_soup"] = soups[1] == soups[2]
    out["speedup_ingredient_phase"] = (
        out["1_process"]["ingredient_phase_seconds"] / out["2_process"]["ingredient_phase_seconds"]
    )
    return out


def _status_mib(key: str) -> float:
    match = re.search(rf"{key}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    if match is None:
        raise RuntimeError(f"/proc/self/status has no {key}")
    return int(match.group(1)) / 1024


def _reset_peak_rss() -> float:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0) so VmHWM measures from here; returns VmRSS (MiB)."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mib("VmRSS")


def memory_child(kind: str, args: argparse.Namespace) -> None:
    """Runs in a fresh process: peak RSS increase (MiB) over the resident size just before training one
    ingredient (or the full-graph model), data and partition already in memory. Linux only."""
    torch.set_num_threads(1)
    from slimkit.graph import load_dataset
    from slimkit.graph.ladling import train_full_graph_baseline, train_ingredient
    from slimkit.graph.views import make_views

    data = load_dataset(MEMORY_GRAPH)
    view = kind if kind != "full" else "metis"
    cfg = ladling_config(view, "shared", 0, args)
    # default settings (validation every 5 epochs, best-validation selection), MEMORY_EPOCHS epochs
    cfg = cfg.replace(train=cfg.train.replace(epochs=MEMORY_EPOCHS))
    views = make_views(cfg.view, data, cfg.ingredients) if kind != "full" else None
    before = _reset_peak_rss()
    start = time.perf_counter()
    if kind == "full":
        train_full_graph_baseline(cfg, data, epochs=MEMORY_EPOCHS)
    else:
        assert views is not None
        train_ingredient(cfg, data, views[0], 0)
    peak = _status_mib("VmHWM")
    print(json.dumps({"peak_increase_mib": peak - before, "seconds": time.perf_counter() - start}))


PROCESS_KINDS = ("full-process", "disjoint-worker", "disjoint-worker-exact-halo")


def process_child(kind: str, args: argparse.Namespace) -> None:
    """Runs in a fresh process: resident memory above the interpreter's (imports done, no graph yet) of
    a process that trains on the full graph, or of a disjoint worker as a non-zero torchrun rank runs
    it (load, partition, keep ingredient 0's share plus halo, free the rest, train). Graph included."""
    torch.set_num_threads(1)
    from slimkit.core.limits import release_freed_memory
    from slimkit.graph import load_dataset
    from slimkit.graph.ladling import train_full_graph_baseline, train_ingredient
    from slimkit.graph.views import make_views, worker_subgraph

    base = _reset_peak_rss()
    data = load_dataset(MEMORY_GRAPH)
    extra = {"disjoint": True} if kind != "full-process" else {}
    if kind == "disjoint-worker-exact-halo":
        extra["halo"] = -1  # the model's depth: exact validation on the share's nodes
    cfg = ladling_config("metis", "shared", 0, args, extra)
    cfg = cfg.replace(train=cfg.train.replace(epochs=MEMORY_EPOCHS))
    info: dict[str, Any] = {"full_nodes": data.num_nodes, "full_edges": data.edge_index.size(1)}
    if kind == "full-process":
        load_peak = _status_mib("VmHWM") - base
        release_freed_memory()  # as the worker does, so neither row counts the other's leftovers
        graph_mib = _reset_peak_rss() - base
        start = time.perf_counter()
        train_full_graph_baseline(cfg, data, epochs=MEMORY_EPOCHS)
    else:
        views = make_views(cfg.view, data, cfg.ingredients, seed=cfg.seed)
        hops = cfg.view.halo if cfg.view.halo >= 0 else cfg.model.layers
        sub = worker_subgraph(data, views[0].share, hops)
        view = views[0].on(sub)
        info.update(share_nodes=int(sub.share_mask.sum()), nodes=sub.num_nodes, edges=sub.edge_index.size(1))
        load_peak = _status_mib("VmHWM") - base  # loading, partitioning and slicing the whole graph
        del data, views  # what run_ladling does on a rank other than 0
        release_freed_memory()
        graph_mib = _reset_peak_rss() - base
        start = time.perf_counter()
        train_ingredient(cfg, sub, view, 0)
    peak = _status_mib("VmHWM") - base
    info.update(held_after_load_mib=graph_mib, load_peak_mib=load_peak, train_peak_mib=peak)
    info["seconds"] = time.perf_counter() - start
    print(json.dumps(info))


def processes(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in PROCESS_KINDS:
        cmd = [sys.executable, __file__, "--process-child", kind, "--ingredients", str(args.ingredients)]
        cmd += ["--hidden", str(args.hidden)]
        proc = subprocess.run(
            cmd, check=True, capture_output=True, text=True, env={**os.environ, "SLIMKIT_PROGRESS": "0"}
        )
        out[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
        full = out["full-process"]["train_peak_mib"]
        out[kind]["ratio_to_full"] = out[kind]["train_peak_mib"] / full
        print(f"  process {kind}: peak +{out[kind]['train_peak_mib']:.0f} MiB while training", flush=True)
    return out


def memory(args: argparse.Namespace) -> dict[str, Any]:
    out = {}
    for kind in ("full", "metis", "neighbor", "saint-rw"):
        cmd = [sys.executable, __file__, "--memory-child", kind, "--ingredients", str(args.ingredients)]
        cmd += ["--hidden", str(args.hidden)]
        proc = subprocess.run(
            cmd, check=True, capture_output=True, text=True, env={**os.environ, "SLIMKIT_PROGRESS": "0"}
        )
        out[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
        out[kind]["ratio_to_full"] = out[kind]["peak_increase_mib"] / out["full"]["peak_increase_mib"]
        print(f"  memory {kind}: +{out[kind]['peak_increase_mib']:.0f} MiB", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--ingredients", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--planetoid", action="append", default=[], help="DIR/Cora (local Planetoid copy)")
    parser.add_argument("--ogb", action="append", default=[], help="DIR/ogbn-arxiv (local OGB copy)")
    parser.add_argument("--quick", action="store_true", help="1 seed, 4 ingredients, 10 epochs (smoke test)")
    parser.add_argument("--skip-parallel", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-only", action="store_true", help="only the peak-memory measurement")
    parser.add_argument(
        "--recipes", nargs="*", default=[], help="only the recipes whose name starts with one of these"
    )
    parser.add_argument("--out-name", default="ladling", help="results file stem under benchmarks/results/")
    parser.add_argument(
        "--memory-child", choices=["full", "metis", "neighbor", "saint-rw"], help=argparse.SUPPRESS
    )
    parser.add_argument("--process-child", choices=PROCESS_KINDS, help=argparse.SUPPRESS)
    parser.add_argument(
        "--process-only", action="store_true", help="only the whole-process memory of a disjoint worker"
    )
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.ingredients, args.epochs = 1, 4, 10
    if args.memory_child:
        memory_child(args.memory_child, args)
        return
    if args.process_child:
        process_child(args.process_child, args)
        return
    torch.set_num_threads(1)

    start = time.perf_counter()
    specs = [CSBM] + [f"planetoid:{p}" for p in args.planetoid] + [f"ogb:{p}" for p in args.ogb]
    if args.memory_only or args.process_only:
        specs, args.skip_parallel = [], True
    args.skip_memory = args.skip_memory or args.process_only
    accuracy = {}
    for spec in specs:
        print(f"accuracy on {spec}", flush=True)
        accuracy[spec] = accuracy_study(spec, args)
    parallel = None if args.skip_parallel else wallclock(args)
    mem, procs = {}, {}
    if not args.skip_memory:
        print("peak memory", flush=True)
        mem = memory(args)
    if not args.skip_memory or args.process_only:
        print("whole-process memory", flush=True)
        procs = processes(args)

    for spec, study in accuracy.items():
        print(
            f"\nTest accuracy (%) on {spec}: mean ± std over {args.seeds} seeds, K={args.ingredients}, {args.epochs} epochs each"
        )
        header = ["recipe", *ROWS, "mean ingredient"]
        rows = [
            [key, *(fmt(r["test"][row]) for row in ROWS), fmt(r["mean_ingredient_test"])]
            for key, r in study["recipes"].items()
        ]
        full = study["full_graph"]
        rows.append([f"full graph, {full['epochs']} epochs", fmt(full["test"]), "", "", "", ""])
        print_table(header, rows)
        name = Path(spec.partition(":")[2]).name
        if name in PAPER:
            print(f"paper ({name}): " + ", ".join(f"{k} {v}" for k, v in PAPER[name].items()))
    if parallel:
        print("\nIngredient phase wall-clock (s), torchrun + gloo, 1 thread per process")
        print_table(
            ["processes", "ingredient phase", "whole command"],
            [
                [
                    n,
                    f"{parallel[f'{n}_process']['ingredient_phase_seconds']:.1f}",
                    f"{parallel[f'{n}_process']['process_wall_seconds']:.1f}",
                ]
                for n in (1, 2)
            ],
        )
        print(f"speed-up {parallel['speedup_ingredient_phase']:.2f}x; same soup: {parallel['same_soup']}")
    if mem:
        print(f"\nPeak RSS increase (MiB), {MEMORY_EPOCHS} epochs with default validation, on {MEMORY_GRAPH}")
        print_table(
            ["training", "peak increase (MiB)", "vs full graph", "seconds"],
            [
                [k, f"{v['peak_increase_mib']:.0f}", f"{v['ratio_to_full']:.3f}x", f"{v['seconds']:.1f}"]
                for k, v in mem.items()
            ],
        )

    if procs:
        print(
            f"\nProcess resident memory above the interpreter (MiB), graph included, {MEMORY_EPOCHS} epochs, "
            f"on {MEMORY_GRAPH}"
        )
        print_table(
            [
                "process",
                "nodes held",
                "edges held",
                "held before training",
                "peak training",
                "vs full",
                "load peak",
            ],
            [
                [
                    k,
                    v.get("nodes", v["full_nodes"]),
                    v.get("edges", v["full_edges"]),
                    f"{v['held_after_load_mib']:.0f}",
                    f"{v['train_peak_mib']:.0f}",
                    f"{v['ratio_to_full']:.3f}x",
                    f"{v['load_peak_mib']:.0f}",
                ]
                for k, v in procs.items()
            ],
        )

    path = write_result(
        args.out_name,
        {
            "settings": {
                "seeds": args.seeds,
                "ingredients": args.ingredients,
                "epochs": args.epochs,
                "model": f"sage, 2 layers, hidden {args.hidden}",
                "memory_graph": MEMORY_GRAPH,
            },
            "accuracy": accuracy,
            "parallel": parallel,
            "memory": mem,
            "processes": procs,
            "paper": PAPER,
            "seconds": time.perf_counter() - start,
        },
    )
    print(f"\nwrote {path} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
