"""GPU variant of the FFN-skip benchmark: decode speed on a random ~1B LLaMA shape, eager and compiled.

Prepared for a GPU session; it has NOT been run on a GPU yet (none was lent to the sessions that wrote
it). On one CUDA GPU, bf16, random weights (no download; speed only — quality needs real weights, see
ffn_skip.py):

* shape: hidden 2048, 16 blocks, FFN 8192, 32 heads of 64, 8 KV heads, vocabulary 32000 (LLaMA-3.2-1B-like);
* variants: dense; FFN-skip with τ calibrated for ``--ratio`` of FFN blocks on random-token prompts;
  layer-drop and early-exit at the FLOP share FFN-skip saved;
* eager: ``model.generate`` (dynamic cache), batch 1 and 8, ``--new-tokens`` tokens, best of ``--repeats``;
* static cache: the decode loop of ``benchmarks/ffn_skip.py`` (:func:`compiled_speed`): a static KV
  cache, eager and with the forward under ``torch.compile(fullgraph=True, mode="reduce-overhead")``
  (CUDA graphs). Eager decode at this size is bound by kernel launches, not by the FFN's work, so this
  is where skipping could show. FFN-skip runs its graph-safe gate there (tensor-only state, per-row
  ``torch.where`` masks: ``fullgraph=True`` proves there is no graph break); that gate computes every
  row's FFN and masks the skipped updates (``torch.cond`` would skip a batch that skips as a whole, but
  dynamo fails on it with transformers 5.25's hub-kernel attention wrapper, see docs/ffn_skip.md), so
  on a GPU it measures the gate's cost inside a graph, not a saving. Layer-drop compiles as a smaller
  model; early exit has no graph-safe gate and runs eager only.

Writes ``benchmarks/results/gpu_ffn_skip.json``. ``--smoke`` runs a tiny shape on CPU, eager only, to
check the script itself::

    .venv/bin/python benchmarks/gpu/ffn_skip.py            # on the GPU machine
    .venv/bin/python benchmarks/gpu/ffn_skip.py --smoke    # anywhere, seconds
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import print_table, write_result  # noqa: E402
from ffn_skip import compiled_speed  # noqa: E402

SHAPE_1B = {"hidden_size": 2048, "num_hidden_layers": 16, "intermediate_size": 8192, "num_attention_heads": 32,
            "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 32000}  # fmt: skip
SHAPE_SMOKE = {"hidden_size": 64, "num_hidden_layers": 6, "intermediate_size": 128, "num_attention_heads": 4,
               "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 512}  # fmt: skip


def build(shape: dict[str, Any], device: str, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(
        **shape, max_position_embeddings=2048, pad_token_id=0, bos_token_id=1, eos_token_id=2
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, dtype=dtype).to(device).eval()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def speed(model, prompts, batch: int, new_tokens: int, repeats: int, device: str, static: bool) -> float:
    ids = prompts[:batch].to(device)
    kwargs: dict[str, Any] = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False,
                              "pad_token_id": 0}  # fmt: skip
    if static:
        kwargs["cache_implementation"] = "static"
    best = float("inf")
    with torch.no_grad():
        model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)  # warm-up (and compilation)
        for _ in range(repeats):
            sync(device)
            start = time.perf_counter()
            model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
            sync(device)
            best = min(best, time.perf_counter() - start)
    return batch * new_tokens / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--ratio", type=float, default=0.25)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from slimkit.compress import EarlyExitConfig, FFNSkipConfig, LayerDropConfig, compress_

    if args.smoke:
        device, dtype, shape, compiled_modes = "cpu", torch.float32, SHAPE_SMOKE, [False]
    else:
        if not torch.cuda.is_available():
            sys.exit("benchmarks/gpu/ffn_skip.py needs a CUDA device (or --smoke)")
        device, dtype, shape, compiled_modes = "cuda", torch.bfloat16, SHAPE_1B, [False, True]
    dense = build(shape, device, dtype)
    gen = torch.Generator().manual_seed(0)
    calib = torch.randint(3, shape["vocab_size"], (24, 64), generator=gen)
    prompts = calib[16:, :32]
    layers = shape["num_hidden_layers"]
    cold = {"cold_start": max(1, layers // 10), "cold_end": max(1, layers // 10)}
    variants: list[tuple[str, Any, Any]] = [("dense", dense, None)]
    skip = copy.deepcopy(dense)
    report = compress_(skip, FFNSkipConfig(target_ratio=args.ratio, **cold), calib, progress=False)
    variants.append((f"ffn-skip {args.ratio:.0%}", skip, report))
    share = report.compute_fraction_saved
    for label, config in (("layer-drop", LayerDropConfig(compute_ratio=share)),
                          ("early-exit", EarlyExitConfig(compute_ratio=share))):  # fmt: skip
        model = copy.deepcopy(dense)
        variants.append((label, model, compress_(model, config, calib, progress=False)))
    rows = []
    for label, model, rep in variants:
        row: dict[str, Any] = {
            "variant": label,
            "flops_saved": 0.0 if rep is None else rep.compute_fraction_saved,
        }
        for batch in (1, 8):
            row[f"eager_b{batch}"] = speed(model, prompts, batch, args.new_tokens, args.repeats, device,
                                           static=False)  # fmt: skip
            if True in compiled_modes and label != "early-exit":
                static = compiled_speed(model, prompts, batch, args.new_tokens, args.repeats,
                                        mode="reduce-overhead")  # fmt: skip
                row[f"static_eager_b{batch}"] = static.get("eager_tokens_per_s")
                row[f"compiled_b{batch}"] = static.get("compiled_tokens_per_s")
                row[f"compile_error_b{batch}"] = static.get("error")
        rows.append(row)
    for row in rows:
        for key in [k for k in row if k.startswith(("eager_b", "compiled_b", "static_eager_b"))]:
            if row[key] and rows[0].get(key):
                row[key.replace("_b", "_speedup_b")] = row[key] / rows[0][key]
    header = [
        "variant",
        "FLOPs saved",
        *[k for k in rows[0] if k.startswith(("eager", "static", "compiled"))],
    ]
    print_table(
        header,
        [[r["variant"], f"{r['flops_saved']:.3f}", *[r.get(k, "-") for k in header[2:]]] for r in rows],
    )
    path = write_result("gpu_ffn_skip_smoke" if args.smoke else "gpu_ffn_skip", {"args": vars(args), "shape": shape,
                        "rows": rows})  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
