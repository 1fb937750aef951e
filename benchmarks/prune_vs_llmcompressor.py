"""slimkit vs llm-compressor: Wanda and SparseGPT, unstructured 50% and 2:4, same model and data.

For each model x method x pattern, both tools prune a fresh copy of the same model with the same
calibration token ids (same sequences, same order, processed in chunks of the same size), then
perplexity is measured by the same code on the same held-out text (scored as written, see
``slimkit.evaluate.perplexity``). Each trial runs in its own subprocess so peak memory (max RSS, or
CUDA max allocated on a GPU) and CPU time are that trial's alone. Prints a table with ratios and
writes ``benchmarks/results/prune_vs_llmcompressor.json``.

Time is wall-clock seconds of the pruning call (``time``) and the CPU seconds the trial process used
for it (``cpu``, user + system, all threads): on a machine shared with other work the wall time is
noisy and the CPU time less so. The load average before each trial is recorded.

llm-compressor is a benchmark-only dependency. It declares ``transformers<=5.17``; with care it runs
beside a newer one (install it without its dependencies, then only the missing ones, and check that
torch and transformers did not move)::

    .venv/bin/pip install --no-deps llmcompressor==0.14.0.1 compressed-tensors==0.19.0 loguru nvidia-ml-py
    .venv/bin/python benchmarks/prune_vs_llmcompressor.py --models smollm2-135m \\
        --nsamples 32 --seqlen 512 --eval-seqlen 512

Models: ``default`` (the factworld default model), ``random85m`` (a random-init LLaMA, 768 hidden x
12 layers, ~85M parameters), a named offline model (``smollm2-135m``: real-text calibration from
``python-docs:calib``, perplexity on ``python-docs:eval``), or a model directory (real text too).
``--calib-source`` / ``--eval-data`` override the text.

``--floor`` also times, per model, what the sequential runner's forward passes alone cost (a method
that observes nothing and changes nothing, on the same targets, ids and chunks): ``two_pass`` is the
work exact Wanda cannot avoid (per block a statistics pass that stops before ``down_proj``, then the
propagation pass through the pruned block), ``one_pass`` a single forward through every block. The
pruning times are read against them: what a method takes beyond ``two_pass`` is its own arithmetic.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, print_seed_summary, print_table, seed_summary, write_result  # noqa: E402

# random-init LLaMA shapes: ~85M (the CPU reference) and ~1B (the GPU benchmark)
RANDOM_SHAPES = {
    "random85m": dict(
        hidden_size=768,
        intermediate_size=2048,
        num_hidden_layers=12,
        num_attention_heads=12,
        num_key_value_heads=12,
    ),
    "random1b": dict(
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=20,
        num_attention_heads=16,
        num_key_value_heads=16,
    ),
}
# "+onepass": slimkit's sequential=False (statistics from one dense pass, no propagation of pruned
# outputs) against llm-compressor's "basic" pipeline (the same semantics); every other setting runs the
# reference's sequential propagation in both tools. "+true-seq": slimkit's true_sequential=True (a block's
# linears pruned group by group, [q,k,v] -> [o] -> [gate,up] -> [down], each scored on the pruned groups'
# outputs; not the reference's rule) against llm-compressor's reference sequential pipeline.
SETTINGS = [
    ("wanda", "unstructured"),
    ("wanda", "2:4"),
    ("sparsegpt", "unstructured"),
    ("sparsegpt", "2:4"),
    ("wanda", "unstructured+onepass"),
]


SYNTHETIC = ("default", *RANDOM_SHAPES)  # models that speak the built-in world's language


def text_sources(spec: str, args: argparse.Namespace) -> tuple[str, str]:
    """(calibration source, evaluation source) for ``spec``: the world's text for the world's models,
    real English (Python's own documentation, two disjoint parts) for real ones."""
    calib, data = (
        ("world:corpus", "world:heldout") if spec in SYNTHETIC else ("python-docs:calib", "python-docs:eval")
    )
    return args.calib_source or calib, args.eval_data or data


def prepare_model(spec: str, workdir: Path) -> Path | str:
    """A model directory for ``spec`` (building the random 85M LLaMA once); a named model as its name."""
    from slimkit.models import known_model_names

    if spec in known_model_names():
        return spec
    if spec == "default":
        from slimkit.models.default import default_model_dir

        return default_model_dir()
    if spec in RANDOM_SHAPES:
        path = workdir / spec
        if not (path / "config.json").is_file():
            from transformers import LlamaConfig, LlamaForCausalLM

            from slimkit.models import save_model
            from slimkit.models.default import default_model

            _, tok = default_model()
            torch.manual_seed(0)
            cfg = LlamaConfig(
                vocab_size=len(tok),
                **RANDOM_SHAPES[spec],
                max_position_embeddings=2048,
                bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id,
            )
            save_model(LlamaForCausalLM(cfg), tok, path)
        return path
    return Path(spec)


def calibration(
    model_dir: Path | str, source: str, nsamples: int, seqlen: int, seed: int, workdir: Path
) -> tuple[Path, dict]:
    """The calibration ids both tools get (written once), and what of the source they cover."""
    from safetensors.torch import save_file

    from slimkit.data.calibration import draw_calibration
    from slimkit.data.sources import read_documents
    from slimkit.models import load_model

    _, tok = load_model(model_dir)
    drawn = draw_calibration(tok, read_documents(source), nsamples=nsamples, seqlen=seqlen, seed=seed)
    safe = source.replace(":", "-").replace("/", "_")
    tail = "" if seed == 0 else f"-seed{seed}"
    path = workdir / f"calib-{Path(str(model_dir)).name}-{safe}-{nsamples}x{seqlen}{tail}.safetensors"
    save_file({"input_ids": drawn.ids}, str(path))
    return path, drawn.coverage.to_dict()


def evaluate_ppl(model, tok, data: str, seqlen: int) -> float:
    from slimkit.evaluate import perplexity

    return perplexity(model, tok, data, seqlen=seqlen, batch_size=16).ppl


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_memory_mib(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class _NoOpMethod:
    """A calibrated method that observes nothing and compresses nothing: the runner's passes alone."""

    def __init__(self, modifies_weights: bool) -> None:
        self.modifies_weights = modifies_weights

    def observe(self, name, inputs) -> None:
        pass

    def compress(self, name, module) -> None:
        pass

    def reset(self) -> None:
        pass


def floor_trial(model, calib, args) -> None:
    """Time the runner's forward passes with a no-op method (``--tool floor-two_pass|floor-one_pass``)."""
    from slimkit.compress import build_config
    from slimkit.compress.calibrate import run_sequential_
    from slimkit.compress.prune.base import select_prune_targets

    targets = select_prune_targets(model, build_config("wanda", sparsity=0.5))
    method = _NoOpMethod(modifies_weights=args.tool == "floor-two_pass")
    run_sequential_(model, method, calib, targets, device=args.device, chunk_size=args.chunk, progress=False)


def trial(args: argparse.Namespace) -> None:
    """One (tool, method, pattern) run in this process; prints a JSON line."""
    from safetensors.torch import load_file

    from slimkit.models import load_model

    torch.set_num_threads(args.threads)
    model, tok = load_model(args.model_dir, device="cpu")
    model.eval()
    calib = load_file(args.calib)["input_ids"]
    rss_before = peak_memory_mib("cpu")
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    load = os.getloadavg()[0]
    cpu_start = cpu_seconds()
    start = time.perf_counter()
    if args.tool.startswith("floor-"):
        floor_trial(model, calib, args)
    elif args.tool == "slimkit":
        from slimkit.compress import build_config, compress_

        options = {"true_sequential": True} if args.true_seq else {}
        cfg = build_config(
            args.method, sparsity=0.5, pattern=args.pattern, sequential=not args.onepass, **options
        )
        compress_(model, cfg, calib, device=args.device, chunk_size=args.chunk, progress=False)
    else:
        from llmcompressor import oneshot
        from llmcompressor.modifiers.pruning import SparseGPTModifier, WandaPruningModifier
        from torch.utils.data import DataLoader

        structure = "0:0" if args.pattern == "unstructured" else args.pattern
        modifier_cls = WandaPruningModifier if args.method == "wanda" else SparseGPTModifier
        modifier = modifier_cls(
            sparsity=0.5, mask_structure=structure, targets=["Linear"], ignore=["re:.*lm_head"]
        )
        rows = [{"input_ids": x, "attention_mask": torch.ones_like(x)} for x in calib]
        loader = DataLoader(
            rows,
            batch_size=args.chunk,
            collate_fn=lambda b: {k: torch.stack([r[k] for r in b]) for k in b[0]},
        )
        if args.device.startswith("cuda"):
            model.to(args.device)
        oneshot(
            model=model,
            dataset=loader,
            recipe=[modifier],
            num_calibration_samples=calib.shape[0],
            max_seq_length=calib.shape[1],
            pipeline="basic" if args.onepass else "sequential",
        )
    elapsed = time.perf_counter() - start
    cpu_s = cpu_seconds() - cpu_start
    peak = peak_memory_mib(args.device)
    model.to("cpu")
    linears = [m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "lm_head" not in n]
    zeros = sum(int((m.weight == 0).sum()) for m in linears)
    total = sum(m.weight.numel() for m in linears)
    # the floor trials leave the model dense: its perplexity is the dense one, not worth re-measuring
    ppl = (
        None if args.tool.startswith("floor-") else evaluate_ppl(model, tok, args.eval_data, args.eval_seqlen)
    )
    print(
        "RESULT "
        + json.dumps(
            {
                "time_s": elapsed,
                "cpu_s": cpu_s,
                "load_before": load,
                "peak_mib": peak,
                "peak_kind": "cuda_max_allocated" if args.device.startswith("cuda") else "max_rss",
                "rss_before_mib": rss_before,
                "sparsity": zeros / total,
                "ppl": ppl,
            }
        )
    )


def run_trial(tool, method, pattern, model_dir, calib, eval_data, args) -> dict:
    onepass = pattern.endswith("+onepass")
    true_seq = pattern.endswith("+true-seq")
    pattern = pattern.removesuffix("+onepass").removesuffix("+true-seq")
    cmd = [
        sys.executable,
        __file__,
        *(["--onepass"] if onepass else []),
        *(["--true-seq"] if true_seq else []),
        "--trial",
        "--tool",
        tool,
        "--method",
        method,
        "--pattern",
        pattern,
        "--model-dir",
        str(model_dir),
        "--calib",
        str(calib),
        "--device",
        args.device,
        "--threads",
        str(args.threads),
        "--chunk",
        str(args.chunk),
        "--eval-seqlen",
        str(args.eval_seqlen),
        "--eval-data",
        eval_data,
    ]
    env = {**os.environ, "SLIMKIT_PROGRESS": "0", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"{tool} {method} {pattern} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="default,random85m")
    ap.add_argument("--nsamples", type=int, default=64)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--eval-seqlen", type=int, default=256)
    ap.add_argument("--calib-source", default=None, help="calibration text (default: by model, see above)")
    ap.add_argument("--eval-data", default=None, help="perplexity text (default: by model, see above)")
    ap.add_argument("--chunk", type=int, default=8, help="calibration sequences per forward (both tools)")
    ap.add_argument(
        "--calib-seeds",
        default="0",
        help="calibration draws, comma-separated: each seed is a paired trial of both tools on the same ids; "
        "with several, a summary gives the mean perplexity difference and its spread",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--settings", default=",".join(f"{m}/{p}" for m, p in SETTINGS), help="method/pattern,..."
    )
    ap.add_argument(
        "--floor", action="store_true", help="also time the runner's forward passes alone, per model"
    )
    ap.add_argument("--out-name", default="prune_vs_llmcompressor")
    ap.add_argument("--workdir", default=str(RESULTS.parent / ".work"))
    # single-trial mode (used by the subprocesses)
    ap.add_argument("--trial", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tool", help=argparse.SUPPRESS)
    ap.add_argument("--method", help=argparse.SUPPRESS)
    ap.add_argument("--pattern", help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    ap.add_argument("--calib", help=argparse.SUPPRESS)
    ap.add_argument("--onepass", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--true-seq", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.trial:
        trial(args)
        return

    import llmcompressor

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    settings = [tuple(item.split("/", 1)) for item in args.settings.split(",") if item]
    records, rows = [], []
    floors: dict[str, dict] = {}

    def save(records: list[dict], summary: list[dict] | None = None) -> Path:
        """Write what has been measured so far (so a crash or interrupt loses nothing)."""
        return write_result(
            args.out_name,
            {
                "llmcompressor": llmcompressor.__version__
                if hasattr(llmcompressor, "__version__")
                else "0.14",
                "nsamples": args.nsamples,
                "seqlen": args.seqlen,
                "eval_seqlen": args.eval_seqlen,
                "chunk": args.chunk,
                "threads": args.threads,
                "device": args.device,
                "records": records,
                "seed_summary": summary or [],
                "forward_floor": floors,
            },
        )

    seeds = [int(x) for x in args.calib_seeds.split(",") if x]
    for spec, seed in [(spec, seed) for spec in args.models.split(",") for seed in seeds]:
        model_dir = prepare_model(spec, workdir)
        calib_source, eval_data = text_sources(spec, args)
        calib, coverage = calibration(model_dir, calib_source, args.nsamples, args.seqlen, seed, workdir)
        n_params = sum(
            p.numel()
            for p in __import__("slimkit").load_model(model_dir, with_tokenizer=False)[0].parameters()
        )
        if args.floor and spec not in floors:
            floors[spec] = {
                kind: run_trial(f"floor-{kind}", "wanda", "unstructured", model_dir, calib, eval_data, args)
                for kind in ("two_pass", "one_pass")
            }
            save(records)
            print(
                f"floor {spec}: two passes {floors[spec]['two_pass']['time_s']:.1f} s, "
                f"one pass {floors[spec]['one_pass']['time_s']:.1f} s",
                flush=True,
            )
        for method, pattern in settings:
            res = {
                tool: run_trial(tool, method, pattern, model_dir, calib, eval_data, args)
                for tool in ("slimkit", "llmcompressor")
            }
            s, r = res["slimkit"], res["llmcompressor"]
            record = {
                "model": spec,
                "params": n_params,
                "method": method,
                "pattern": pattern,
                "calib_source": calib_source,
                "calib_seed": seed,
                "calib_coverage": coverage,
                "eval_data": eval_data,
                **res,
                "time_ratio": s["time_s"] / r["time_s"],
                "cpu_ratio": s["cpu_s"] / r["cpu_s"],
                "ppl_rel_diff": (s["ppl"] - r["ppl"]) / r["ppl"] if math.isfinite(r["ppl"]) else None,
                "memory_ratio": s["peak_mib"] / r["peak_mib"],
                # growth of the peak over the loaded model: the compression's own working memory
                "work_mib": {t: res[t]["peak_mib"] - res[t]["rss_before_mib"] for t in res},
            }
            records.append(record)
            save(records)
            rows.append(
                [
                    f"{spec} ({n_params / 1e6:.0f}M)",
                    f"{method} {pattern}" + (f" seed {seed}" if len(seeds) > 1 else ""),
                    s["time_s"],
                    r["time_s"],
                    f"{record['time_ratio']:.2f}x",
                    f"{s['cpu_s']:.1f}/{r['cpu_s']:.1f}",
                    f"{record['cpu_ratio']:.2f}x",
                    f"{s['peak_mib']:.0f}/{r['peak_mib']:.0f}",
                    f"{record['work_mib']['slimkit']:.0f}/{record['work_mib']['llmcompressor']:.0f}",
                    f"{s['ppl']:.3f}",
                    f"{r['ppl']:.3f}",
                    f"{100 * record['ppl_rel_diff']:+.2f}%",
                ]
            )
            print(f"done {spec} {method} {pattern}: {record['time_ratio']:.2f}x time", flush=True)
    print()
    print_table(
        [
            "model",
            "setting",
            "slimkit s",
            "llm-c s",
            "time ratio",
            "cpu s s/l",
            "cpu ratio",
            "peak MiB s/l",
            "work MiB s/l",
            "ppl slimkit",
            "ppl llm-c",
            "ppl diff",
        ],
        rows,
    )
    summary = seed_summary(records, ("model", "method", "pattern"), lambda r: r["llmcompressor"]["ppl"])
    print_seed_summary(summary, ("model", "method", "pattern"))
    path = save(records, summary)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
