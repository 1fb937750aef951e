"""Memory and speed of AdamW, GaLore and Q-GaLore on the GaLore paper's 60M LLaMA shape (CPU).

GaLore (arXiv 2403.03507) / Q-GaLore (arXiv 2407.08296). The 60M shape (hidden 512, intermediate
1376, 8 heads, 8 layers, untied head) with the default world's 2048-token BPE, trained from a fresh
init on the world corpus for ``--steps`` steps of ``--batch`` x 256 tokens with each optimizer, each
in its own subprocess so the peak RSS is that optimizer's. Per method: bytes of weights (parameters +
buffers, INT8 codes and their scales for Q-GaLore), of gradients resident after backward, of optimizer
state (moments, projections); peak RSS; the first step's time (it holds the SVDs), the steady
tokens/s over the other steps; the last-step train loss and the held-out loss (default world
``heldout.txt``). Then the subspace-refresh time of one 2048 x 5461 matrix (the LLaMA-1B MLP shape)
with the full SVD and the randomized one (``torch.svd_lowrank``), rank 512, and the fraction of the
gradient's energy each subspace keeps. Prints tables, writes ``benchmarks/results/optim_memory.json``.

    OMP_NUM_THREADS=1 python benchmarks/optim_memory.py [--steps 12] [--batch 4] [--threads 1] \
        [--methods adamw galore q-galore q-galore-layerwise q-galore-layerwise-stagger] [--out-name optim_memory]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_result  # noqa: E402

SHAPE = dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=8, num_attention_heads=8)
SEQLEN = 256
METHODS = ("adamw", "galore", "q-galore", "q-galore-layerwise", "q-galore-layerwise-stagger")
STAGGER = 4  # steps the "-stagger" run spreads its first SVDs over


def optimizer_config(method: str) -> Any:
    """The paper's 60M settings: AdamW lr 1e-3; GaLore rank 128, gap 200, scale 0.25, lr 0.01;
    Q-GaLore the same with lr 0.015, INT4 projections, INT8 weights (group 32 divides 512 and 1376);
    ``-stagger`` spreads the first SVDs over ``STAGGER`` steps (``refresh_stagger``)."""
    from slimkit.optim import GaLoreConfig, QGaLoreConfig
    from slimkit.train import AdamWConfig

    common = dict(rank=128, update_proj_gap=200, scale=0.25)
    if method == "adamw":
        return AdamWConfig(lr=1e-3, betas=(0.9, 0.999), weight_decay=0.0)
    if method == "galore":
        return GaLoreConfig(lr=0.01, **common)
    return QGaLoreConfig(
        lr=0.015,
        weight_group_size=32,
        layerwise="layerwise" in method,
        refresh_stagger=STAGGER if method.endswith("stagger") else 0,
        **common,
    )


def tensor_bytes(tensors: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def worker(method: str, steps: int, batch: int, seed: int) -> dict[str, Any]:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from slimkit.data.factworld import DOCUMENT_SEPARATOR
    from slimkit.models.default import default_model_dir, default_world_dir
    from slimkit.train import tokenize_documents
    from slimkit.train.optim import build_optimizer
    from slimkit.train.schedules import cosine_schedule

    tok = AutoTokenizer.from_pretrained(default_model_dir())  # the tokenizer only, not the model
    world = default_world_dir()
    docs = (world / "corpus.txt").read_text().split(DOCUMENT_SEPARATOR)
    ids = tokenize_documents(tok, docs, separator=DOCUMENT_SEPARATOR)
    held = tokenize_documents(tok, [(world / "heldout.txt").read_text()])
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        num_key_value_heads=SHAPE["num_attention_heads"],
        max_position_embeddings=SEQLEN,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        **SHAPE,
    )
    model = LlamaForCausalLM(config)
    n_params = sum(p.numel() for p in model.parameters())
    cfg = optimizer_config(method)
    opt = build_optimizer(model, cfg)  # Q-GaLore converts the block linears to INT8 here
    if hasattr(opt, "configure_for_loop"):
        opt.configure_for_loop(grad_accum=1, clip_norm=None)
    # a third of the steps warm up: the papers' 10% is of 10K steps, and a one-step warm-up to the
    # GaLore learning rates (0.01, 0.015) throws a short run off before it starts
    sched = cosine_schedule(opt, steps, max(1, steps // 3), 0.1)
    weight_bytes = tensor_bytes(model.parameters()) + tensor_bytes(model.buffers())
    rss_model = rss_mib()

    g = torch.Generator().manual_seed(seed)
    n_windows = (ids.numel() - 1) // SEQLEN
    model.train()
    times, grad_bytes, loss = [], 0, float("nan")
    for step in range(steps):
        starts = torch.randint(0, n_windows, (batch,), generator=g) * SEQLEN
        x = torch.stack([ids[s : s + SEQLEN] for s in starts.tolist()])
        t0 = time.perf_counter()
        out = model(input_ids=x, labels=x)
        out.loss.backward()
        if step == 0:  # what backward leaves resident (layer-wise stepping has freed every gradient)
            grad_bytes = tensor_bytes(p.grad for p in model.parameters() if p.grad is not None)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
        loss = float(out.loss)
    state_bytes = tensor_bytes(v for st in opt.state.values() for v in st.values())

    model.eval()
    n_held = min(8, held.numel() // SEQLEN)
    windows = held[: n_held * SEQLEN].view(n_held, SEQLEN)
    with torch.no_grad():
        held_loss = sum(float(model(input_ids=w[None], labels=w[None]).loss) for w in windows) / n_held
    svd = opt.svd_counts() if hasattr(opt, "svd_counts") else {}
    steady = times[1:] or times
    return {
        "method": method,
        "params": n_params,
        "weights_bytes": weight_bytes,
        "grad_bytes_after_backward": grad_bytes,
        "optimizer_state_bytes": state_bytes,
        "rss_after_setup_mib": rss_model,
        "peak_rss_mib": rss_mib(),
        "first_step_s": times[0],
        "slowest_step_s": max(times),
        "steady_step_s": sum(steady) / len(steady),
        "tokens_per_s": batch * SEQLEN / (sum(steady) / len(steady)),
        "train_loss_last": loss,
        "heldout_loss": held_loss,
        "heldout_windows": n_held,
        "svds": sum(svd.values()),
        "optimizer_config": cfg.to_dict(),
    }


def svd_refresh(threads: int, reps: int, seed: int) -> list[dict[str, Any]]:
    """Time one subspace refresh of a 2048 x 5461 gradient at rank 512 (full vs randomized SVD).

    The matrix has a decaying spectrum (column i of a Gaussian scaled by 1/sqrt(i+1)), as gradients
    do; the energy kept is ||Pᵀ G||² / ||G||² for each method's P."""
    from slimkit.optim import projector as pj

    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(2048, 2048, generator=gen) / torch.arange(1, 2049).float().sqrt()
    grad = a @ torch.randn(2048, 5461, generator=gen) / math.sqrt(2048)
    total = float(grad.square().sum())
    rows = []
    for method in ("full", "randomized"):
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            p = pj.svd_projector(grad, 512, "left", method=method)
            ts.append(time.perf_counter() - t0)
        kept = float((p.T @ grad).square().sum()) / total
        rows.append({"method": method, "times_s": ts, "best_s": min(ts), "energy_kept": kept})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--svd-reps", type=int, default=2)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-name", default="optim_memory", help="results file name (without .json)")
    ap.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.steps, args.batch, args.seed)))
        return

    runs = []
    for method in args.methods:
        cmd = [sys.executable, __file__, "--worker", method, "--steps", str(args.steps)]
        cmd += ["--batch", str(args.batch), "--threads", str(args.threads), "--seed", str(args.seed)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not lines:
            sys.exit(f"{method} failed:\n{proc.stderr[-3000:]}")
        runs.append(json.loads(lines[-1][7:]))
        r = runs[-1]
        print(
            f"{method}: {r['first_step_s']:.1f} s first step, {r['steady_step_s']:.1f} s/step after",
            flush=True,
        )
    mib = 1 / 2**20
    print_table(
        [
            "method",
            "weights MiB",
            "grads MiB",
            "opt state MiB",
            "peak RSS MiB",
            "1st step s",
            "slowest step s",
            "tok/s",
            "train loss",
            "held-out loss",
            "SVDs",
        ],
        [
            [
                r["method"],
                r["weights_bytes"] * mib,
                r["grad_bytes_after_backward"] * mib,
                r["optimizer_state_bytes"] * mib,
                r["peak_rss_mib"],
                f"{r['first_step_s']:.2f}",
                f"{r['slowest_step_s']:.2f}",
                r["tokens_per_s"],
                f"{r['train_loss_last']:.3f}",
                f"{r['heldout_loss']:.3f}",
                r["svds"],
            ]
            for r in runs
        ],
    )
    svd = svd_refresh(args.threads, args.svd_reps, args.seed)
    print()
    print_table(
        ["2048x5461, rank 512", "best s", "energy kept"],
        [[r["method"], f"{r['best_s']:.3f}", f"{r['energy_kept']:.4f}"] for r in svd],
    )
    path = write_result(
        args.out_name,
        {
            "settings": {
                "shape": SHAPE,
                "seqlen": SEQLEN,
                "steps": args.steps,
                "batch": args.batch,
                "threads": args.threads,
                "seed": args.seed,
            },
            "runs": runs,
            "svd_refresh_2048x5461_rank512": svd,
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
