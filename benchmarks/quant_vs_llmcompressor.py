"""slimkit vs llm-compressor: weight-only GPTQ, AWQ and RTN (W4A16 by default), same model and data.

For each model x setting, both tools quantize a fresh copy of the same model with the same calibration
token ids (same sequences, same order, same chunk size), then perplexity is measured by the same code on
the same held-out text. Each trial runs in its own subprocess (time, CPU seconds and peak RSS are that
trial's alone). Prints a table with ratios and writes ``benchmarks/results/quant_vs_llmcompressor.json``.

Settings (both tools symmetric ``--bits``-bit integer weights, groups of ``--group-size`` columns,
min/max scales, lm_head left dense):

* ``gptq``: each tool's default GPTQ in natural column order (slimkit ``act_order=False``; llm-compressor
  ``actorder=None``), block 128, damping 0.01, slimkit's true-sequential groups. The group scales differ:
  slimkit computes a group's when the sweep reaches it, from the error-updated columns (the GPTQ
  reference's dynamic groups); llm-compressor 0.14 takes them from its weight observer on the unquantized
  weight before the sweep (static groups, in every column order);
* ``gptq+static``: ``gptq`` with slimkit's ``static_groups=True``: both tools' group scales fixed from the
  unquantized weight, the like-for-like perplexity comparison in natural order. ``+static`` combines with
  ``+no-true-seq`` and ``+onepass`` (``gptq+no-true-seq+static``: the same rule, the same passes);
* ``gptq+no-true-seq``: ``gptq`` with slimkit's ``true_sequential=False``: every linear of a block
  calibrated from one pass, which is what llm-compressor's sequential pipeline does (one calibration
  pass per decoder layer, then one propagation pass); the like-for-like time comparison;
* ``gptq+onepass``: ``gptq+no-true-seq`` with slimkit's ``sequential=False`` (every block calibrated on the
  dense model's activations, no propagation pass), the semantics of llm-compressor's ``basic`` pipeline,
  which is the only one it is run against (and its perplexity reference);
* ``gptq+actorder``: columns by decreasing Hessian diagonal with scales fixed from the unquantized weight
  (slimkit ``act_order=True``; llm-compressor ``actorder="weight"``);
* ``awq``: activation-aware scales ``s = mean|x|^α`` (grid 20) then RTN (slimkit ``awq``; llm-compressor
  ``AWQModifier(duo_scaling=False)`` + ``QuantizationModifier``). slimkit keeps the scales in the layer,
  llm-compressor folds them into the previous norm/linear: the same function, different storage;
  llm-compressor 0.14's AWQ does not run without an accelerator (its activation cache calls
  ``pin_memory``: "Cannot access accelerator device when none is available"); the benchmark then records
  the error and slimkit's numbers alone;
* ``rtn``: round to nearest, data-free (slimkit ``rtn``; llm-compressor ``QuantizationModifier``).

llm-compressor runs each calibrated setting with both of its pipelines, ``sequential`` (each layer
calibrated on the quantized layers before it, as slimkit does) and ``basic`` (one pass over the dense
model); the time goal is read against the faster of the two, the perplexity against the sequential one.

Install as for ``prune_vs_llmcompressor.py``::

    .venv/bin/pip install --no-deps llmcompressor==0.14.0.1 compressed-tensors==0.19.0 loguru nvidia-ml-py
    .venv/bin/python benchmarks/quant_vs_llmcompressor.py --models random85m,smollm2-135m

SmolLM2-135M's input widths (576, 1536, 192) are not multiples of 128: use ``--group-size 64`` for it
(``--group-sizes smollm2-135m=64`` sets it per model).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, print_seed_summary, print_table, seed_summary, write_result  # noqa: E402
from prune_vs_llmcompressor import (  # noqa: E402
    calibration,
    cpu_seconds,
    evaluate_ppl,
    peak_memory_mib,
    prepare_model,
    text_sources,
)

SETTINGS = (
    "gptq",
    "gptq+actorder",
    "gptq+static",
    "gptq+no-true-seq",
    "gptq+no-true-seq+static",
    "gptq+onepass",
    "gptq+onepass+static",
    "awq",
    "rtn",
)


def _flags(setting: str) -> set[str]:
    """The options after the method: ``gptq+onepass+static`` -> ``{"onepass", "static"}``."""
    return set(setting.split("+")[1:])


def _llmc_recipe(setting: str, bits: int, group: int) -> list:
    from llmcompressor.modifiers.gptq import GPTQModifier
    from llmcompressor.modifiers.quantization import QuantizationModifier

    scheme = {
        "group_0": {
            "targets": ["Linear"],
            "weights": {
                "num_bits": bits,
                "type": "int",
                "symmetric": True,
                "strategy": "group",
                "group_size": group,
                "observer": "minmax",
            },
        }
    }
    if setting.startswith("gptq"):
        # static groups need no option here: llm-compressor 0.14 always takes its scales from the
        # weight observer on the unquantized weight
        actorder = "weight" if "actorder" in _flags(setting) else None
        return [
            GPTQModifier(
                config_groups=scheme,
                ignore=["lm_head"],
                block_size=128,
                dampening_frac=0.01,
                actorder=actorder,
            )
        ]
    quantize = QuantizationModifier(config_groups=scheme, ignore=["lm_head"])
    if setting == "awq":
        from llmcompressor.modifiers.transform.awq import AWQModifier

        return [AWQModifier(duo_scaling=False, n_grid=20), quantize]
    return [quantize]


def trial(args: argparse.Namespace) -> None:
    """One (tool, setting, pipeline) run in this process; prints a JSON line."""
    from safetensors.torch import load_file

    from slimkit.models import load_model

    torch.set_num_threads(args.threads)
    model, tok = load_model(args.model_dir, device="cpu")
    model.eval()
    calib = load_file(args.calib)["input_ids"]
    rss_before = peak_memory_mib("cpu")
    load = os.getloadavg()[0]
    cpu_start = cpu_seconds()
    start = time.perf_counter()
    if args.tool == "slimkit":
        from slimkit.compress import build_config, compress_

        method = args.setting.split("+")[0]
        options = {"bits": args.bits, "group_size": args.group_size}
        if method == "gptq":
            flags = _flags(args.setting)
            options["act_order"] = "actorder" in flags
            options["static_groups"] = "static" in flags
            options["true_sequential"] = not flags & {"no-true-seq", "onepass"}
            options["sequential"] = "onepass" not in flags
        cfg = build_config(method, **options)
        compress_(model, cfg, None if method == "rtn" else calib, chunk_size=args.chunk, progress=False)
    else:
        from llmcompressor import oneshot
        from torch.utils.data import DataLoader

        recipe = _llmc_recipe(args.setting, args.bits, args.group_size)
        if args.setting == "rtn":
            oneshot(model=model, recipe=recipe)
        else:
            rows = [{"input_ids": x, "attention_mask": torch.ones_like(x)} for x in calib]
            loader = DataLoader(
                rows,
                batch_size=args.chunk,
                collate_fn=lambda b: {k: torch.stack([r[k] for r in b]) for k in b[0]},
            )
            oneshot(
                model=model,
                dataset=loader,
                recipe=recipe,
                num_calibration_samples=calib.shape[0],
                max_seq_length=calib.shape[1],
                pipeline=args.pipeline,
            )
    elapsed = time.perf_counter() - start
    cpu_s = cpu_seconds() - cpu_start
    peak = peak_memory_mib("cpu")
    ppl = evaluate_ppl(model, tok, args.eval_data, args.eval_seqlen)
    print(
        "RESULT "
        + json.dumps(
            {
                "time_s": elapsed,
                "cpu_s": cpu_s,
                "load_before": load,
                "peak_mib": peak,
                "rss_before_mib": rss_before,
                "ppl": ppl,
            }
        )
    )


def run_trial(tool: str, setting: str, pipeline: str, model_dir, calib, eval_data, group, args) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--trial",
        "--tool",
        tool,
        "--setting",
        setting,
        "--pipeline",
        pipeline,
        "--model-dir",
        str(model_dir),
        "--calib",
        str(calib),
        "--bits",
        str(args.bits),
        "--group-size",
        str(group),
        "--threads",
        str(args.threads),
        "--chunk",
        str(args.chunk),
        "--eval-seqlen",
        str(args.eval_seqlen),
        "--eval-data",
        eval_data,
    ]
    env = {**os.environ, "SLIMKIT_PROGRESS": "0", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"{tool} {setting} {pipeline} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="random85m,smollm2-135m")
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, from {SETTINGS}")
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--group-size", type=int, default=128)
    ap.add_argument("--group-sizes", default="smollm2-135m=64", help="per-model overrides: name=size,...")
    ap.add_argument("--nsamples", type=int, default=64)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--eval-seqlen", type=int, default=256)
    ap.add_argument("--calib-source", default=None)
    ap.add_argument("--eval-data", default=None)
    ap.add_argument(
        "--pipelines",
        default="sequential,basic",
        help="llm-compressor pipelines to time for calibrated settings (sequential first: the ppl reference)",
    )
    ap.add_argument("--chunk", type=int, default=8)
    ap.add_argument(
        "--calib-seeds",
        default="0",
        help="calibration draws, comma-separated: each seed is a paired trial of both tools on the same ids; "
        "with several, a summary gives the mean perplexity difference and its spread",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out-name", default="quant_vs_llmcompressor")
    ap.add_argument("--workdir", default=str(RESULTS.parent / ".work"))
    ap.add_argument("--trial", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tool", help=argparse.SUPPRESS)
    ap.add_argument("--setting", help=argparse.SUPPRESS)
    ap.add_argument("--pipeline", default="sequential", help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    ap.add_argument("--calib", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.trial:
        trial(args)
        return

    import llmcompressor

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    overrides = dict(item.split("=", 1) for item in args.group_sizes.split(",") if item)
    settings = [s for s in args.settings.split(",") if s]
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        ap.error(f"unknown setting(s) {unknown}; choose from {SETTINGS}")
    records, rows = [], []

    def save(records: list[dict], summary: list[dict] | None = None) -> Path:
        return write_result(
            args.out_name,
            {
                "llmcompressor": getattr(llmcompressor, "__version__", "0.14"),
                "bits": args.bits,
                "nsamples": args.nsamples,
                "seqlen": args.seqlen,
                "eval_seqlen": args.eval_seqlen,
                "chunk": args.chunk,
                "threads": args.threads,
                "records": records,
                "seed_summary": summary or [],
            },
        )

    seeds = [int(x) for x in args.calib_seeds.split(",") if x]
    runs = [(spec, seed) for spec in args.models.split(",") for seed in seeds]
    dense_ppls: dict[str, tuple[int, float]] = {}
    for spec, seed in runs:
        group = int(overrides.get(spec, args.group_size))
        model_dir = prepare_model(spec, workdir)
        calib_source, eval_data = text_sources(spec, args)
        calib, coverage = calibration(model_dir, calib_source, args.nsamples, args.seqlen, seed, workdir)
        if spec not in dense_ppls:
            from slimkit.models import load_model

            dense_model, dense_tok = load_model(model_dir)
            n_params = sum(p.numel() for p in dense_model.parameters())
            dense_ppls[spec] = (n_params, evaluate_ppl(dense_model, dense_tok, eval_data, args.eval_seqlen))
            del dense_model
        n_params, dense_ppl = dense_ppls[spec]
        for setting in settings:
            if setting == "rtn":
                pipelines = ("sequential",)
            elif "onepass" in _flags(setting):
                pipelines = ("basic",)
            else:
                pipelines = tuple(args.pipelines.split(","))
            ours = run_trial("slimkit", setting, "sequential", model_dir, calib, eval_data, group, args)
            try:
                theirs = {
                    p: run_trial("llmcompressor", setting, p, model_dir, calib, eval_data, group, args)
                    for p in pipelines
                }
            except RuntimeError as e:  # llm-compressor 0.14's AWQ needs an accelerator (pin_memory)
                error = str(e).strip().splitlines()[-1]
                records.append(
                    {
                        "model": spec,
                        "setting": setting,
                        "calib_seed": seed,
                        "slimkit": ours,
                        "llmcompressor_error": error,
                    }
                )
                save(records)
                rows.append(
                    [f"{spec} ({n_params / 1e6:.0f}M)", f"{setting} w{args.bits} g{group}", ours["time_s"]]
                    + ["failed"] * 4
                    + [f"{dense_ppl:.3f}", f"{ours['ppl']:.3f}"]
                    + ["-"] * 3
                )
                print(f"llm-compressor {setting} failed: {error}", flush=True)
                continue
            faster = min(theirs, key=lambda p: theirs[p]["time_s"])
            reference_ppl = _reference_ppl({"llmcompressor": theirs})
            record = {
                "model": spec,
                "params": n_params,
                "setting": setting,
                "group_size": group,
                "calib_source": calib_source,
                "calib_seed": seed,
                "calib_coverage": coverage,
                "eval_data": eval_data,
                "dense_ppl": dense_ppl,
                "slimkit": ours,
                "llmcompressor": theirs,
                "faster_pipeline": faster,
                "time_ratio_vs_faster": ours["time_s"] / theirs[faster]["time_s"],
                "cpu_ratio_vs_faster": ours["cpu_s"] / theirs[faster]["cpu_s"],
                "ppl_rel_diff": (ours["ppl"] - reference_ppl) / reference_ppl
                if math.isfinite(reference_ppl)
                else None,
            }
            records.append(record)
            save(records)
            seq, basic = theirs.get("sequential"), theirs.get("basic")
            rows.append(
                [
                    f"{spec} ({n_params / 1e6:.0f}M)",
                    f"{setting} w{args.bits} g{group} seed {seed}",
                    ours["time_s"],
                    "-" if seq is None else f"{seq['time_s']:.1f}",
                    "-" if basic is None else f"{basic['time_s']:.1f}",
                    f"{record['time_ratio_vs_faster']:.2f}x",
                    f"{record['cpu_ratio_vs_faster']:.2f}x",
                    f"{dense_ppl:.3f}",
                    f"{ours['ppl']:.3f}",
                    "-" if seq is None else f"{seq['ppl']:.3f}",
                    "-" if basic is None else f"{basic['ppl']:.3f}",
                    f"{100 * record['ppl_rel_diff']:+.2f}%",
                ]
            )
            print(f"done {spec} {setting}: {record['time_ratio_vs_faster']:.2f}x time", flush=True)
    print()
    print_table(
        [
            "model",
            "setting",
            "slimkit s",
            "llm-c seq s",
            "llm-c basic s",
            "time vs faster",
            "cpu vs faster",
            "ppl dense",
            "ppl slimkit",
            "ppl llm-c seq",
            "ppl llm-c basic",
            "ppl diff (vs seq)",
        ],
        rows,
    )
    summary = seed_summary(records, ("model", "setting"), _reference_ppl)
    print_seed_summary(summary, ("model", "setting"))
    print(f"wrote {save(records, summary)}")


def _reference_ppl(record: dict) -> float:
    """The perplexity a record's slimkit result is compared with: llm-compressor's sequential pipeline
    where it ran, else its basic one."""
    theirs = record["llmcompressor"]
    return theirs.get("sequential", theirs.get("basic"))["ppl"]


if __name__ == "__main__":
    main()
