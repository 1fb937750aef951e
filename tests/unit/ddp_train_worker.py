"""Worker for test_ddp: ``torchrun --nproc-per-node 2 ddp_train_worker.py OUT MODE``.

* ``train``: the tiny LLaMA of :func:`tiny_setup` through :func:`slimkit.train.train` under DDP, once
  uninterrupted (``OUT/full``) and once stopped after 3 steps and resumed (``OUT/resumed``); every rank
  saves both final state_dicts and losses to ``OUT/train_rank{r}.pt``.
* ``idea``: :func:`slimkit.pipelines.idea_prune.run_idea_prune` with its baselines on a tiny config;
  every rank records the hash and FFN width of each model it hands to ``_save`` (rank 0 alone writes
  it) in ``OUT/idea_rank{r}.json``.
* ``disagree``: each rank checks different kept indices with ``check_same_on_all_ranks`` and writes
  the error it got (or ``none``) to ``OUT/disagree_rank{r}.txt``; then the same indices, which pass.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from transformers import LlamaConfig, LlamaForCausalLM

from slimkit.train import TrainConfig, train

STEPS = 6


def tiny_setup() -> tuple[LlamaForCausalLM, torch.Tensor, TrainConfig]:
    """The model, corpus and config both the workers and the one-process reference use."""
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    model = LlamaForCausalLM(cfg)
    tokens = torch.randint(0, 64, (2000,), generator=torch.Generator().manual_seed(1))
    train_cfg = TrainConfig(
        steps=STEPS, batch_size=4, grad_accum=2, seqlen=16, warmup_steps=1, checkpoint_every=2, log_every=1,
        optimizer={"lr": 3e-3},
    )  # fmt: skip
    return model, tokens, train_cfg


def state_hash(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def run_train(out: Path, rank: int) -> None:
    model, tokens, cfg = tiny_setup()
    full = train(model, tokens, cfg, out / "full")
    resumed_model, _, _ = tiny_setup()
    train(resumed_model, tokens, cfg, out / "resumed", max_steps_this_run=3)
    resumed_model, _, _ = tiny_setup()
    again = train(resumed_model, tokens, cfg, out / "resumed", resume=True)
    torch.save(
        {
            "full": model.state_dict(),
            "resumed": resumed_model.state_dict(),
            "losses": full.losses,
            "resumed_losses": again.losses,
        },
        out / f"train_rank{rank}.pt",
    )


def run_idea(out: Path, rank: int, tok_dir: str, text: str) -> None:
    from slimkit.compress.structured import ffn_width
    from slimkit.pipelines import idea_prune
    from slimkit.pipelines.idea_prune import IdeaPruneConfig, run_idea_prune

    seen: dict[str, dict] = {}
    save = idea_prune._save

    def recording_save(model, tokenizer, stage, metadata):
        seen[str(Path(stage).relative_to(out / "run"))] = {
            "hash": state_hash(model),
            "width": ffn_width(model),
        }
        return save(model, tokenizer, stage, metadata)

    idea_prune._save = recording_save
    cfg = IdeaPruneConfig(
        model={
            "init": {
                "family": "llama", "hidden_size": 32, "intermediate_size": 16, "num_hidden_layers": 2,
                "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 64,
            }
        },
        tokenizer=tok_dir,
        data=text,
        enlarge=2.0,
        total_tokens=12 * 4 * 16,
        train={"batch_size": 4, "seqlen": 16, "warmup_steps": 2, "optimizer": {"lr": 3e-3},
               "checkpoint_every": 4, "log_every": 4},
        eval={"ppl": text, "factoid": None, "seqlen": 16},
        out=str(out / "run"),
    )  # fmt: skip
    comparison = run_idea_prune(cfg, baselines=True)
    (out / f"idea_rank{rank}.json").write_text(json.dumps({"saved": seen, "comparison": comparison}))


def run_disagree(out: Path, rank: int) -> None:
    from slimkit.core.distributed import check_same_on_all_ranks
    from slimkit.core.errors import SlimkitError

    check_same_on_all_ranks([torch.tensor([0, 2, 5]), torch.tensor([1, 3, 4])], "the same kept indices")
    try:  # the same values in another order, as a rank with a different sort would produce
        check_same_on_all_ranks([torch.tensor([0, 2, 5] if rank == 0 else [0, 5, 2])], "the kept neurons")
        message = "none"
    except SlimkitError as e:
        message = str(e)
    (out / f"disagree_rank{rank}.txt").write_text(message)


def main(out: Path, mode: str, *rest: str) -> None:
    if mode in ("train", "disagree"):
        dist.init_process_group("gloo")  # train() joins a group the caller made ...
        try:
            (run_train if mode == "train" else run_disagree)(out, dist.get_rank())
        finally:
            dist.destroy_process_group()
    else:  # ... and run_idea_prune makes its own from torchrun's environment
        import os

        run_idea(out, int(os.environ["RANK"]), *rest)


if __name__ == "__main__":
    main(Path(sys.argv[1]), *sys.argv[2:])
