"""One-shot structured FFN pruning of a pretrained model (SmolLM2-135M-Instruct) and a short recovery.

1. dense: held-out perplexity (``python-docs:eval``), KICK closed-book factoid on real-world questions
   (``countries:``; containment, the instruct model answers in sentences), forward tokens/s;
2. for each neuron score (``sensitivity``: |θ·∇θ| of the LM loss; ``activation``: Minitron) remove
   ``--ratio`` (25%) of every FFN's neurons in one shot (calibrated on ``python-docs:calib``), measure again;
3. recover with ``--steps`` of full fine-tuning on ``python-docs:calib`` (AdamW, warm-up + cosine), measure again.

Prints a table and writes ``benchmarks/results/ffn_structured_smollm2.json``.

    python benchmarks/ffn_structured_smollm2.py [--ratio 0.25] [--steps 150] [--seqlen 64] [--threads 1]
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

KICK = {"data": ("countries:",), "tasks": "factoid", "chat_template": "auto", "num_fewshot": 0}


def measure(model, tok, args) -> dict[str, Any]:
    from slimkit.compress.structured import count_parameters, ffn_width
    from slimkit.evaluate import evaluate
    from slimkit.evaluate.perplexity import perplexity
    from slimkit.pipelines.idea_prune import forward_speed

    model.eval()
    ppl = perplexity(model, tok, "python-docs:eval", seqlen=256, batch_size=4, limit=args.ppl_windows).ppl
    factoid = evaluate(model, tok, suite="kick", limit=args.kick_limit, **KICK)["factoid"]
    return {
        "params": count_parameters(model),
        "ffn_width": ffn_width(model),
        "ppl": ppl,
        "factoid_contains": float(factoid["contains"]),
        "factoid_exact": float(factoid["exact_match"]),
        "tokens_per_s": forward_speed(model, len(tok), batch=4, seqlen=128, repeats=5),
    }


def recover(model, tok, args) -> dict[str, Any]:
    from slimkit.data.sources import read_documents
    from slimkit.train import AdamWConfig, TrainConfig, tokenize_documents, train

    ids = tokenize_documents(tok, read_documents("python-docs:calib"))
    cfg = TrainConfig(
        steps=args.steps,
        batch_size=4,
        seqlen=args.seqlen,
        warmup_steps=max(1, args.steps // 10),
        min_lr_ratio=0.1,
        optimizer=AdamWConfig(lr=args.lr, weight_decay=0.0),
        log_every=10,
        seed=0,
    )
    with torch.inference_mode(False):
        result = train(model, ids, cfg)
    return {
        "steps": result.steps,
        "tokens": result.tokens_seen,
        "final_loss": result.losses[-1],
        "wall_s": result.wall_time_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--ratio", type=float, default=0.25)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--seqlen", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--nsamples", type=int, default=16)
    parser.add_argument("--kick-limit", type=int, default=50)
    parser.add_argument("--ppl-windows", type=int, default=8)
    parser.add_argument("--importances", default="sensitivity,activation")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from slimkit.compress import calibration_for, compress_
    from slimkit.compress.structured import FFNStructuredConfig
    from slimkit.models import load_model

    base, tok = load_model(args.model, dtype="float32")
    rows, results = [], {"dense": measure(base, tok, args)}
    rows.append(["dense", *_row(results["dense"])])
    for importance in args.importances.split(","):
        model = copy.deepcopy(base)
        cfg = FFNStructuredConfig(prune_ratio=args.ratio, importance=importance)
        calib = calibration_for(cfg, tok, "python-docs:calib", nsamples=args.nsamples, seqlen=128, seed=0)
        t0 = time.perf_counter()
        report = compress_(model, cfg, calib, progress=False)
        pruned = {
            **measure(model, tok, args),
            "prune_s": time.perf_counter() - t0,
            "report": report.to_dict(),
        }
        rows.append([f"{importance} one-shot", *_row(pruned)])
        training = recover(model, tok, args)
        recovered = {**measure(model, tok, args), "recovery": training}
        rows.append([f"{importance} + {args.steps} steps", *_row(recovered)])
        results[importance] = {"pruned": pruned, "recovered": recovered}
    print(
        f"\n{args.model}: {args.ratio:.0%} of every FFN's neurons removed; recovery {args.steps} steps x 4 x {args.seqlen}"
    )
    print_table(["model", "params", "FFN", "ppl", "factoid contains", "factoid exact", "fwd tok/s"], rows)
    path = write_result(
        "ffn_structured_smollm2",
        {
            "args": vars(args),
            "results": results,
            "note": "2-core VM shared with other jobs: timings are contended",
        },
    )
    print(f"wrote {path}")


def _row(m: dict[str, Any]) -> list[Any]:
    return [
        m["params"],
        m["ffn_width"],
        m["ppl"],
        m["factoid_contains"],
        m["factoid_exact"],
        m["tokens_per_s"],
    ]


if __name__ == "__main__":
    main()
