"""FFN-SkipLLM against dense and its layer-skipping baselines: decode speed, skip ratio, KICK quality.

For each model (the built-in world's default model, SmolLM2-135M-Instruct):

1. dense; FFN-skip calibrated for ``--ratio`` (0.25) of FFN blocks skipped; ShortGPT layer removal
   (``layer-drop``) and CALM-style early exit (``early-exit``) both set to the share of decoder-block
   linear FLOPs that FFN-skip saved on its calibration decode;
2. greedy decode tokens/s at batch 1 and batch 8 (``--new-tokens`` tokens from held-out calibration
   prompts, exactly that many, best of ``--repeats``), with the skip / exit ratio of that decode;
3. KICK quality through ``slimkit.evaluate`` (world: factoid and retrieval; SmolLM2: countries: factoid);
4. realized speedup (tokens/s over dense) next to the FLOP fraction saved, so the cost of the
   similarity check and of gathering rows is visible.

Prints one table per model and writes ``benchmarks/results/ffn_skip.json``.

    python benchmarks/ffn_skip.py [--models default,smollm2-135m] [--threads 2] [--kick-limit 100]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_result  # noqa: E402

SETUPS = {
    # cold regions: the 4-block default model keeps only block 0 cold; SmolLM2 (30 blocks) 3 at each end
    "default": {
        "cold": {"cold_start": 1, "cold_end": 0},
        "calib": None,
        "kick": {"tasks": "factoid,retrieval"},
    },
    "smollm2-135m": {
        "cold": {"cold_start": 3, "cold_end": 3},
        "calib": "python-docs:calib",
        "kick": {"data": ("countries:",), "tasks": "factoid", "chat_template": "auto", "num_fewshot": 0},
    },
}


def load(name: str):
    if name == "default":
        from slimkit.models.default import default_model

        return default_model()
    from slimkit.models import load_model

    return load_model(name)


def decode_speed(model, prompts: torch.Tensor, batch: int, new_tokens: int, repeats: int) -> float:
    """Greedy decode tokens/s (generated tokens of all rows / wall time of ``generate``), best of ``repeats``."""
    from transformers import GenerationConfig

    ids = prompts[:batch]
    config = GenerationConfig(
        max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, num_beams=1, pad_token_id=0
    )
    best = float("inf")
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config)
            best = min(best, time.perf_counter() - start)
    return batch * new_tokens / best


def decode_ratio(model) -> dict[str, Any]:
    from slimkit.nn.ffn_skip import skip_stats
    from slimkit.nn.layer_skip import get_early_exit_state

    stats = skip_stats(model)
    if stats is not None:
        return {"skip_ratio": stats["skip_ratio"], "layer_skip_ratio": stats["layer_skip_ratio"]}
    state = get_early_exit_state(model)
    if state is not None:
        s = state.stats()
        return {"exit_ratio": s["exit_ratio"], "layer_exit_ratio": s["layer_exit_ratio"]}
    return {}


def reset_ratio(model) -> None:
    from slimkit.nn.ffn_skip import reset_skip_stats
    from slimkit.nn.layer_skip import get_early_exit_state

    reset_skip_stats(model)
    state = get_early_exit_state(model)
    if state is not None:
        state.reset_stats()


def kick(model, tok, options: dict[str, Any], limit: int) -> dict[str, dict[str, float]]:
    from slimkit.evaluate import evaluate

    metrics = evaluate(model, tok, suite="kick", limit=limit, **options)
    return {task: {k: float(v) for k, v in m.items()} for task, m in metrics.items()}


def headline(metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    """Exact match per task, and containment beside it where the task has it: an instruct model under
    its chat template answers in sentences, so its exact match is 0 whatever it knows (LLM-KICK's
    FreebaseQA headline is containment for the same reason)."""
    out = {}
    for task, m in metrics.items():
        key = "exact_match" if "exact_match" in m else next((k for k in m if k != "n"), None)
        if key is not None:
            out[f"{task} {key}"] = m[key]
        if "contains" in m:
            out[f"{task} contains"] = m["contains"]
    return out


def run_model(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from slimkit.compress import EarlyExitConfig, FFNSkipConfig, LayerDropConfig, calibration_for, compress_

    setup = SETUPS[name]
    dense, tok = load(name)
    dense.eval()
    skip_cfg = FFNSkipConfig(target_ratio=args.ratio, **setup["cold"])
    calib = calibration_for(skip_cfg, tok, setup["calib"], nsamples=32, seqlen=64, seed=0)
    held_out = calib[16:, :32]  # speed prompts: not the 16 calibration prompts
    variants: list[tuple[str, Any, Any]] = [("dense", None, None)]
    rows: list[dict[str, Any]] = []
    models: dict[str, Any] = {}
    saved = None
    for label, make in (
        (f"ffn-skip {args.ratio:.0%}", lambda _: skip_cfg),
        ("layer-drop (ShortGPT)", lambda share: LayerDropConfig(compute_ratio=share)),
        ("early-exit (CALM)", lambda share: EarlyExitConfig(compute_ratio=share)),
    ):
        model = copy.deepcopy(dense)
        t0 = time.perf_counter()
        report = compress_(model, make(saved), calib, progress=False)
        if saved is None:
            saved = report.compute_fraction_saved
        variants.append((label, model, report))
        print(f"{name}: {report.summary()} ({time.perf_counter() - t0:.1f} s)", flush=True)
    for label, model, report in variants:
        model = dense if model is None else model
        models[label] = model
        row: dict[str, Any] = {
            "variant": label,
            "threshold": None if report is None else report.threshold,
            "flop_fraction_saved_calibration": 0.0 if report is None else report.compute_fraction_saved,
            "calibration_ratio": None if report is None else report.achieved,
            "extra": {}
            if report is None
            else {k: v for k, v in report.stats.items() if k in ("removed_layers",)},
        }
        for batch in (1, 8):
            reset_ratio(model)
            row[f"tokens_per_s_b{batch}"] = decode_speed(
                model, held_out, batch, args.new_tokens, args.repeats
            )
            row[f"decode_b{batch}"] = decode_ratio(model)
        reset_ratio(model)
        row["kick"] = kick(model, tok, setup["kick"], args.kick_limit)
        row["kick_decode"] = decode_ratio(model)
        rows.append(row)
        print(f"{name}: {label} done", flush=True)
    base = rows[0]
    for row in rows:
        for batch in (1, 8):
            row[f"speedup_b{batch}"] = row[f"tokens_per_s_b{batch}"] / base[f"tokens_per_s_b{batch}"]
    return {"model": name, "setup": {k: v for k, v in setup.items() if k != "kick"}, "rows": rows}


def print_model(result: dict[str, Any]) -> None:
    rows = result["rows"]
    quality = list(headline(rows[0]["kick"]))
    header = [
        "variant",
        "τ",
        "FLOPs saved",
        "ratio (b8 decode)",
        "tok/s b1",
        "x b1",
        "tok/s b8",
        "x b8",
        *quality,
    ]
    table = []
    for r in rows:
        ratio = r["decode_b8"].get("skip_ratio", r["decode_b8"].get("exit_ratio"))
        q = headline(r["kick"])
        table.append(
            [
                r["variant"],
                "-" if r["threshold"] is None else f"{r['threshold']:.4f}",
                f"{r['flop_fraction_saved_calibration'] or 0:.3f}",
                "-" if ratio is None else f"{ratio:.3f}",
                r["tokens_per_s_b1"],
                f"{r['speedup_b1']:.2f}",
                r["tokens_per_s_b8"],
                f"{r['speedup_b8']:.2f}",
                *[f"{q.get(k, float('nan')):.3f}" for k in quality],
            ]
        )
    print(f"\n{result['model']}")
    print_table(header, table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="default,smollm2-135m")
    parser.add_argument("--ratio", type=float, default=0.25)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--kick-limit", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = [run_model(name, args) for name in args.models.split(",")]
    for result in results:
        print_model(result)
    path = write_result("ffn_skip", {"args": vars(args), "models": results})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
