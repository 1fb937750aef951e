"""FFN-SkipLLM against dense and its layer-skipping baselines: decode speed, skip ratio, KICK quality.

For each model (the built-in world's default model, SmolLM2-135M-Instruct):

1. dense; FFN-skip calibrated for ``--ratio`` (0.25) of FFN blocks skipped; ShortGPT layer removal
   (``layer-drop``) and CALM-style early exit (``early-exit``) both set to the share of decoder-block
   linear FLOPs that FFN-skip saved on its calibration decode;
   FFN-skip also at each ``--extents`` setting (eligible FFNs skipped after a trigger; ``none``: up to
   the cold region), each calibrated for the same ratio, to compare quality at equal skip ratio;
2. greedy decode tokens/s at batch 1 and batch 8 (``--new-tokens`` tokens from held-out calibration
   prompts, exactly that many, best of ``--repeats``), with the skip / exit ratio of that decode.
   Two clocks: wall time, and the process's CPU time (``time.process_time``), which other jobs on a
   shared machine disturb much less; the speedups are reported on both;
3. compiled decode (``--compiled``, default on the world model): a static KV cache and the model's
   forward under ``torch.compile(fullgraph=True)``, for dense and for FFN-skip with its graph-safe gate
   (tensor-only state, per-row masks: no graph break), next to the same decode loop eager;
4. KICK quality through ``slimkit.evaluate`` with the evaluator's prompting: the world model's factoid
   (by popularity half) and retrieval; SmolLM2-135M-Instruct answers real-country questions
   (``countries:`` factoid, by population quartile) under its chat template, and its headline is
   containment (an instruct model answers in sentences, so its exact match is 0 whatever it knows;
   docs/evaluation.md). Neither model has summarization data here;
5. realized speedup (tokens/s over dense) next to the FLOP fraction saved, so the cost of the
   similarity check and of gathering rows is visible.

Prints one table per model and writes ``benchmarks/results/ffn_skip.json``.

    python benchmarks/ffn_skip.py [--models default,smollm2-135m] [--threads 2] [--kick-limit 100]
        [--extents default:none,1,2;smollm2-135m:none,4,8] [--compiled default]
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
        "headline": "exact_match",
    },
    "smollm2-135m": {
        "cold": {"cold_start": 3, "cold_end": 3},
        "calib": "python-docs:calib",
        # the evaluator's prompting for an instruct model: its chat template (docs/evaluation.md: dense
        # factoid containment 0.285 at n=200 this way), containment as the headline
        "kick": {"data": ("countries:",), "tasks": "factoid", "chat_template": "on", "num_fewshot": 0},
        "headline": "contains",
    },
}


def load(name: str):
    if name == "default":
        from slimkit.models.default import default_model

        return default_model()
    from slimkit.models import load_model

    return load_model(name)


def decode_speed(
    model, prompts: torch.Tensor, batch: int, new_tokens: int, repeats: int
) -> tuple[float, float]:
    """Greedy decode tokens/s of ``generate`` (generated tokens of all rows / time), best of ``repeats``:
    ``(by wall time, by process CPU time)``."""
    from transformers import GenerationConfig

    ids = prompts[:batch]
    config = GenerationConfig(
        max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, num_beams=1, pad_token_id=0
    )
    wall = cpu = float("inf")
    with torch.no_grad():
        for _ in range(repeats):
            w0, c0 = time.perf_counter(), time.process_time()
            model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config)
            wall, cpu = min(wall, time.perf_counter() - w0), min(cpu, time.process_time() - c0)
    return batch * new_tokens / wall, batch * new_tokens / cpu


def static_decode(model, ids: torch.Tensor, new_tokens: int, step) -> torch.Tensor:
    """Greedy decode with a static KV cache: the prompt pass eager, each next token through ``step``."""
    from transformers import StaticCache

    cache = StaticCache(config=model.config, max_cache_len=ids.shape[1] + new_tokens)
    out = model(ids, past_key_values=cache, use_cache=True)
    tok = out.logits[:, -1:].argmax(-1)
    generated = [tok]
    for i in range(new_tokens - 1):
        position = torch.tensor([ids.shape[1] + i], device=ids.device)
        tok = step(tok, cache, position).argmax(-1)
        generated.append(tok)
    return torch.cat(generated, dim=1)


def compiled_speed(
    model, prompts: torch.Tensor, batch: int, new_tokens: int, repeats: int, mode: str | None = None
) -> dict[str, Any]:
    """The same static-cache decode loop eager and with the forward under ``torch.compile(fullgraph=True)``
    (``mode``: e.g. ``"reduce-overhead"`` for CUDA graphs): tokens/s by wall and CPU time, the compile
    time, and whether both produced the same tokens. On CUDA every timing ends with a synchronize."""
    from slimkit.nn.ffn_skip import get_skip_state

    state = get_skip_state(model)
    if state is not None:
        state.set_graph_safe(True)  # tensor-only gate: no graph break on per-row decisions
    device = next(model.parameters()).device
    ids = prompts[:batch].to(device)
    eager_forward = model.forward
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step(tok, cache, position):
        # through model.__call__, so the gate's pre-hook (the decode clock) runs in Python each step
        return model(tok, past_key_values=cache, cache_position=position).logits[:, -1:]

    out: dict[str, Any] = {}
    try:
        with torch.no_grad():
            for tag in ("eager", "compiled"):
                if tag == "compiled":
                    torch._dynamo.reset()
                    model.forward = torch.compile(eager_forward, fullgraph=True, dynamic=False, mode=mode)
                    c0 = time.perf_counter()
                    tokens = static_decode(model, ids, new_tokens, step)  # compiles (prompt and decode)
                    static_decode(model, ids, new_tokens, step)  # CUDA graphs record on a later call
                    sync()
                    out["compile_s"] = time.perf_counter() - c0
                    out["same_tokens"] = bool(torch.equal(tokens, out.pop("_tokens")))
                else:
                    out["_tokens"] = static_decode(model, ids, new_tokens, step)
                wall = cpu = float("inf")
                for _ in range(repeats):
                    sync()
                    w0, c0 = time.perf_counter(), time.process_time()
                    static_decode(model, ids, new_tokens, step)
                    sync()
                    wall, cpu = min(wall, time.perf_counter() - w0), min(cpu, time.process_time() - c0)
                out[f"{tag}_tokens_per_s"] = batch * new_tokens / wall
                out[f"{tag}_tokens_per_s_cpu"] = batch * new_tokens / cpu
    except Exception as e:  # noqa: BLE001 - a compile failure is a measured result, reported as such
        out["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
    finally:
        model.forward = eager_forward
        torch._dynamo.reset()
        if state is not None:
            state.set_graph_safe(False)
    return out


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


def headline(metrics: dict[str, dict[str, float]], key: str = "exact_match") -> dict[str, float]:
    """Per task its ``key`` metric (``contains`` for an instruct model under its chat template: it
    answers in sentences, so its exact match is 0 whatever it knows; LLM-KICK's FreebaseQA headline is
    containment for the same reason), then that metric on each popularity group the task reports."""
    out = {}
    for task, m in metrics.items():
        k = (
            key
            if key in m
            else ("exact_match" if "exact_match" in m else next((k for k in m if k != "n"), None))
        )
        if k is None:
            continue
        out[f"{task} {k}"] = m[k]
        for name, value in m.items():
            if name.startswith(f"{k}@popularity"):
                out[f"{task} {k} {name.split('=', 1)[1]}"] = value
    return out


def run_model(name: str, args: argparse.Namespace, save=lambda partial: None) -> dict[str, Any]:
    from slimkit.compress import EarlyExitConfig, FFNSkipConfig, LayerDropConfig, calibration_for, compress_

    setup = SETUPS[name]
    dense, tok = load(name)
    dense.eval()
    decode = {"prompts": args.calib_prompts, "new_tokens": args.calib_new_tokens}
    skip_cfg = FFNSkipConfig(target_ratio=args.ratio, **setup["cold"], **decode)
    calib = calibration_for(skip_cfg, tok, setup["calib"], nsamples=32, seqlen=64, seed=0)
    held_out = calib.ids[16:, :32]  # speed prompts: not the 16 calibration prompts
    variants: list[tuple[str, Any, Any]] = [("dense", None, None)]
    rows: list[dict[str, Any]] = []
    models: dict[str, Any] = {}
    saved = None
    makers = [
        (f"ffn-skip {args.ratio:.0%}", lambda _: skip_cfg),
        ("layer-drop (ShortGPT)", lambda share: LayerDropConfig(compute_ratio=share)),
        ("early-exit (CALM)", lambda share: EarlyExitConfig(compute_ratio=share, **decode)),
    ]
    if args.no_baselines:
        makers = makers[:1]
    for extent in extents_for(name, args.extents):
        if extent != skip_cfg.extent:
            makers.append(
                (
                    f"ffn-skip {args.ratio:.0%} extent {extent}",
                    lambda _, e=extent: FFNSkipConfig(
                        target_ratio=args.ratio, extent=e, **setup["cold"], **decode
                    ),
                )
            )
    for label, make in makers:
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
            row[f"tokens_per_s_b{batch}"], row[f"tokens_per_s_cpu_b{batch}"] = decode_speed(
                model, held_out, batch, args.new_tokens, args.repeats
            )
            row[f"decode_b{batch}"] = decode_ratio(model)
            if name in args.compiled.split(",") and (label == "dense" or label == variants[1][0]):
                reset_ratio(model)
                row[f"static_b{batch}"] = compiled_speed(
                    model, held_out, batch, args.new_tokens, args.repeats
                )
                row[f"static_b{batch}"]["decode"] = decode_ratio(model)
                print(f"{name}: {label} b{batch} static cache {row[f'static_b{batch}']}", flush=True)
        reset_ratio(model)
        row["kick"] = kick(model, tok, setup["kick"], args.kick_limit)
        row["kick_decode"] = decode_ratio(model)
        rows.append(row)
        save({"model": name, "partial": True, "rows": rows})  # a long run keeps what it measured
        print(f"{name}: {label} done", flush=True)
    base = rows[0]
    for row in rows:
        for batch in (1, 8):
            row[f"speedup_b{batch}"] = row[f"tokens_per_s_b{batch}"] / base[f"tokens_per_s_b{batch}"]
            row[f"speedup_cpu_b{batch}"] = (
                row[f"tokens_per_s_cpu_b{batch}"] / base[f"tokens_per_s_cpu_b{batch}"]
            )
    return {"model": name, "setup": {k: v for k, v in setup.items()}, "rows": rows}


def extents_for(name: str, spec: str) -> list[int | None]:
    """``"default:none,1,2;smollm2-135m:none,4,8"`` -> the extents listed for ``name``."""
    for part in filter(None, spec.split(";")):
        model, _, values = part.partition(":")
        if model == name:
            return [None if v == "none" else int(v) for v in values.split(",") if v]
    return []


def print_model(result: dict[str, Any]) -> None:
    rows = result["rows"]
    key = result["setup"].get("headline", "exact_match")
    quality = list(headline(rows[0]["kick"], key))
    header = [
        "variant",
        "τ",
        "FLOPs saved",
        "ratio b8",
        "ratio KICK",
        "tok/s b1",
        "x b1",
        "x b1 cpu",
        "tok/s b8",
        "x b8",
        "x b8 cpu",
        *quality,
    ]
    table = []
    for r in rows:
        ratio = r["decode_b8"].get("skip_ratio", r["decode_b8"].get("exit_ratio"))
        kick_ratio = r["kick_decode"].get("skip_ratio", r["kick_decode"].get("exit_ratio"))
        q = headline(r["kick"], key)
        table.append(
            [
                r["variant"],
                "-" if r["threshold"] is None else f"{r['threshold']:.4f}",
                f"{r['flop_fraction_saved_calibration'] or 0:.3f}",
                "-" if ratio is None else f"{ratio:.3f}",
                "-" if kick_ratio is None else f"{kick_ratio:.3f}",
                r["tokens_per_s_b1"],
                f"{r['speedup_b1']:.2f}",
                f"{r['speedup_cpu_b1']:.2f}",
                r["tokens_per_s_b8"],
                f"{r['speedup_b8']:.2f}",
                f"{r['speedup_cpu_b8']:.2f}",
                *[f"{q.get(k, float('nan')):.3f}" for k in quality],
            ]
        )
    print(f"\n{result['model']}")
    print_table(header, table)
    static = [(r["variant"], b, r[f"static_b{b}"]) for r in rows for b in (1, 8) if f"static_b{b}" in r]
    if static:
        print(f"\n{result['model']}: static KV cache, eager vs torch.compile (tokens/s; wall, cpu)")
        fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        print_table(
            ["variant", "batch", "eager", "eager cpu", "compiled", "compiled cpu", "compile s", "same", "error"],
            [
                [v, b, fmt(s.get("eager_tokens_per_s")), fmt(s.get("eager_tokens_per_s_cpu")),
                 fmt(s.get("compiled_tokens_per_s")), fmt(s.get("compiled_tokens_per_s_cpu")),
                 fmt(s.get("compile_s")), s.get("same_tokens", "-"), s.get("error", "")]
                for v, b, s in static
            ],
        )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="default,smollm2-135m")
    parser.add_argument("--ratio", type=float, default=0.25)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--kick-limit", type=int, default=100)
    parser.add_argument("--calib-prompts", type=int, default=16, help="prompts decoded per τ tried")
    parser.add_argument("--calib-new-tokens", type=int, default=32, help="tokens decoded per prompt per τ")
    parser.add_argument("--no-baselines", action="store_true", help="dense and FFN-skip (and extents) only")
    parser.add_argument("--out-name", default="ffn_skip", help="benchmarks/results/<name>.json")
    parser.add_argument("--extents", default="default:none,1,2;smollm2-135m:none,4,8")
    parser.add_argument("--compiled", default="default", help="models whose static-cache decode is compiled")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results: list[dict[str, Any]] = []
    for name in args.models.split(","):
        results.append(
            run_model(
                name,
                args,
                lambda part: write_result(args.out_name, {"args": vars(args), "models": [*results, part]}),
            )
        )
        write_result(args.out_name, {"args": vars(args), "models": results})
    for result in results:
        print_model(result)
    path = write_result(args.out_name, {"args": vars(args), "models": results})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
