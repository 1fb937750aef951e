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
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, print_table, write_result  # noqa: E402
from prune_vs_llmcompressor import calibration, prepare_model, text_sources  # noqa: E402


def trial(model_dir, calib: Path, threads: int, chunk: int, reuse: bool) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve().parent / "prune_vs_llmcompressor.py"),
        "--trial",
        "--tool",
        "floor-two_pass",
        "--method",
        "wanda",
        "--pattern",
        "unstructured",
        "--model-dir",
        str(model_dir),
        "--calib",
        str(calib),
        "--threads",
        str(threads),
        "--chunk",
        str(chunk),
    ]
    env = {**os.environ, "SLIMKIT_PROGRESS": "0", "SLIMKIT_HEAP_REUSE": "1" if reuse else "0"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"trial failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


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
    source, _ = text_sources(args.model, argparse.Namespace(calib_source=None, eval_data=None))
    calib, _ = calibration(model_dir, source, args.nsamples, args.seqlen, 0, workdir)
    runs: list[dict] = []
    for repeat in range(args.repeats):
        for reuse in (True, False):
            res = trial(model_dir, calib, args.threads, args.chunk, reuse)
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
