"""Worker for test_qgalore's DDP test: ``torchrun --nproc-per-node 2 qgalore_ddp_worker.py OUT KIND``.

Each rank trains the same tiny LLaMA (same seed) on its own data under DDP (gloo) with GaLore or
Q-GaLore (INT8 weights, stochastic rounding) and saves its final state_dict and SVD counts to
``OUT/rank{r}.pt``; the test checks the ranks are identical.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from transformers import LlamaConfig, LlamaForCausalLM

from slimkit.nn.int8 import prepare_int8_training_
from slimkit.optim import GaLoreAdamW, QGaLoreAdamW, galore_param_groups


def main(out: Path, kind: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)  # same init and the same stochastic-rounding / randomized-SVD draws on every rank
    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    model = LlamaForCausalLM(cfg)
    if kind == "q-galore":
        prepare_int8_training_(model, group_size=32)
        cls, extra = QGaLoreAdamW, {"proj_group_size": 64}
    else:
        cls, extra = GaLoreAdamW, {"svd": "randomized"}
    opt = cls(galore_param_groups(model, rank=8, update_proj_gap=2, **extra), lr=3e-3)
    ddp = DistributedDataParallel(model)
    data = torch.Generator().manual_seed(100 + rank)  # every rank sees different tokens
    for _ in range(5):
        x = torch.randint(0, 64, (2, 12), generator=data)
        opt.zero_grad()
        ddp(input_ids=x, labels=x).loss.backward()
        opt.step()
    torch.save({"state": model.state_dict(), "svd": opt.svd_counts(model)}, out / f"rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
