"""Fine-tuning SmolLM2-135M on real text: AdamW, LoRA (peft), GaLore and Q-GaLore side by side (CPU).

GaLore (arXiv 2403.03507) / Q-GaLore (arXiv 2407.08296) against LoRA (Hu et al., arXiv 2106.09685,
through ``peft``, the dev extra's reference). SmolLM2-135M-Instruct (``slimkit.load_model("smollm2-135m")``, float32) is trained
for ``--steps`` steps of ``--batch`` x 256 tokens of ``python-docs:calib`` (real English that every
CPython carries) with each method, each in its own subprocess so the peak RSS is that method's.
GaLore / Q-GaLore project the attention and MLP linears at ``--rank``; LoRA targets the same linears
with the rank that gives it as many trainable numbers as GaLore's projected gradients
(``r_lora = rank · Σ max(m, n) / Σ (m + n)``). Per method: bytes of weights (parameters + buffers),
of gradients resident after backward, of optimizer state; peak RSS; steady tokens/s; held-out loss on
8 windows of ``python-docs:eval`` before and after. The learning rates are common choices, not tuned
here. Prints a table, writes ``benchmarks/results/optim_finetune.json``.

    OMP_NUM_THREADS=1 python benchmarks/optim_finetune.py [--steps 5] [--batch 2] [--rank 64] \
        [--methods adamw lora galore q-galore q-galore-layerwise] [--out-name optim_finetune]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_result  # noqa: E402

SEQLEN = 256
METHODS = ("adamw", "lora", "galore", "q-galore", "q-galore-layerwise")
BLOCK = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def tensor_bytes(tensors: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def lora_rank(model: torch.nn.Module, rank: int) -> int:
    """LoRA rank with as many trainable numbers as GaLore's rank-``rank`` projected gradients."""
    shapes = [m.weight.shape for n, m in model.named_modules() if n.split(".")[-1] in BLOCK]
    return max(1, round(rank * sum(max(s) for s in shapes) / sum(s[0] + s[1] for s in shapes)))


@torch.no_grad()
def heldout_loss(model: torch.nn.Module, windows: torch.Tensor) -> float:
    model.eval()
    loss = sum(float(model(input_ids=w[None], labels=w[None]).loss) for w in windows) / len(windows)
    model.train()
    return loss


def worker(method: str, steps: int, batch: int, rank: int, seed: int) -> dict[str, Any]:
    import slimkit
    from slimkit.data.sources import read_documents
    from slimkit.optim import GaLoreConfig, QGaLoreConfig
    from slimkit.train import AdamWConfig, tokenize_documents
    from slimkit.train.optim import build_optimizer
    from slimkit.train.schedules import cosine_schedule

    model, tok = slimkit.load_model("smollm2-135m", dtype="float32")
    ids = tokenize_documents(tok, read_documents("python-docs:calib"))
    held = tokenize_documents(tok, read_documents("python-docs:eval"))
    windows = held[: 8 * SEQLEN].view(8, SEQLEN)
    torch.manual_seed(seed)
    extra: dict[str, Any] = {}
    if method == "lora":
        r = lora_rank(model, rank)
        import peft  # the dev extra installs it: the LoRA a user would otherwise pick

        lora = peft.LoraConfig(r=r, lora_alpha=r, lora_dropout=0.0, target_modules=list(BLOCK))
        model = peft.get_peft_model(model, lora)
        extra["lora_impl"] = f"peft {peft.__version__}"
        cfg: Any = AdamWConfig(lr=2e-4, weight_decay=0.0)
        extra["lora_rank"] = r
    elif method == "adamw":
        cfg = AdamWConfig(lr=2e-5, weight_decay=0.0)
    elif method == "galore":
        cfg = GaLoreConfig(lr=2e-5, rank=rank, update_proj_gap=200, scale=4.0)
    else:  # 192 divides both 576 and 1536 (SmolLM2's linear inputs)
        cfg = QGaLoreConfig(
            lr=2e-5,
            rank=rank,
            update_proj_gap=200,
            scale=4.0,
            weight_group_size=192,
            layerwise=method.endswith("layerwise"),
        )
    before = heldout_loss(model, windows)
    opt = build_optimizer(model, cfg)
    sched = cosine_schedule(opt, steps, 1, 0.1)
    trainable = sum(p.numel() for g in opt.param_groups for p in g["params"])
    weight_bytes = tensor_bytes(model.parameters()) + tensor_bytes(model.buffers())
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
        if step == 0:
            grad_bytes = tensor_bytes(p.grad for p in model.parameters() if p.grad is not None)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
        loss = float(out.loss)
    state_bytes = tensor_bytes(v for st in opt.state.values() for v in st.values())
    steady = times[1:] or times
    return {
        "method": method,
        "trainable": trainable,
        "weights_bytes": weight_bytes,
        "grad_bytes_after_backward": grad_bytes,
        "optimizer_state_bytes": state_bytes,
        "peak_rss_mib": rss_mib(),
        "first_step_s": times[0],
        "tokens_per_s": batch * SEQLEN / (sum(steady) / len(steady)),
        "train_loss_last": loss,
        "heldout_before": before,
        "heldout_after": heldout_loss(model, windows),
        "optimizer_config": cfg.to_dict(),
        **extra,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-name", default="optim_finetune", help="results file name (without .json)")
    ap.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.steps, args.batch, args.rank, args.seed)))
        return
    runs = []
    for method in args.methods:
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            method,
            "--steps",
            str(args.steps),
            "--batch",
            str(args.batch),
        ]
        cmd += ["--rank", str(args.rank), "--threads", str(args.threads), "--seed", str(args.seed)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not lines:
            sys.exit(f"{method} failed:\n{proc.stderr[-3000:]}")
        runs.append(json.loads(lines[-1][7:]))
        print(f"{method}: {runs[-1]['tokens_per_s']:.0f} tokens/s", flush=True)
    mib = 1 / 2**20
    print_table(
        [
            "method",
            "trainable",
            "weights MiB",
            "grads MiB",
            "state MiB",
            "w+g+s MiB",
            "peak RSS MiB",
            "tok/s",
            "held-out before",
            "after",
        ],
        [
            [
                r["method"] + (f" r={r['lora_rank']}" if "lora_rank" in r else ""),
                f"{r['trainable']:,}",
                r["weights_bytes"] * mib,
                r["grad_bytes_after_backward"] * mib,
                r["optimizer_state_bytes"] * mib,
                (r["weights_bytes"] + r["grad_bytes_after_backward"] + r["optimizer_state_bytes"]) * mib,
                r["peak_rss_mib"],
                r["tokens_per_s"],
                f"{r['heldout_before']:.4f}",
                f"{r['heldout_after']:.4f}",
            ]
            for r in runs
        ],
    )
    settings = {k: getattr(args, k) for k in ("steps", "batch", "rank", "threads", "seed")}
    path = write_result(args.out_name, {"settings": {**settings, "seqlen": SEQLEN}, "runs": runs})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
