"""GPU variant of the pruning benchmark: slimkit vs llm-compressor on a ~1B-parameter LLaMA-shaped model.

Run on a machine with one CUDA GPU from the benchmark environment (see prune_vs_llmcompressor.py);
the model is random-init (no download), calibration is 128 x 2048 tokens of the factworld corpus.
Writes ``benchmarks/results/gpu_prune.json`` with the card's name in ``machine.device``::

    .venv-bench/bin/python benchmarks/gpu/prune.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    import torch

    if not torch.cuda.is_available():
        sys.exit("benchmarks/gpu/prune.py needs a CUDA device")
    cmd = [
        sys.executable,
        str(HERE.parent / "prune_vs_llmcompressor.py"),
        "--models",
        "random1b",
        "--device",
        "cuda",
        "--nsamples",
        "128",
        "--seqlen",
        "2048",
        "--eval-seqlen",
        "2048",
        "--threads",
        "8",
        "--out-name",
        "gpu_prune",
        *sys.argv[1:],
    ]
    sys.exit(subprocess.call(cmd))


if __name__ == "__main__":
    main()
