"""``slimkit compress MODEL --method M ... --out DIR``."""

from __future__ import annotations

from pathlib import Path

import typer

from slimkit.cli.common import (
    OVERWRITE,
    REAL_TEXT_CALIB,
    derives_from_world_model,
    model_source_dir,
    resolve_model,
    stdout,
)
from slimkit.core.errors import ConfigError

HELP = (
    "Compress a model directory (or `default`) and save the result to --out.\n\n"
    "Pruning methods: magnitude (data-free), wanda, sparsegpt (calibrated on --calib text: the world corpus "
    "by default). Patterns: unstructured or N:M along the input dimension. OWL allocates per-block sparsity "
    "from outlier ratios.\n\n"
    "Examples:\n\n"
    "    slimkit compress default --method wanda --sparsity 0.5 --out wanda50\n\n"
    "    slimkit compress default --method sparsegpt --sparsity 0.5 --pattern 2:4 --out sgpt24\n\n"
    "    slimkit compress ./llama --method wanda --sparsity 0.7 --allocation owl --owl-m 5 --owl-lambda 0.08 "
    "--calib c4.jsonl --nsamples 128 --seqlen 2048 --device cuda --out llama-owl70\n\n"
    "    slimkit compress default --method magnitude --sparsity 0.5 --storage bitmask --out mag50\n\n"
    "Decode-time skipping (docs/ffn_skip.md): ffn-skip (FFN-SkipLLM; --target-ratio calibrates τ on greedy "
    "decodes of --calib prompts and records it in slimkit.json), and its baselines layer-drop (ShortGPT) and "
    "early-exit (CALM-style), set by --compute-ratio.\n\n"
    "    slimkit compress default --method ffn-skip --target-ratio 0.25 --cold-end 0 --out skip25\n\n"
    "Weight-only quantization (docs/quantization.md): rtn (data-free), gptq and awq (calibrated), at --bits 2..8 "
    "with --group-size columns per scale (default 128; `channel` for one per output row). Layers are stored "
    "packed (bits per weight in the report); --fake keeps dequantized floats; --storage compressed-tensors "
    "writes llm-compressor's pack-quantized layout for vLLM / transformers (GPTQ and RTN).\n\n"
    "    slimkit compress default --method rtn --bits 8 --out rtn8\n\n"
    "    slimkit compress smollm2-135m --method gptq --bits 4 --group-size 64 --storage compressed-tensors "
    "--out smol-w4a16\n\n"
    "Structured FFN pruning (docs/idea_prune.md): ffn-structured keeps --target-width neurons of every FFN "
    "(or removes --prune-ratio of them), scored by --importance sensitivity (|θ·∇θ| of the LM loss on --calib) "
    "or activation (Minitron), and removes the rest: a smaller dense model that plain transformers loads.\n\n"
    "    slimkit compress default --method ffn-structured --target-width 512 --out ffn512\n\n"
    "    slimkit compress smollm2-135m --method ffn-structured --prune-ratio 0.25 --importance activation "
    "--nsamples 32 --out smol-ffn75"
)


