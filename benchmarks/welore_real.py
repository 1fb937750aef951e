"""WeLore and uniform SVD without fine-tuning on a real model: how fast does perplexity go?

For each model and each parameter reduction of the decoder-block linears, both low-rank methods
(data-free; the SVDs are cached, so each matrix is decomposed once per process) are applied to a
fresh copy of the model; the table gives the achieved reduction, the number of factored matrices
(LRC), their mean relative Frobenius error ``‖W − W_k‖ / ‖W‖`` (by role: a flat spectrum means a large
error at any rank cut) and the perplexity on the model's held-out text, beside the dense model.

    python benchmarks/welore_real.py [--models smollm2-135m,default] [--reductions 0.05,0.1,0.2,0.3]

Perplexity: ``python-docs:eval`` for a real model, ``world:heldout`` for the world's default model,
windows of ``--seqlen`` tokens (first ``--limit``). Writes ``benchmarks/results/welore_real.json``.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_result  # noqa: E402

EVAL_DATA = {"default": "world:heldout"}  # everything else is a real model: Python's documentation


def role_errors(report) -> dict[str, float]:
    """Mean relative Frobenius error of the factored matrices, by the last name component (q_proj, ...)."""
    errors: dict[str, list[float]] = defaultdict(list)
    for m in report.matrices:
        if m.factored:
            errors[m.name.rsplit(".", 1)[-1]].append(m.spectral_error)
    return {role: sum(v) / len(v) for role, v in sorted(errors.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2-135m,default")
    parser.add_argument("--reductions", default="0.05,0.1,0.2,0.3")
    parser.add_argument("--seqlen", type=int, default=256)
    parser.add_argument("--limit", type=int, default=8, help="perplexity windows")
    parser.add_argument("--tolerance", type=float, default=0.02, help="allowed distance from each target")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import slimkit
    from slimkit.compress import compress_
    from slimkit.compress.lowrank import SVDUniformConfig, WeLoreConfig
    from slimkit.evaluate import perplexity
    from slimkit.models import default_model

    rows, records = [], []
    for spec in args.models.split(","):
        dense, tok = default_model() if spec == "default" else slimkit.load_model(spec)
        data = EVAL_DATA.get(spec, "python-docs:eval")
        seqlen = min(args.seqlen, dense.config.max_position_embeddings)
        dense_ppl = perplexity(dense, tok, data, seqlen=seqlen, limit=args.limit).ppl
        rows.append([spec, "dense", "0", "-", "-", "-", f"{dense_ppl:.2f}"])
        records.append({"model": spec, "method": "dense", "ppl": dense_ppl, "eval_data": data})
        for target in (float(x) for x in args.reductions.split(",")):
            for name, cls in (("welore", WeLoreConfig), ("svd-uniform", SVDUniformConfig)):
                model = copy.deepcopy(dense)
                start = time.perf_counter()
                report = compress_(model, cls(target_params=target, tolerance=args.tolerance), progress=False)
                seconds = time.perf_counter() - start
                ppl = perplexity(model, tok, data, seqlen=seqlen, limit=args.limit).ppl
                errors = role_errors(report)
                mean_error = report.mean_spectral_error * len(report.matrices) / max(report.lrc, 1)
                rows.append(
                    [
                        spec,
                        name,
                        f"{target:g}",
                        f"{report.param_reduction:.3f}",
                        f"{report.lrc}/{report.lrc + report.nlrc}",
                        f"{mean_error:.3f}",
                        f"{ppl:.4g}",
                    ]
                )
                records.append(
                    {
                        "model": spec,
                        "method": name,
                        "target_params": target,
                        "param_reduction": report.param_reduction,
                        "lrc": report.lrc,
                        "nlrc": report.nlrc,
                        "mean_error_of_factored": mean_error,
                        "error_by_role": errors,
                        "parameter": report.parameter,
                        "ppl": ppl,
                        "eval_data": data,
                        "seqlen": seqlen,
                        "windows": args.limit,
                        "compress_s": seconds,
                    }
                )
                print(rows[-1], flush=True)
    print_table(
        ["model", "method", "target", "param red.", "LRC", "mean error (LRC)", "perplexity"],
        rows,
    )
    write_result("welore_real", {"threads": args.threads, "records": records})


if __name__ == "__main__":
    main()
