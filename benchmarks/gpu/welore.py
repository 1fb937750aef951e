"""GPU benchmark of WeLore on a LLaMA-7B-shaped random-init model (as many blocks as fit).

Three measurements, each on one CUDA device, written to ``benchmarks/results/gpu_welore.json``:

1. **Decomposition**: SVD time of every decoder-block linear (4096x4096 and 4096x11008), fp32 on
   the GPU, cold cache, and the WeLore compression to ``--target-params`` (τ found by bisection).
2. **LRC-only vs full finetuning** of the compressed model with slimkit's training loop (bf16
   autocast, fp32 weights and AdamW state, batch 4 x 1024 tokens like the reference's continual
   pretraining): peak CUDA memory (``max_memory_allocated``), tokens/s, trainable parameters and
   optimizer-state bytes. The paper claims ~3x throughput and ~0.6x memory for LRC-only at 50%.
3. **Inference latency** of ``LowRankLinear`` vs the dense ``nn.Linear`` (bf16) at batch 1 (one
   decode token) and at 4096 tokens (a prefill), for several ranks of the 7B shapes: where does low
   rank actually pay? (At batch 1 the layer is memory-bound, so time follows bytes; at 4096 tokens
   it is compute-bound, so time follows FLOPs; both scale with ``k(m+n)`` vs ``mn``, but two kernel
   launches and a thin inner dimension cost extra.)

Random-init weights have flat (Marchenko–Pastur) spectra, not the heavy tails of a trained model, so
the ranks here are not WeLore's real ranks on LLaMA-7B; memory and throughput depend only on them.

    python benchmarks/gpu/welore.py [--layers 8] [--target-params 0.5] [--steps 20]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import print_table, write_result  # noqa: E402

SHAPE_7B = dict(
    hidden_size=4096,
    intermediate_size=11008,
    num_attention_heads=32,
    num_key_value_heads=32,
    vocab_size=32000,
    max_position_embeddings=2048,
)


def build_model(layers: int, device: torch.device):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(**SHAPE_7B, num_hidden_layers=layers, tie_word_embeddings=False)
    with device:
        return LlamaForCausalLM(config).eval()


def decomposition(model, target: float, device: torch.device) -> tuple[dict, object]:
    from slimkit.compress import WeLoreConfig, compress_
    from slimkit.compress.lowrank import SVD_CACHE

    SVD_CACHE.clear()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    report = compress_(model, WeLoreConfig(target_params=target), device=device, progress=True)
    torch.cuda.synchronize()
    result = {
        "total_s": time.perf_counter() - t0,
        "svd_s": report.decomposition_time_s,
        "svds": report.svd_computed,
        "tau": report.parameter,
        "param_reduction": report.param_reduction,
        "rank_reduction": report.rank_reduction,
        "lrc": report.lrc,
        "nlrc": report.nlrc,
        "model_param_reduction": report.model_param_reduction,
        "kept_ranks": report.kept_ranks,
    }
    SVD_CACHE.clear()  # the factors are as large as the model; free them before training
    return result, report


def finetune(model, mode: str, steps: int, device: torch.device) -> dict:
    import copy

    from slimkit.compress.lowrank.finetune import (
        freeze_for_lrc_finetuning_,
        measure_optimizer_state_bytes,
        unfreeze_all_,
    )
    from slimkit.train import AdamWConfig, TrainConfig, train

    model = copy.deepcopy(model).to(device)  # the CPU original is not counted in the peak
    counts = freeze_for_lrc_finetuning_(model) if mode == "lrc_only" else unfreeze_all_(model)
    cfg = TrainConfig(
        steps=steps,
        batch_size=4,
        seqlen=1024,
        warmup_steps=2,
        bf16=True,
        optimizer=AdamWConfig(lr=5e-5),
        device=str(device),
        log_every=max(1, steps // 4),
    )
    state_bytes = measure_optimizer_state_bytes(model, cfg)
    tokens = torch.randint(0, SHAPE_7B["vocab_size"], (cfg.tokens_per_step * (steps + 2),))
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode(False):
        result = train(model, tokens, cfg)
    torch.cuda.synchronize()
    out = {
        "trainable_params": counts["trainable"],
        "optimizer_state_bytes": state_bytes,
        "peak_memory_bytes": torch.cuda.max_memory_allocated(device),
        "tokens_per_s": result.tokens_per_s,
        "final_loss": result.losses[-1],
    }
    del model
    torch.cuda.empty_cache()
    return out


def time_layer(layer, x: torch.Tensor, repeats: int = 50) -> float:
    """Median milliseconds of ``layer(x)`` (CUDA events, after warm-up)."""
    with torch.no_grad():
        for _ in range(10):
            layer(x)
        times = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            layer(x)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def latency(device: torch.device) -> list[dict]:
    from slimkit.nn.lowrank import LowRankLinear

    rows = []
    for out_f, in_f in ((4096, 4096), (11008, 4096), (4096, 11008)):
        dense = torch.nn.Linear(in_f, out_f, bias=False, device=device, dtype=torch.bfloat16)
        breakeven = out_f * in_f // (out_f + in_f)
        for tokens in (1, 4096):
            x = torch.randn(tokens, in_f, device=device, dtype=torch.bfloat16)
            dense_ms = time_layer(dense, x)
            for rank in (256, 1024, breakeven // 2, breakeven):
                lowrank = LowRankLinear(in_f, out_f, rank, device=device, dtype=torch.bfloat16)
                ms = time_layer(lowrank, x)
                rows.append(
                    {
                        "shape": [out_f, in_f],
                        "tokens": tokens,
                        "rank": rank,
                        "param_ratio": rank * (in_f + out_f) / (in_f * out_f),
                        "dense_ms": dense_ms,
                        "lowrank_ms": ms,
                        "speedup": dense_ms / ms,
                    }
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8, help="decoder blocks of the 7B shape (7B has 32)")
    parser.add_argument("--target-params", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("benchmarks/gpu/welore.py needs a CUDA device")
    device = torch.device("cuda")

    lat = latency(device)
    print_table(
        ["shape", "tokens", "rank", "params ratio", "dense ms", "low-rank ms", "speedup"],
        [
            [
                f"{r['shape'][0]}x{r['shape'][1]}",
                r["tokens"],
                r["rank"],
                f"{r['param_ratio']:.3f}",
                f"{r['dense_ms']:.4f}",
                f"{r['lowrank_ms']:.4f}",
                f"{r['speedup']:.2f}",
            ]
            for r in lat
        ],
    )

    model = build_model(args.layers, device)
    decomp, _ = decomposition(model, args.target_params, device)
    model.to("cpu")  # each finetuning run trains its own GPU copy
    torch.cuda.empty_cache()
    print(
        f"\n{args.layers} blocks: WeLore {args.target_params:.0%} in {decomp['total_s']:.1f} s "
        f"({decomp['svds']} SVDs, {decomp['svd_s']:.1f} s), tau={decomp['tau']:.4f}, "
        f"{decomp['lrc']} LRC / {decomp['nlrc']} dense\n"
    )
    runs = {mode: finetune(model, mode, args.steps, device) for mode in ("lrc_only", "full")}
    lrc, full = runs["lrc_only"], runs["full"]
    ratios = {
        k: lrc[k] / full[k]
        for k in ("trainable_params", "optimizer_state_bytes", "peak_memory_bytes", "tokens_per_s")
    }
    print_table(
        ["mode", "trainable", "opt state GiB", "peak GiB", "tokens/s", "final loss"],
        [
            [
                m,
                f"{r['trainable_params']:,}",
                f"{r['optimizer_state_bytes'] / 2**30:.2f}",
                f"{r['peak_memory_bytes'] / 2**30:.2f}",
                f"{r['tokens_per_s']:,.0f}",
                f"{r['final_loss']:.4f}",
            ]
            for m, r in runs.items()
        ]
        + [
            [
                "ratio LRC/full",
                f"{ratios['trainable_params']:.3f}",
                f"{ratios['optimizer_state_bytes']:.3f}",
                f"{ratios['peak_memory_bytes']:.3f}",
                f"{ratios['tokens_per_s']:.3f}",
                "",
            ]
        ],
    )
    path = write_result(
        "gpu_welore",
        {
            "layers": args.layers,
            "decomposition": decomp,
            "finetune": runs,
            "ratios_lrc_over_full": ratios,
            "latency": lat,
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
