"""Can a small world model learn to read its context? The copy probe, then full runs (issue 13 item 5).

Each candidate is the reader recipe (:data:`slimkit.models.reader.READER_RECIPE`) with some world
options or training fields changed. ``--probe`` trains it for a few hundred steps and reports the copy
probe (:func:`slimkit.models.reader.copy_probe`: induction accuracy on repeated world-word sequences
against its no-copy floor, open-book exact match on 20 short passages); ``--full`` trains it fully
(cached under ``$SLIMKIT_CACHE`` like the default model) and scores it with the real KICK scorers on
the candidate world's own task files: factoid popular / rare, retrieval short / long, two-hop against
its majority-per-composition baseline, with training wall time and CPU seconds (CPU seconds / 2 is
the estimate for a quiet 2-core machine).

    python benchmarks/world_reader.py --probe reader
    python benchmarks/world_reader.py --full reader
    python benchmarks/world_reader.py --probe reader,no-copy --steps 200

Prints a table and adds each run to ``benchmarks/results/world_reader.json`` (runs of the same mode
and candidate replace the older one).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, print_table, write_result  # noqa: E402

CANDIDATES: dict[str, dict[str, Any]] = {
    # name -> {"world": WorldConfig overrides over READER_WORLD, "train": TrainConfig overrides}
    "reader": {},
    "no-copy": {"world": {"n_copy_docs": 0}},
    "qa-fraction": {"world": {"qa_per_fact": 0}},
    # reading and copying dominate: does this architecture learn to copy from this data at all?
    "reading-heavy": {"world": {"corpus_repeats": 1, "n_reading_docs": 3000, "n_copy_docs": 3000}},
    "copy-heavy-lr3e-3": {
        "world": {"corpus_repeats": 1, "n_reading_docs": 2000, "n_copy_docs": 8000},
        "train": {
            "optimizer": {"type": "AdamWConfig", "lr": 3e-3, "betas": [0.9, 0.95], "weight_decay": 0.1}
        },
    },
}


def candidate(name: str) -> Any:
    from slimkit.models.reader import READER_RECIPE

    if name not in CANDIDATES:
        raise SystemExit(f"unknown candidate {name!r}; known: {', '.join(CANDIDATES)}")
    change = CANDIDATES[name]
    world = {**READER_RECIPE.world, **change.get("world", {})}
    train = {**READER_RECIPE.train, **change.get("train", {})}
    return READER_RECIPE.replace(world=world, train=train)


def full_run(recipe: Any) -> dict[str, Any]:
    from slimkit.evaluate import evaluate
    from slimkit.models.default import default_model_dir, default_world_dir
    from slimkit.models.loading import load_model
    from slimkit.models.reader import meets_targets, reader_scores

    start = time.perf_counter()
    path = default_model_dir(recipe)
    build_s = time.perf_counter() - start
    meta = json.loads((path / "slimkit.json").read_text())
    trained = meta.get("metadata", meta).get("train", {})
    model, tok = load_model(path)
    start = time.perf_counter()
    metrics = evaluate(
        model,
        tok,
        suite="kick",
        data=str(default_world_dir(recipe)),
        tasks=("factoid", "retrieval", "twohop"),
    )
    scores = reader_scores(metrics)
    return {
        "model_dir": str(path),
        "scores": scores,
        "targets_met": meets_targets(scores),
        "train_wall_s": trained.get("wall_time_s"),
        "train_cpu_s": trained.get("cpu_time_s"),
        "quiet_2core_estimate_s": (trained.get("cpu_time_s") or 0) / 2,
        "corpus_tokens": trained.get("corpus_tokens"),
        "final_loss": trained.get("final_loss"),
        "build_and_train_wall_s": build_s,
        "eval_wall_s": time.perf_counter() - start,
    }


def controls() -> list[dict[str, Any]]:
    """The probe's induction measurement on a model that copies and one that does not."""
    from slimkit.data.factworld import WorldConfig, generate_world
    from slimkit.models import load_model
    from slimkit.models.default import default_model
    from slimkit.models.reader import induction_accuracy, world_words

    words = world_words(generate_world(WorldConfig()))
    out = []
    for name, (model, tok) in (
        ("smollm2-135m", load_model("smollm2-135m")),
        ("default-model", default_model()),
    ):
        copy, floor = induction_accuracy(model.eval(), tok, words)
        out.append({"mode": "control", "candidate": name, "induction": copy, "induction_floor": floor})
        print(f"control {name}: induction {copy:.3f} (floor {floor:.3f})", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--probe", default="", help="comma-separated candidates to probe")
    ap.add_argument("--full", default="", help="comma-separated candidates to train fully and score")
    ap.add_argument(
        "--controls",
        action="store_true",
        help="measure the probe's induction accuracy on SmolLM2-135M (copies) and the default model (does not)",
    )
    ap.add_argument("--steps", type=int, default=None, help="probe steps (default: PROBE_STEPS)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from slimkit.models.reader import PROBE_STEPS, copy_probe

    out_path = RESULTS / "world_reader.json"
    fresh: list[dict[str, Any]] = []
    for name in [n for n in args.probe.split(",") if n]:
        recipe = candidate(name)
        result = copy_probe(recipe, steps=args.steps or PROBE_STEPS).to_dict()
        fresh.append({"mode": "probe", "candidate": name, "recipe": recipe.to_dict(), **result})
        print(f"probe {name}: {result}", flush=True)
    if args.controls:
        fresh += controls()
    for name in [n for n in args.full.split(",") if n]:
        recipe = candidate(name)
        result = full_run(recipe)
        fresh.append({"mode": "full", "candidate": name, "recipe": recipe.to_dict(), **result})
        print(f"full {name}: {result}", flush=True)
    # read only now: another run of this script may have written its runs meanwhile
    runs: list[dict[str, Any]] = json.loads(out_path.read_text())["runs"] if out_path.exists() else []
    keys = {(r["mode"], r["candidate"]) for r in fresh}
    runs = [r for r in runs if (r["mode"], r["candidate"]) not in keys] + fresh
    rows = []
    for r in runs:
        if r["mode"] == "control":
            reading = f"induction {r['induction']:.2f} (floor {r['induction_floor']:.2f})"
            rows.append([r["candidate"], "control", "", reading, "", ""])
        elif r["mode"] == "probe":
            rows.append(
                [
                    r["candidate"],
                    "probe",
                    f"{r['steps']} steps",
                    f"induction {r['induction']:.2f} "
                    f"(floor {r['induction_floor']:.2f}), retrieval short {r['retrieval_short']:.2f}",
                    r["train_cpu_s"] / 2,
                    "pass" if r["passed"] else "fail",
                ]
            )
        else:
            s = r["scores"]
            rows.append(
                [
                    r["candidate"],
                    "full",
                    f"{s['factoid_popular']:.2f} / {s['factoid_rare']:.2f}",
                    f"retrieval {s['retrieval_short']:.2f} / {s['retrieval_long']:.2f}, two-hop "
                    f"{s['twohop']:.2f} (chance {s['twohop_chance']:.2f})",
                    (r["train_cpu_s"] or 0) / 2,
                    "all targets"
                    if all(r["targets_met"].values())
                    else "misses " + ",".join(k for k, v in r["targets_met"].items() if not v),
                ]
            )
    print_table(["candidate", "mode", "popular / rare", "reading", "quiet-2-core s", "verdict"], rows)
    print(f"wrote {write_result('world_reader', {'runs': runs})}")


if __name__ == "__main__":
    main()