def compress(
    model: str = typer.Argument(..., help="Model directory, or `default` (the built-in world's model)."),
    method: str = typer.Option(
        ...,
        "--method",
        help="Compression method (magnitude | wanda | sparsegpt | welore | svd-uniform | ffn-skip | layer-drop | "
        "early-exit | rtn | gptq | awq | ffn-structured).",
    ),
    sparsity: float | None = typer.Option(
        None,
        "--sparsity",
        help="Fraction of weights to remove, in [0, 1). Default: 0.5, or N/M for an N:M pattern.",
    ),
    pattern: str = typer.Option("unstructured", "--pattern", help="unstructured | N:M (e.g. 2:4)."),
    allocation: str | None = typer.Option(None, "--allocation", help="Per-block sparsity allocation: owl."),
    owl_m: float = typer.Option(5.0, "--owl-m", help="OWL outlier threshold M (outlier: score > M x mean)."),
    owl_lambda: float = typer.Option(
        0.08, "--owl-lambda", help="OWL spread λ: block sparsities span at most 2λ and average to S."
    ),
    targets: list[str] = typer.Option(
        [], "--target", help="Module pattern to compress (repeatable; `re:` regex)."
    ),
    ignore: list[str] = typer.Option(
        [], "--ignore", help="Module pattern to skip (repeatable; `re:` regex)."
    ),
    true_sequential: bool | None = typer.Option(
        None,
        "--true-sequential/--no-true-sequential",
        help="SparseGPT, Wanda, GPTQ: prune (quantize) a block's linears group by group, [q,k,v] -> [o] -> [gate,up] -> [down], statistics re-collected after each.",
    ),
    sequential: bool | None = typer.Option(
        None,
        "--sequential/--no-sequential",
        help="Wanda, SparseGPT, GPTQ, AWQ: calibrate each block on the compressed blocks before it (the default) "
        "or on the dense model (--no-sequential: no propagation pass, llm-compressor's basic pipeline).",
    ),
    target_params: float | None = typer.Option(
        None, "--target-params", help="Low-rank: parameter reduction of the targeted matrices, in (0, 1)."
    ),
    target_rank: float | None = typer.Option(
        None, "--target-rank", help="Low-rank: rank reduction (WeLore's measure), in (0, 1)."
    ),
    min_ratio: float | None = typer.Option(
        None, "--min-ratio", help="WeLore: factor a matrix only above this rank reduction (default 0.5)."
    ),
    target_ratio: float | None = typer.Option(
        None,
        "--target-ratio",
        help="ffn-skip: fraction of FFN blocks to skip while decoding, in [0, 1) (τ calibrated).",
    ),
    threshold: float | None = typer.Option(
        None, "--threshold", help="ffn-skip / early-exit: the saturation threshold τ itself (no calibration)."
    ),
    compute_ratio: float | None = typer.Option(
        None,
        "--compute-ratio",
        help="layer-drop / early-exit: share of decoder-block FLOPs to skip, in [0, 1).",
    ),
    warmup_tokens: int | None = typer.Option(
        None, "--warmup-tokens", help="ffn-skip / early-exit: full-model tokens at the start of a generation."
    ),
    cold_start: int | None = typer.Option(None, "--cold-start", help="ffn-skip: first layers never skipped."),
    cold_end: int | None = typer.Option(None, "--cold-end", help="ffn-skip: last layers never skipped."),
    extent: int | None = typer.Option(
        None,
        "--extent",
        help="ffn-skip: eligible FFNs skipped after a trigger (default: up to the cold region).",
    ),
    bits: int | None = typer.Option(None, "--bits", help="rtn / gptq / awq: code width, 2..8 (default 4)."),
    group_size: str | None = typer.Option(
        None,
        "--group-size",
        help="rtn / gptq / awq: input columns per scale group, dividing every input width (default 128), "
        "or `channel` for one scale per output channel.",
    ),
    symmetric: bool | None = typer.Option(
        None,
        "--symmetric/--asymmetric",
        help="rtn / gptq / awq: zero point 0 (default) or a stored zero point per group.",
    ),
    fake: bool = typer.Option(
        False,
        "--fake",
        help="rtn / gptq / awq: keep dequantized float weights (accuracy studies; no saving).",
    ),
    act_order: bool | None = typer.Option(
        None, "--act-order/--no-act-order", help="gptq: quantize columns by decreasing Hessian diagonal."
    ),
    static_groups: bool | None = typer.Option(
        None,
        "--static-groups/--dynamic-groups",
        help="gptq: group scales from the unquantized weight before the sweep (llm-compressor's rule), or "
        "from the error-updated columns when the sweep reaches each group (default, GPTQ's reference).",
    ),
    percdamp: float | None = typer.Option(
        None, "--percdamp", help="gptq: Hessian damping as a fraction of its mean diagonal (default 0.01)."
    ),
    target_width: int | None = typer.Option(
        None, "--target-width", help="ffn-structured: neurons every FFN keeps (its new intermediate_size)."
    ),
    prune_ratio: float | None = typer.Option(
        None, "--prune-ratio", help="ffn-structured: or the fraction of FFN neurons to remove, in [0, 1)."
    ),
    importance: str | None = typer.Option(
        None, "--importance", help="ffn-structured: sensitivity (default) | activation."
    ),
    calib: str | None = typer.Option(
        None,
        "--calib",
        help="Calibration text source (default: the world corpus for `default`, python-docs:calib for any other model).",
    ),
    nsamples: int = typer.Option(128, "--nsamples", help="Calibration sequences."),
    seqlen: int = typer.Option(128, "--seqlen", help="Calibration sequence length."),
    seed: int = typer.Option(0, "--seed", help="Calibration sampling seed."),
    device: str = typer.Option(
        "cpu", "--device", help="Compute device for one block at a time (cpu | cuda)."
    ),
    dtype: str | None = typer.Option(
        None, "--dtype", help="float32 | bfloat16 | float16 (default: as saved)."
    ),
    storage: str = typer.Option(
        "dense",
        "--storage",
        help="dense (plain HF; zeros; quantized: packed codes) | bitmask (compact pruned) | compressed-tensors "
        "(quantized, for vLLM / transformers).",
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        help="Output model directory (written atomically). An existing directory is replaced only when "
        "slimkit wrote it; never when it is or contains the input model.",
    ),
    overwrite: bool = OVERWRITE,
) -> None:
    from slimkit.compress import build_config, calibration_for, compress_, save_compressed
    from slimkit.core.io import check_output_dir

    cfg = build_config(
        method,
        sparsity=sparsity,
        pattern=None if pattern == "unstructured" else pattern,
        target_params=target_params,
        target_rank=target_rank,
        min_ratio=min_ratio,
        allocation=allocation,
        owl_m=owl_m,
        owl_lambda=owl_lambda,
        targets=tuple(targets) or None,
        ignore=tuple(ignore) or None,
        true_sequential=true_sequential,
        sequential=sequential,
        target_ratio=target_ratio,
        threshold=threshold,
        compute_ratio=compute_ratio,
        warmup_tokens=warmup_tokens,
        cold_start=cold_start,
        cold_end=cold_end,
        extent=extent,
        bits=bits,
        group_size=None if group_size is None else _group_size(group_size),
        symmetric=symmetric,
        fake=fake or None,
        act_order=act_order,
        static_groups=static_groups,
        percdamp=percdamp,
        target_width=target_width,
        prune_ratio=prune_ratio,
        importance=importance,
    )
    from slimkit.compress.export import STORAGES
    from slimkit.core.config import check_choice
    from slimkit.core.devices import resolve_device

    check_choice("storage", storage, STORAGES)
    resolve_device(device)
    # every check that can fail runs before the model is loaded and compressed
    # a named model or a .gguf file loads from its converted directory in the cache: protect both
    source = None if model == "default" else model_source_dir(model)
    check_output_dir(out, protect=() if source is None else (model, source), overwrite=overwrite)
    m, tok, name = resolve_model(model, device="cpu", dtype=dtype)
    if calib is None and not derives_from_world_model(model):
        calib = REAL_TEXT_CALIB  # a real model is calibrated on real English, not on the fictional world
    drawn = calibration_for(cfg, tok, calib, nsamples=nsamples, seqlen=seqlen, seed=seed, model=m)
    if drawn is not None:
        stdout.print(f"calibration: {drawn.coverage} of {drawn.source}")
    report = compress_(m, cfg, calib=drawn, device=device)
    parent = source
    if parent is None:
        from slimkit.models.default import default_model_dir

        parent = default_model_dir()
    save_compressed(m, tok, out, report, storage=storage, parent=parent, overwrite=overwrite)
    stdout.print(report.summary_table())
    stdout.print(f"saved to {out}")


def _group_size(text: str) -> int | str:
    if text.strip().lower() == "channel":
        return "channel"  # QuantConfig's spelling of one scale per output channel
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"--group-size {text!r} must be a positive integer or `channel`") from None
