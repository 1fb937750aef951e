"""The cost of FFN-skip's gate, counted rather than timed: aten ops and host syncs per greedy decode.

Wall time on a shared 2-core machine moves by ±30% between runs, more than the gate costs; the number
of aten ops a decode launches, and how many of them read a value back to the host (``item``,
``nonzero``, ``_local_scalar_dense``), do not move. The default world model, dense and with FFN-skip at
a fixed τ (0.966209, the τ calibrated for 25% at the cold settings of benchmarks/ffn_skip.py), decodes
32 tokens after 32-token prompts at batch 1 and 8 under ``torch.profiler``. Run it against another
checkout's ``src`` (``PYTHONPATH=../other/src``) to compare two versions of the gate.

    PYTHONPATH=src python benchmarks/ffn_skip_gate.py [--label NAME]

Writes ``benchmarks/results/ffn_skip_gate[_LABEL].json``.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_result  # noqa: E402

SYNCS = ("aten::item", "aten::nonzero", "aten::_local_scalar_dense")


def count_ops(model, ids: torch.Tensor, new_tokens: int) -> dict[str, int]:
    from torch.profiler import ProfilerActivity, profile
    from transformers import GenerationConfig

    config = GenerationConfig(
        max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, num_beams=1, pad_token_id=0
    )
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config)
    events = prof.key_averages()
    return {
        "aten_ops": sum(e.count for e in events if e.key.startswith("aten::")),
        "host_reads": sum(e.count for e in events if e.key in SYNCS),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="")
    parser.add_argument("--threshold", type=float, default=0.966209)
    parser.add_argument("--new-tokens", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from slimkit.compress import FFNSkipConfig, compress_
    from slimkit.models.default import default_model
    from slimkit.nn.ffn_skip import reset_skip_stats, skip_stats

    dense, _ = default_model()
    dense.eval()
    ids = torch.randint(3, dense.config.vocab_size, (8, 32), generator=torch.Generator().manual_seed(0))
    skip = copy.deepcopy(dense)
    compress_(skip, FFNSkipConfig(threshold=args.threshold, cold_end=0), None, progress=False)
    rows = []
    for batch in (1, 8):
        base = count_ops(dense, ids[:batch], args.new_tokens)
        reset_skip_stats(skip)
        gated = count_ops(skip, ids[:batch], args.new_tokens)
        rows.append(
            {
                "batch": batch,
                "dense": base,
                "ffn_skip": gated,
                "skip_ratio": skip_stats(skip)["skip_ratio"],
                "extra_aten_ops": gated["aten_ops"] - base["aten_ops"],
                "extra_host_reads": gated["host_reads"] - base["host_reads"],
            }
        )
    print_table(
        ["batch", "skip ratio", "aten ops dense", "aten ops ffn-skip", "extra", "extra host reads"],
        [
            [r["batch"], f"{r['skip_ratio']:.3f}", r["dense"]["aten_ops"], r["ffn_skip"]["aten_ops"],
             f"{r['extra_aten_ops']:+d}", f"{r['extra_host_reads']:+d}"]
            for r in rows
        ],
    )  # fmt: skip
    name = "ffn_skip_gate" + (f"_{args.label}" if args.label else "")
    print(f"wrote {write_result(name, {'args': vars(args), 'rows': rows})}")


if __name__ == "__main__":
    main()
