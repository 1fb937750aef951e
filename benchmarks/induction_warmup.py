"""Does a copy-only warm-up give the default world architecture an induction head? (issue 13 item 5)

Olsson et al., "In-context Learning and Induction Heads" (arXiv 2209.11895): a transformer with >= 2
layers learns to copy ("A B ... A" -> "B") in a phase change after a loss plateau. The reader recipes
of docs/factworld.md mixed copy documents into the world corpus and did not get there in 250-400
steps. This script asks the simpler question first: trained on nothing but repeated random token
sequences, how many steps does the default architecture (3.85 M parameters, fresh weights) need?

Each window of 256 tokens is filled with sequences of ``L ~ U[4, 16]`` (or ``U[8, 40]``) tokens drawn
from a pool of ``--pool`` token ids (0: the whole vocabulary), each written ``--repeats`` times. Every
50 steps it measures :func:`slimkit.models.reader.induction_accuracy` on world words (the copy probe's
measure; a model that copies scores well above its no-copy floor) and the training loss, whose plateau
at ``ln(pool)`` is the no-copy solution. Prints a table and writes
``benchmarks/results/induction_warmup.json``::

    python benchmarks/induction_warmup.py --lr 1.5e-3 --steps 300                       # whole vocabulary, twice
    python benchmarks/induction_warmup.py --lr 3e-3 --steps 300 --pool 200 --repeats 3   # easier: 200 ids, 3x
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--pool", type=int, default=0, help="token ids sequences draw from (0: whole vocabulary)")
    ap.add_argument("--repeats", type=int, default=2, help="times each sequence is written")
    ap.add_argument("--short", action="store_true", help="sequence length U[4, 16] instead of U[8, 40]")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out-name", default="induction_warmup")
    args = ap.parse_args()

    from slimkit.data.factworld import generate_world
    from slimkit.models.default import DEFAULT_RECIPE, build_default_architecture, default_model
    from slimkit.models.reader import induction_accuracy, world_words

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    _, tok = default_model()
    words = world_words(generate_world(DEFAULT_RECIPE.world_config()))
    model = build_default_architecture(DEFAULT_RECIPE, len(tok), tok)
    vocab = len(tok)
    first = 10  # past the special tokens
    pool = (
        list(range(first, vocab))
        if not args.pool
        else random.Random(1).sample(range(first, vocab), args.pool)
    )
    lengths = (4, 16) if args.short else (8, 40)
    rng = random.Random(0)

    def window() -> list[int]:
        out: list[int] = []
        while len(out) < args.seqlen + 1:
            seq = [rng.choice(pool) for _ in range(rng.randint(*lengths))]
            out += seq * args.repeats
        return out[: args.seqlen + 1]

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    log = []
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        batch = torch.tensor([window() for _ in range(args.batch_size)])
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, step / 20)  # 20 warm-up steps, then constant
        model.train()
        logits = model(batch[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), batch[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == args.steps:
            model.eval()
            induction, floor = induction_accuracy(model, tok, words)
            log.append(
                {
                    "step": step,
                    "loss": float(loss.detach()),
                    "induction": induction,
                    "floor": floor,
                    "wall_s": time.perf_counter() - start,
                }
            )
            print(log[-1], flush=True)
    plateau = math.log(len(pool))
    print_table(
        ["step", "loss", "no-copy plateau ln(pool)", "induction", "floor", "wall s"],
        [
            [
                r["step"],
                f"{r['loss']:.3f}",
                f"{plateau:.3f}",
                f"{r['induction']:.3f}",
                f"{r['floor']:.3f}",
                f"{r['wall_s']:.0f}",
            ]
            for r in log
        ],
    )
    print(
        f"wrote {write_result(args.out_name, {'args': vars(args), 'pool_size': len(pool), 'plateau': plateau, 'log': log})}"
    )


if __name__ == "__main__":
    main()
