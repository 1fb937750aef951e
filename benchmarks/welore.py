"""WeLore vs uniform-rank SVD on the default factworld model (CPU), and LRC-only vs full finetuning.

1. Decomposition: time to SVD every decoder-block linear (cold cache), and a second pass (warm).
2. For 30/50/70% parameter reduction of the decoder-block linears: WeLore (min_ratio 0.5) and
   uniform SVD at the same budget — achieved reductions, LRC count, held-out perplexity and world
   factoid exact match (200 questions), beside the dense model.
3. On the 50% WeLore model: LRC-only vs full finetuning with slimkit's training loop for the same
   steps — trainable parameters, optimizer-state bytes (measured), tokens/s, loss, perplexity after.

Prints tables and writes ``benchmarks/results/welore.json``.

    python benchmarks/welore.py [--threads 1] [--steps 40] [--lr 5e-5] [--factoid-limit 200]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_result  # noqa: E402


def evaluate_model(model, tok, ppl_data: str, factoid_limit: int) -> dict[str, float]:
    from slimkit.evaluate import evaluate

    model.eval()
    ppl = evaluate(model, tok, suite="ppl", data=ppl_data, seqlen=128)["ppl"]["perplexity"]
    factoid = evaluate(model, tok, suite="factoid", limit=factoid_limit)["factoid"]["exact_match"]
    return {"perplexity": ppl, "factoid_exact_match": factoid}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reductions", default="0.3,0.5,0.7")
    parser.add_argument("--steps", type=int, default=40, help="finetuning steps (each 8 x 128 tokens)")
    parser.add_argument("--lr", type=float, default=5e-5, help="finetuning peak lr (the reference's 5e-5)")
    parser.add_argument("--factoid-limit", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from slimkit.compress import SVDUniformConfig, WeLoreConfig, compress_
    from slimkit.compress.lowrank import SVD_CACHE
    from slimkit.compress.lowrank.finetune import (
        freeze_for_lrc_finetuning_,
        measure_optimizer_state_bytes,
        unfreeze_all_,
    )
    from slimkit.compress.lowrank.handler import collect_spectra, select_lowrank_targets
    from slimkit.data.factworld import DOCUMENT_SEPARATOR
    from slimkit.data.sources import read_documents
    from slimkit.models.default import default_model, default_world_data
    from slimkit.train import AdamWConfig, TrainConfig, tokenize_documents, train

    dense, tok = default_model()
    ppl_data = default_world_data("ppl")

    # 1. decomposition time
    SVD_CACHE.clear()
    cfg = WeLoreConfig()
    targets = select_lowrank_targets(dense, cfg)
    t0 = time.perf_counter()
    collect_spectra(targets, cfg, None, progress=False)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    collect_spectra(targets, cfg, None, progress=False)
    warm = time.perf_counter() - t0
    shapes = sorted({tuple(m.weight.shape) for m in targets.values()})
    print(f"decomposition: {len(targets)} matrices {shapes}: cold {cold:.3f} s, warm (cache) {warm:.3f} s\n")

    # 2. WeLore vs uniform SVD
    rows, sweep = [], []
    base = evaluate_model(dense, tok, ppl_data, args.factoid_limit)
    rows.append(
        ["dense", "-", "-", "-", "-", f"{base['perplexity']:.3f}", f"{base['factoid_exact_match']:.3f}"]
    )
    sweep.append({"method": "dense", **base})
    for reduction in [float(r) for r in args.reductions.split(",")]:
        for config in (WeLoreConfig(target_params=reduction), SVDUniformConfig(target_params=reduction)):
            model = copy.deepcopy(dense)
            report = compress_(model, config, progress=False)
            metrics = evaluate_model(model, tok, ppl_data, args.factoid_limit)
            entry = {
                "method": report.method,
                "target_params": reduction,
                "param_reduction": report.param_reduction,
                "rank_reduction": report.rank_reduction,
                "model_param_reduction": report.model_param_reduction,
                "lrc": report.lrc,
                "parameter": report.parameter,
                "mean_spectral_error": report.mean_spectral_error,
                "compress_time_s": report.total_time_s,
                **metrics,
            }
            sweep.append(entry)
            rows.append(
                [
                    f"{report.method} {reduction:.0%}",
                    f"{report.param_reduction:.4f}",
                    f"{report.rank_reduction:.4f}",
                    f"{report.lrc}/{report.lrc + report.nlrc}",
                    f"{report.mean_spectral_error:.4f}",
                    f"{metrics['perplexity']:.3f}",
                    f"{metrics['factoid_exact_match']:.3f}",
                ]
            )
    print_table(["variant", "param red.", "rank red.", "LRC", "spec. err", "ppl", "factoid EM"], rows)

    # 3. LRC-only vs full finetuning of the 50% WeLore model
    train_cfg = TrainConfig(
        steps=args.steps,
        batch_size=8,
        seqlen=128,
        warmup_steps=min(5, args.steps),
        optimizer=AdamWConfig(lr=args.lr),
        log_every=max(1, args.steps // 4),
    )
    # the default model was trained on documents joined by a blank line; finetune on the same stream
    token_ids = tokenize_documents(tok, read_documents("world:corpus"), separator=DOCUMENT_SEPARATOR)
    compressed = copy.deepcopy(dense)
    compress_(compressed, WeLoreConfig(target_params=0.5), progress=False)
    before = evaluate_model(compressed, tok, ppl_data, args.factoid_limit)
    ft_rows, finetune = [], {}
    for mode in ("lrc_only", "full"):
        model = copy.deepcopy(compressed)
        counts = freeze_for_lrc_finetuning_(model) if mode == "lrc_only" else unfreeze_all_(model)
        state_bytes = measure_optimizer_state_bytes(model, train_cfg)
        with torch.inference_mode(False):
            result = train(model, token_ids, train_cfg)
        after = evaluate_model(model, tok, ppl_data, args.factoid_limit)
        finetune[mode] = {
            "trainable_params": counts["trainable"],
            "frozen_params": counts["frozen"],
            "optimizer_state_bytes": state_bytes,
            "tokens_per_s": result.tokens_per_s,
            "first_loss": result.losses[0],
            "final_loss": result.losses[-1],
            **after,
        }
        ft_rows.append(
            [
                mode,
                f"{counts['trainable']:,}",
                f"{state_bytes / 2**20:.2f}",
                f"{result.tokens_per_s:,.0f}",
                f"{result.losses[-1]:.4f}",
                f"{after['perplexity']:.3f}",
                f"{after['factoid_exact_match']:.3f}",
            ]
        )
    lrc, full = finetune["lrc_only"], finetune["full"]
    ratios = {
        "trainable_params": lrc["trainable_params"] / full["trainable_params"],
        "optimizer_state_bytes": lrc["optimizer_state_bytes"] / full["optimizer_state_bytes"],
        "tokens_per_s": lrc["tokens_per_s"] / full["tokens_per_s"],
    }
    ft_rows.append(
        [
            "ratio LRC/full",
            f"{ratios['trainable_params']:.3f}",
            f"{ratios['optimizer_state_bytes']:.3f}",
            f"{ratios['tokens_per_s']:.3f}",
            "",
            "",
            "",
        ]
    )
    print(
        f"\nfinetuning WeLore 50% for {args.steps} steps (before: ppl {before['perplexity']:.3f}, "
        f"factoid {before['factoid_exact_match']:.3f})"
    )
    print_table(
        ["mode", "trainable", "opt state MiB", "tokens/s", "final loss", "ppl", "factoid EM"], ft_rows
    )

    path = write_result(
        "welore",
        {
            "decomposition": {"matrices": len(targets), "shapes": shapes, "cold_s": cold, "warm_s": warm},
            "sweep": sweep,
            "finetune": {
                "train_config": train_cfg.to_dict(),
                "before": before,
                **finetune,
                "ratios_lrc_over_full": ratios,
            },
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
