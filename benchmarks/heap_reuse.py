"""The calibration runner's forward passes with and without ``slimkit.core.allocator.heap_reuse``.

Times exact Wanda's two passes per block (a statistics pass that stops before ``down_proj``, then the
propagation pass; a method that observes and changes nothing, so only the passes count) on one model
and calibration set, alternating trials with the heap thresholds raised (``SLIMKIT_HEAP_REUSE=1``, the
default) and with glibc's defaults (``SLIMKIT_HEAP_REUSE=0``). Each trial is its own process, so one
setting never inherits the other's heap. Prints every trial, the medians and their ratio; JSON in
``benchmarks/results/heap_reuse.json``.

    python benchmarks/heap_reuse.py --model smollm2-135m --nsamples 32 --seqlen 512 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, print_table, write_result  # noqa: E402
from prune_vs_llmcompressor import calibration, prepare_model, run_trial, text_sources  # noqa: E402


def trial(model_dir, calib: Path, data: str, args: argparse.Namespace, reuse: bool) -> dict:
    """One floor trial in its own process (prune_vs_llmcompressor's), heap reuse on or off."""
    with mock.patch.dict(os.environ, {"SLIMKIT_HEAP_REUSE": "1" if reuse else "0"}):  # inherited
        return run_trial("floor-two_pass", "wanda", "unstructured", model_dir, calib, data, args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m", help="a named model, 'default', or a model directory")
    ap.add_argument("--nsamples", type=int, default=32)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--chunk", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="trials per setting, alternated")
    args = ap.parse_args()
    workdir = RESULTS.parent / ".work"
    workdir.mkdir(parents=True, exist_ok=True)
    model_dir = prepare_model(args.model, workdir)
    source, data = text_sources(args.model, argparse.Namespace(calib_source=None, eval_data=None))
    args.device, args.eval_seqlen = "cpu", args.seqlen  # what run_trial passes on (no evaluation here)
    calib, _ = calibration(model_dir, source, args.nsamples, args.seqlen, 0, workdir)
    runs: list[dict] = []
    for repeat in range(args.repeats):
        for reuse in (True, False):
            res = trial(model_dir, calib, data, args, reuse)
            runs.append({"repeat": repeat, "heap_reuse": reuse, **res})
            print(f"repeat {repeat} heap_reuse={reuse}: {res['time_s']:.1f} s", flush=True)
    med = {r: statistics.median(x["time_s"] for x in runs if x["heap_reuse"] == r) for r in (True, False)}
    cpu = {r: statistics.median(x["cpu_s"] for x in runs if x["heap_reuse"] == r) for r in (True, False)}
    print_table(
        ["heap", "median s", "median CPU s", "trials"],
        [
            ["kept for reuse (default)", med[True], cpu[True], args.repeats],
            ["glibc defaults", med[False], cpu[False], args.repeats],
            ["ratio", f"{med[True] / med[False]:.2f}x", f"{cpu[True] / cpu[False]:.2f}x", ""],
        ],
    )
    out = write_result(
        "heap_reuse", {"args": vars(args), "runs": runs, "median_s": {str(k): v for k, v in med.items()}}
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
