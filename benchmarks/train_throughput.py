"""Training and evaluation throughput of the default factworld model, slimkit vs plain PyTorch.

Trains the default recipe's architecture (fresh init, the default world's tokenizer and corpus) for
``--steps`` steps with slimkit's loop and with a minimal hand-written PyTorch loop (same model, data,
optimizer and schedule), then measures perplexity-evaluation throughput with slimkit's evaluator and
with a plain ``model(labels=...)`` loop over the same windows. Prints a table, writes
``benchmarks/results/train_throughput.json``. The ratio column says what slimkit's machinery costs.

    python benchmarks/train_throughput.py [--steps 40] [--threads 2]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_result  # noqa: E402


def plain_train(model, token_ids, steps, batch_size, seqlen, lr, warmup, min_ratio, seed) -> float:
    """A minimal reference loop: random windows, AdamW, cosine with warm-up, clip 1.0. Returns tokens/s."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)

    def mult(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        p = (step - warmup) / max(1, steps - warmup)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, mult)
    n_windows = (token_ids.numel() - 1) // (seqlen + 1)
    model.train()
    t0 = time.perf_counter()
    for _ in range(steps):
        starts = torch.randint(0, n_windows, (batch_size,), generator=g) * (seqlen + 1)
        batch = torch.stack([token_ids[s : s + seqlen + 1] for s in starts.tolist()])
        loss = model(input_ids=batch[:, :-1], labels=batch[:, :-1]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    return steps * batch_size * seqlen / (time.perf_counter() - t0)


@torch.no_grad()
def plain_eval(model, ids: torch.Tensor, seqlen: int, batch_size: int) -> tuple[float, float]:
    n = ids.numel() // seqlen
    windows = ids[: n * seqlen].view(n, seqlen)
    t0 = time.perf_counter()
    losses = [model(input_ids=w, labels=w).loss.item() * w.shape[0] for w in windows.split(batch_size)]
    dt = time.perf_counter() - t0
    return math.exp(sum(losses) / n), n * seqlen / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from slimkit.data.factworld import WorldConfig, generate_world
    from slimkit.data.tokenizer import train_bpe_tokenizer
    from slimkit.evaluate import perplexity
    from slimkit.models.default import DEFAULT_RECIPE, build_default_architecture
    from slimkit.train import TrainConfig, tokenize_documents, train

    recipe = DEFAULT_RECIPE
    world = generate_world(WorldConfig(seed=recipe.world_seed))
    docs = world.corpus_documents()
    tok = train_bpe_tokenizer(docs, vocab_size=recipe.vocab_size)
    ids = tokenize_documents(tok, docs, separator="\n\n")  # as the default model is trained
    tcfg = TrainConfig.from_dict(
        {**recipe.train, "steps": args.steps, "checkpoint_every": 0, "warmup_steps": 5}
    )
    n_params = sum(p.numel() for p in build_default_architecture(recipe, len(tok), tok).parameters())

    model = build_default_architecture(recipe, len(tok), tok)
    result = train(model, ids, tcfg)
    slim_train = result.tokens_per_s

    model_ref = build_default_architecture(recipe, len(tok), tok)
    ref_train = plain_train(
        model_ref,
        ids,
        args.steps,
        tcfg.batch_size,
        tcfg.seqlen,
        tcfg.optimizer.lr,
        5,
        tcfg.min_lr_ratio,
        tcfg.seed,
    )

    model.eval()
    heldout = world.heldout_documents()
    t0 = time.perf_counter()
    ppl = perplexity(model, tok, heldout, seqlen=recipe.seqlen, batch_size=16)
    slim_eval = ppl.n_tokens / (time.perf_counter() - t0)
    eval_ids = tok("\n\n".join(heldout), add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    ref_ppl, ref_eval = plain_eval(model, eval_ids, recipe.seqlen, 16)

    rows = [
        ["train tokens/s", slim_train, ref_train, slim_train / ref_train],
        ["eval tokens/s (perplexity)", slim_eval, ref_eval, slim_eval / ref_eval],
    ]
    print(
        f"default factworld model: {n_params / 1e6:.2f} M parameters, seqlen {recipe.seqlen}, {args.threads} threads"
    )
    print_table(
        ["measure", "slimkit", "plain torch", "ratio"], [[r[0], r[1], r[2], f"{r[3]:.2f}x"] for r in rows]
    )
    print(
        f"perplexity after {args.steps} steps: slimkit {ppl.ppl:.3f} vs plain loop over same windows {ref_ppl:.3f}"
    )
    path = write_result(
        "train_throughput",
        {
            "params": n_params,
            "steps": args.steps,
            "threads": args.threads,
            "batch_size": tcfg.batch_size,
            "seqlen": tcfg.seqlen,
            "train_tokens_per_s": {
                "slimkit": slim_train,
                "plain_torch": ref_train,
                "ratio": slim_train / ref_train,
            },
            "eval_tokens_per_s": {
                "slimkit": slim_eval,
                "plain_torch": ref_eval,
                "ratio": slim_eval / ref_eval,
            },
            "perplexity": {"slimkit": ppl.ppl, "plain_torch": ref_ppl},
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
