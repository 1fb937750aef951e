"""RTN vs GPTQ vs AWQ at 8/4/3 bits on one model: perplexity, KL from the dense model, bits per weight, time.

Perplexity alone can mislead on the world's held-out text: its subjects are uniform where training is
Zipf-distributed (the evaluation-fidelity issue), so noise that flattens the model's prior can *lower* it.
The mean token-level ``KL(p_dense || p_quantized)`` of the next-token distributions on the same text
measures how far quantization moved the model, whichever way perplexity goes.

    python benchmarks/quant_quality.py                              # the default world model, group 16
    python benchmarks/quant_quality.py --model smollm2-135m --group-size 64 --bits 4,3

Prints a table and writes ``benchmarks/results/quant_quality[_<model>].json``.
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


def mean_kl(dense: torch.nn.Module, model: torch.nn.Module, ids: torch.Tensor, batch: int = 4) -> float:
    """Mean over tokens of ``KL(p_dense || p_model)`` ``[windows, seqlen]`` ids."""
    total, count = 0.0, 0
    with torch.no_grad():
        for chunk in ids.split(batch):
            p = torch.log_softmax(dense(chunk).logits.float(), -1)
            q = torch.log_softmax(model(chunk).logits.float(), -1)
            total += float((p.exp() * (p - q)).sum(-1).sum())
            count += chunk.numel()
    return total / count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--methods", default="rtn,gptq,awq")
    ap.add_argument("--bits", default="8,4,3")
    ap.add_argument("--group-size", default="16", help="columns per group, or `channel`")
    ap.add_argument(
        "--calib", default=None, help="calibration text (default: world corpus / python-docs:calib)"
    )
    ap.add_argument(
        "--data", default=None, help="evaluation text (default: world held-out / python-docs:eval)"
    )
    ap.add_argument("--nsamples", type=int, default=64)
    ap.add_argument("--seqlen", type=int, default=128)
    ap.add_argument("--kl-windows", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from slimkit.cli.common import resolve_model
    from slimkit.compress import build_config, calibration_for, compress_
    from slimkit.data.sources import read_documents
    from slimkit.evaluate import perplexity

    world = args.model == "default"
    calib_source = args.calib or ("world:corpus" if world else "python-docs:calib")
    data = args.data
    if data is None:
        from slimkit.models.default import default_world_data

        data = default_world_data("ppl") if world else "python-docs:eval"
    dense, tok, _ = resolve_model(args.model)
    eval_seqlen = 128 if world else 256
    text_ids = tok("\n\n".join(read_documents(data)), add_special_tokens=False)["input_ids"]
    windows = min(args.kl_windows, len(text_ids) // eval_seqlen)
    kl_ids = torch.tensor(text_ids[: windows * eval_seqlen]).reshape(windows, eval_seqlen)
    group = args.group_size if args.group_size == "channel" else int(args.group_size)
    calib = calibration_for(
        build_config("gptq", group_size=group),
        tok,
        calib_source,
        nsamples=args.nsamples,
        seqlen=args.seqlen,
        model=dense,
    )
    dense_ppl = perplexity(dense, tok, data, seqlen=eval_seqlen).ppl
    records = [
        {"method": "dense", "bits": 32, "ppl": dense_ppl, "kl": 0.0, "bits_per_weight": 32.0, "time_s": 0.0}
    ]
    rows = [["dense", "-", "32.000", f"{dense_ppl:.4f}", "0", "-"]]
    for method in args.methods.split(","):
        for bits in (int(b) for b in args.bits.split(",")):
            # 8 bits: one scale per output channel (the groups buy nothing there)
            cfg = build_config(method, bits=bits, group_size="channel" if bits == 8 else group)
            model = copy.deepcopy(dense)
            start = time.perf_counter()
            report = compress_(model, cfg, calib, progress=False)
            elapsed = time.perf_counter() - start
            ppl = perplexity(model, tok, data, seqlen=eval_seqlen).ppl
            kl = mean_kl(dense, model, kl_ids)
            records.append(
                {
                    "method": method,
                    "bits": bits,
                    "group_size": cfg.group_size,
                    "ppl": ppl,
                    "kl": kl,
                    "bits_per_weight": report.bits_per_weight,
                    "mean_weight_error": report.mean_weight_error,
                    "time_s": elapsed,
                }
            )
            rows.append(
                [
                    method,
                    str(bits),
                    f"{report.bits_per_weight:.3f}",
                    f"{ppl:.4f}",
                    f"{kl:.5f}",
                    f"{elapsed:.1f}",
                ]
            )
            print(f"done {method} {bits}", flush=True)
            del model
    print_table(["method", "bits", "bits/weight", "ppl", "KL vs dense", "time s"], rows)
    name = "quant_quality" if world else f"quant_quality_{args.model.replace('-', '_')}"
    path = write_result(
        name,
        {
            "model": args.model,
            "calib": calib_source,
            "calib_coverage": str(calib.coverage),
            "data": str(data),
            "nsamples": args.nsamples,
            "seqlen": args.seqlen,
            "eval_seqlen": eval_seqlen,
            "kl_windows": windows,
            "records": records,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
