"""GPU benchmark of IDEA Prune at ~100M parameters: IDEA vs from scratch vs naive at one token budget.

A prepared script for one CUDA device; it has not been run in this repository (the development machine
has no GPU). The target is a 12-block LLaMA (hidden 768, 12 heads, FFN 2048, 8192-token BPE vocabulary:
~98M parameters); the enlarged model has 2.6x the FFN width (5325, ~195M parameters). Each pipeline trains
on ``--total-tokens`` (default 200M) predicted tokens of ``--data`` (a local text source; the built-in
world corpus is far too small at this scale and is only the fallback), bf16 autocast, batch 32 x 512.
The comparison (held-out perplexity on ``--eval``, factoid accuracy when the data is the world, and forward
speed of the pruned model vs the enlarged one, which the pipeline's evaluation measures on the CPU) is written to
``benchmarks/results/gpu_idea_prune.json``; runs go to ``benchmarks/.work/gpu_idea_prune/seed*``
(``--resume`` continues them).

    python benchmarks/gpu/idea_prune.py --data corpus.jsonl --eval heldout.jsonl [--seeds 0,1,2] \\
        [--total-tokens 200000000] [--resume]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import write_result  # noqa: E402

WORK = Path(__file__).resolve().parent.parent / ".work" / "gpu_idea_prune"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="world:corpus", help="training text source")
    parser.add_argument("--eval", default="world:heldout", help="held-out text source for perplexity")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--total-tokens", type=int, default=200_000_000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--lr", type=float, default=6e-4)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu/idea_prune.py needs a CUDA device")

    from slimkit.pipelines.idea_prune import IdeaPruneConfig, run_idea_prune

    world = args.data.startswith("world:")
    runs = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        cfg = IdeaPruneConfig(
            model={
                "init": {
                    "family": "llama", "hidden_size": 768, "intermediate_size": 2048, "num_hidden_layers": 12,
                    "num_attention_heads": 12, "num_key_value_heads": 12, "max_position_embeddings": 2 * args.seqlen,
                }
            },
            tokenizer={"train": {"vocab_size": 8192}},
            data=args.data,
            enlarge=2.6,
            total_tokens=args.total_tokens,
            train={
                "batch_size": args.batch_size, "seqlen": args.seqlen, "warmup_steps": 500, "min_lr_ratio": 0.1,
                "optimizer": {"lr": args.lr, "betas": [0.9, 0.95], "weight_decay": 0.1}, "bf16": True,
                "device": "cuda", "checkpoint_every": 1000, "log_every": 50, "seed": seed,
            },
            eval={"ppl": args.eval, "factoid": "world" if world else None, "seqlen": args.seqlen, "speed_batch": 16},
            out=str(WORK / f"seed{seed}"),
        )  # fmt: skip
        start = time.perf_counter()
        runs[seed] = run_idea_prune(cfg, baselines=True, resume=args.resume)
        runs[seed]["wall_s"] = time.perf_counter() - start
    summary = {}
    for name in ("idea", "scratch", "naive"):
        ppls = [r["pipelines"][name]["metrics"]["ppl"] for r in runs.values()]
        summary[name] = {"ppl_mean": statistics.fmean(ppls), "ppl_std": statistics.pstdev(ppls)}
        print(f"{name:8s} ppl {summary[name]['ppl_mean']:.3f} ± {summary[name]['ppl_std']:.3f}")
    write_result(
        "gpu_idea_prune",
        {"args": vars(args), "summary": summary, "runs": {str(k): v for k, v in runs.items()}},
    )


if __name__ == "__main__":
    main()
