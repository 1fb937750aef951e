"""IDEA Prune vs training the target from scratch vs the naive enlarge → prune → re-warm pipeline.

On the built-in world, at the fixed token budget of ``configs/idea_prune_world.yaml`` (each pipeline
trains on the same number of tokens), over ``--seeds`` (model init and data order): held-out
perplexity, answer-token perplexity and closed-book factoid exact match (all / popular / rare half),
mean ± std, and the forward speed of the pruned model against the enlarged one it came from.

Prints a table and writes ``benchmarks/results/idea_prune.json``. Runs go to ``benchmarks/.work/``
(ignored by git); ``--resume`` continues interrupted ones.

    python benchmarks/idea_prune.py [--seeds 0,1,2] [--total-tokens 256000] [--threads 1] [--resume]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "idea_prune_world.yaml"
WORK = Path(__file__).resolve().parent / ".work" / "idea_prune"
METRICS = ("ppl", "answer_ppl", "factoid", "factoid_popular", "factoid_rare")


def mean_std(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--total-tokens", type=int, default=None, help="override the config's budget")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)"
    )
    args = parser.parse_args()

    import torch

    from slimkit.pipelines.idea_prune import load_idea_config, run_idea_prune

    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    base = load_idea_config(CONFIG)
    runs: dict[int, Any] = {}
    t0 = time.perf_counter()
    for seed in seeds:
        cfg = base.replace(
            train={**base.train, "seed": seed},
            out=str(WORK / f"seed{seed}"),
            **({"total_tokens": args.total_tokens} if args.total_tokens else {}),
        )
        start = time.perf_counter()
        runs[seed] = run_idea_prune(cfg, baselines=True, resume=args.resume)
        runs[seed]["wall_s"] = time.perf_counter() - start
        print(f"seed {seed}: {runs[seed]['wall_s']:.0f} s", flush=True)

    summary: dict[str, dict[str, Any]] = {}
    for name in ("idea", "scratch", "naive"):
        per = [runs[s]["pipelines"][name]["metrics"] for s in seeds]
        summary[name] = {k: mean_std([float(p[k]) for p in per]) for k in METRICS}
        summary[name]["params"] = per[0]["params"]
    speed = [runs[s]["speed"] for s in seeds]
    speed_summary = {
        "enlarged_tokens_per_s": mean_std([s["enlarged"]["tokens_per_s"] for s in speed]),
        "pruned_tokens_per_s": mean_std([s["pruned"]["tokens_per_s"] for s in speed]),
        "speedup": mean_std([s["speedup"] for s in speed]),
        "enlarged_params": speed[0]["enlarged"]["params"],
        "pruned_params": speed[0]["pruned"]["params"],
        "setting": speed[0]["setting"],
    }
    fmt = lambda d: f"{d['mean']:.3f} ± {d['std']:.3f}"  # noqa: E731
    rows = [[name, s["params"], *(fmt(s[k]) for k in METRICS)] for name, s in summary.items()]
    first = runs[seeds[0]]
    print(
        f"\n{first['total_steps']} steps x {first['tokens_per_step']} tokens per pipeline, FFN "
        f"{first['enlarged_width']} -> {first['target_width']}, seeds {seeds}"
    )
    print_table(["pipeline", "params", "ppl", "answer ppl", "factoid", "popular", "rare"], rows)
    print(
        f"\nspeed ({speed_summary['setting']}): enlarged {fmt(speed_summary['enlarged_tokens_per_s'])} tok/s, "
        f"pruned {fmt(speed_summary['pruned_tokens_per_s'])} tok/s, speedup {fmt(speed_summary['speedup'])}"
    )
    path = write_result(
        "idea_prune",
        {
            "config": str(CONFIG.relative_to(ROOT)),
            "seeds": seeds,
            "total_steps": first["total_steps"],
            "tokens_per_step": first["tokens_per_step"],
            "target_width": first["target_width"],
            "enlarged_width": first["enlarged_width"],
            "summary": summary,
            "speed": speed_summary,
            "per_seed": {str(s): runs[s] for s in seeds},
            "wall_s": time.perf_counter() - t0,
            "note": "2-core VM shared with other jobs: timings are contended",
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
