"""A fair protocol for Sebra and its baselines: every method tuned on validation with the same budget,
then tested over several data seeds.

The plain benchmark (``benchmarks/debias.py``) runs each method with its default options. This one asks
whether Sebra's lead survives tuning the baselines as carefully as Sebra, and how much of the spread
comes from the data rather than the training seed:

1. **Tuning** (coloured digits, ρ = 0.99, data seed 0): each tunable method tries the same number of
   configurations (:data:`GRIDS`, 8 each: Sebra's gap × τ × cls_weight, JTT's T × λ, LfF's q × EMA),
   each with :data:`TUNE_SEEDS` training seeds. The configuration with the best mean *validation*
   bias-conflicting accuracy wins (ties: the earlier one in the grid). ERM and the group-balanced
   oracle have nothing to tune. No test number is looked at.
2. **Testing**: every method with its chosen configuration on data seeds 0..D-1 (the split and
   colouring change) × training seeds 0..S-1. Reports the mean ± std over all D·S runs, the std of the
   per-data-seed means (data variance) and the mean within-data-seed std (training-seed variance).

The validation split is group-balanced like the test split (20 digits per class, every colour). The
data options (``train_copies=3`` and the rest) are the defaults for every method.

    python benchmarks/debias_tuning.py [--alignment 0.99] [--data-seeds 3] [--seeds 3] [--threads 1]

Writes ``benchmarks/results/debias_tuning.json``.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_result  # noqa: E402

METRICS = ("worst_cell_accuracy", "worst_group_accuracy", "bias_conflicting_accuracy", "unbiased_accuracy")
SELECT = "bias_conflicting_accuracy"
TUNE_SEEDS = (0, 1)
GRIDS: dict[str, dict[str, list[Any]]] = {
    "sebra": {"gap": [2, 5], "temperature": [0.05, 0.15], "cls_weight": [0.5, 1.0]},
    "jtt": {"id_epochs": [1, 2, 5, 10], "upweight": [10, 50]},
    "lff": {"q": [0.3, 0.5, 0.7, 0.9], "ema": [0.5, 0.9]},
}


def grid(options: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(options)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*options.values())]


def mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alignment", type=float, default=0.99)
    ap.add_argument("--data-seeds", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from slimkit.debias import (
        ColoredDigitsConfig,
        ERMConfig,
        GroupBalancedConfig,
        JTTConfig,
        LfFConfig,
        SebraConfig,
        colored_digits,
        run_seeds,
    )

    classes = {"sebra": SebraConfig, "jtt": JTTConfig, "lff": LfFConfig}
    start = time.perf_counter()
    tune_data = colored_digits(ColoredDigitsConfig(alignment=args.alignment, seed=0))

    tuning: dict[str, Any] = {}
    chosen: dict[str, Any] = {"erm": ERMConfig(), "group-balanced (oracle)": GroupBalancedConfig()}
    for name, cls in classes.items():
        tried = []
        for options in grid(GRIDS[name]):
            runs, _ = run_seeds(cls(**options), tune_data, list(TUNE_SEEDS))
            val = [r.metrics["val"][SELECT] for r in runs]
            tried.append({"options": options, "val_" + SELECT: statistics.mean(val), "per_seed": val})
            print(
                f"  tune {name} {options}: val {statistics.mean(val):.3f} ({time.perf_counter() - start:.0f} s)"
            )
        best = max(range(len(tried)), key=lambda i: (tried[i]["val_" + SELECT], -i))
        tuning[name] = {"grid": GRIDS[name], "tried": tried, "chosen": tried[best]["options"]}
        chosen[name] = cls(**tried[best]["options"])

    testing: dict[str, Any] = {}
    table = []
    for name, cfg in chosen.items():
        per_data: list[dict[str, list[float]]] = []
        for data_seed in range(args.data_seeds):
            splits = colored_digits(ColoredDigitsConfig(alignment=args.alignment, seed=data_seed))
            runs, _ = run_seeds(cfg, splits, list(range(args.seeds)))
            per_data.append({k: [r.metrics["test"][k] for r in runs] for k in METRICS})
        entry: dict[str, Any] = {"config": cfg.to_dict(), "per_data_seed": per_data}
        for k in METRICS:
            every = [v for d in per_data for v in d[k]]
            entry[k] = {
                **mean_std(every),
                "data_seed_std": mean_std([statistics.mean(d[k]) for d in per_data])["std"],
                "train_seed_std": statistics.mean(mean_std(d[k])["std"] for d in per_data),
            }
        testing[name] = entry
        table.append(
            [
                name,
                *(f"{100 * entry[k]['mean']:.1f} ± {100 * entry[k]['std']:.1f}" for k in METRICS),
                f"{100 * entry[SELECT]['data_seed_std']:.1f} / {100 * entry[SELECT]['train_seed_std']:.1f}",
            ]
        )
        print(f"  test {name} ({time.perf_counter() - start:.0f} s)", flush=True)

    print(
        f"\ncoloured digits ρ={args.alignment:g}; tuned on validation (data seed 0, seeds {list(TUNE_SEEDS)}); "
        f"test over {args.data_seeds} data seeds x {args.seeds} training seeds; accuracies in %"
    )
    for name, t in tuning.items():
        print(f"  {name}: chosen {t['chosen']}")
    print_table(
        ["method", "worst cell", "worst group (pooled)", "bias-conflicting", "unbiased", "std data / train"],
        table,
    )
    path = write_result(
        "debias_tuning",
        {
            "alignment": args.alignment,
            "select": "validation " + SELECT,
            "tune_seeds": list(TUNE_SEEDS),
            "data_seeds": args.data_seeds,
            "seeds": args.seeds,
            "threads": args.threads,
            "total_seconds": time.perf_counter() - start,
            "tuning": tuning,
            "testing": testing,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
