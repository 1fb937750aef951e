"""The Gram term of GPTQ / SparseGPT: ``x^T x`` as one product vs from its upper blocks.

``slimkit.compress.stats.symmetric_gram`` builds ``x^T x`` from the products ``x_i^T x_j`` (``i <= j``)
of ``k`` column blocks and mirrors the rest: ``(k + 1) / (2k)`` of the multiply-adds. For the chunk
shapes the calibration runner feeds (tokens per chunk × input width of the 85M LLaMA and SmolLM2-135M),
this prints the time of the full product, of two blocks, and of the default block count
(``gram_blocks``: blocks about 384 wide), and whether each is bitwise the full product, at 1 and 2
threads; JSON in ``benchmarks/results/gram.json``.

    python benchmarks/gram.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_result  # noqa: E402
from slimkit.compress.stats import gram_blocks, symmetric_gram  # noqa: E402


def best_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", default="2048,4096", help="tokens per chunk (8 x 256, 8 x 512)")
    ap.add_argument("--widths", default="576,768,1536,2048", help="input widths")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    rows, records = [], []
    for threads in map(int, args.threads.split(",")):
        torch.set_num_threads(threads)
        for n in map(int, args.tokens.split(",")):
            for d in map(int, args.widths.split(",")):
                x = torch.randn(n, d, generator=torch.Generator().manual_seed(0))
                k = gram_blocks(d)
                full_product = x.T @ x
                two_equal = torch.equal(full_product, symmetric_gram(x, 2))
                equal = torch.equal(full_product, symmetric_gram(x, k))
                full = best_ms(lambda x=x: x.T @ x, args.repeats)
                two = best_ms(lambda x=x: symmetric_gram(x, 2), args.repeats)
                sym = best_ms(lambda x=x, k=k: symmetric_gram(x, k), args.repeats)
                records.append(
                    {
                        "threads": threads,
                        "tokens": n,
                        "width": d,
                        "blocks": k,
                        "full_ms": full,
                        "two_blocks_ms": two,
                        "sym_ms": sym,
                        "bitwise_two": two_equal,
                        "bitwise": equal,
                    }
                )
                rows.append(
                    [
                        threads,
                        n,
                        d,
                        full,
                        two,
                        k,
                        sym,
                        f"{full / sym:.2f}x",
                        "yes" if equal and two_equal else "no",
                    ]
                )
    print_table(
        [
            "threads",
            "tokens",
            "width",
            "x^T x ms",
            "2 blocks ms",
            "k",
            "k blocks ms",
            "speedup",
            "bitwise equal",
        ],
        rows,
    )
    print(f"wrote {write_result('gram', {'args': vars(args), 'runs': records})}")


if __name__ == "__main__":
    main()
