"""Does llm-compressor's GPTQ do GPTQ here? Layer output error of its codes vs slimkit's vs RTN.

A diagnostic for ``quant_vs_llmcompressor.py``, where llm-compressor's GPTQ lands near RTN's perplexity
on SmolLM2-135M. On a tiny random LLaMA (2 blocks) both tools quantize the same model (W4, groups of
16, symmetric min/max, damping 0.01, block 128; slimkit with ``true_sequential=False`` so every linear
of a block is calibrated from one pass, as llm-compressor's sequential pipeline does) with the same
calibration ids. For block 0's linears (their inputs are the same in every tool: block 0 is first)
this prints the relative output error ``||X Ŵᵀ − X Wᵀ|| / ||X Wᵀ||`` on the calibration inputs, and
the share of weights each tool leaves on RTN's value. JSON: ``benchmarks/results/quant_llmc_layer_error.json``.

    python benchmarks/quant_llmc_layer_error.py
    python benchmarks/quant_llmc_layer_error.py --model smollm2-135m --group-size 64 --nsamples 32 --seqlen 256 \
        --out-name quant_llmc_layer_error_smollm2     # real-text calibration (python-docs:calib)

``--static-groups`` runs slimkit with ``static_groups=True`` (group scales from the unquantized weight,
llm-compressor 0.14's rule). The script also prints, for every block, the share of weights on which the
two tools' quantized values agree, by linear: where the two tools' semantics are the same, block 0
agrees up to float summation order, and any later disagreement is what propagation accumulates.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_result  # noqa: E402
from quant_vs_llmcompressor import _llmc_recipe  # noqa: E402
from slimkit.compress import build_config, compress_  # noqa: E402
from slimkit.compress.calibrate import block_index_of  # noqa: E402
from slimkit.models import load_model, save_model, tiny_model, tiny_tokenizer  # noqa: E402
from slimkit.models.adapters import get_adapter  # noqa: E402


def llmc_gptq(model_dir: str, calib: torch.Tensor, bits: int, group: int, chunk: int):
    """llm-compressor's GPTQ with ``quant_vs_llmcompressor.py``'s recipe (natural column order)."""
    from llmcompressor import oneshot

    model, tok = load_model(model_dir)
    rows = [{"input_ids": x, "attention_mask": torch.ones_like(x)} for x in calib]
    loader = DataLoader(
        rows, batch_size=chunk, collate_fn=lambda b: {k: torch.stack([r[k] for r in b]) for k in b[0]}
    )
    oneshot(
        model=model,
        processor=tok,
        dataset=loader,
        recipe=_llmc_recipe("gptq", bits, group),
        num_calibration_samples=calib.shape[0],
        max_seq_length=calib.shape[1],
        pipeline="sequential",
    )
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--group-size", type=int, default=16)
    ap.add_argument("--nsamples", type=int, default=16)
    ap.add_argument("--seqlen", type=int, default=64)
    ap.add_argument("--model", default="tiny", help="tiny (a random 2-block LLaMA) or a model name/directory")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out-name", default="quant_llmc_layer_error")
    ap.add_argument(
        "--static-groups", action="store_true", help="slimkit with static_groups=True (llm-compressor's rule)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.model == "tiny":
        model_dir = tempfile.mkdtemp(prefix="slimkit-llmc-check-")
        save_model(tiny_model("llama", seed=0), tiny_tokenizer(), model_dir)
        dense, _ = load_model(model_dir)
        calib = torch.randint(
            3, 512, (args.nsamples, args.seqlen), generator=torch.Generator().manual_seed(0)
        )
        heldout = torch.randint(3, 512, (16, args.seqlen), generator=torch.Generator().manual_seed(1))
    else:
        from slimkit.compress import calibration_for
        from slimkit.models.named import resolve_model_source

        model_dir = str(resolve_model_source(args.model))
        dense, tok = load_model(model_dir)
        gptq_cfg = build_config("gptq", bits=args.bits, group_size=args.group_size)
        calib = calibration_for(
            gptq_cfg, tok, "python-docs:calib", nsamples=args.nsamples, seqlen=args.seqlen, seed=0
        ).ids
        heldout = calibration_for(
            gptq_cfg, tok, "python-docs:eval", nsamples=16, seqlen=args.seqlen, seed=0
        ).ids
    quant = {"bits": args.bits, "group_size": args.group_size, "fake": True}
    models = {"rtn": copy.deepcopy(dense), "slimkit gptq": copy.deepcopy(dense)}
    compress_(models["rtn"], build_config("rtn", **quant), None, progress=False)
    gptq = build_config("gptq", **quant, true_sequential=False, static_groups=args.static_groups)
    compress_(models["slimkit gptq"], gptq, calib, chunk_size=8, progress=False)
    models["llm-compressor gptq"] = llmc_gptq(model_dir, calib, args.bits, args.group_size, 8)

    names = [
        n
        for n, m in dense.named_modules()
        if isinstance(m, torch.nn.Linear) and n.startswith("model.layers.0.")
    ]
    inputs: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    hooks = [
        dense.get_submodule(n).register_forward_pre_hook(
            lambda mod, a, n=n, store=inputs: store[n].append(a[0].reshape(-1, a[0].shape[-1]))
        )
        for n in names
    ]
    with torch.no_grad():
        dense(calib)
    for h in hooks:
        h.remove()
    rows, records = [], []
    for n in names:
        x = torch.cat(inputs[n])
        w = dense.get_submodule(n).weight.detach()
        ref = x @ w.T
        rtn_w = models["rtn"].get_submodule(n).weight.detach()
        row = [n.removeprefix("model.layers.0.")]
        record = {"linear": n}
        for label, m in models.items():
            q = m.get_submodule(n).weight.detach()
            err = float((x @ q.T - ref).norm() / ref.norm())
            on_rtn = float((q == rtn_w).float().mean())
            record[label] = {"rel_output_error": err, "share_on_rtn_value": on_rtn}
            row += [f"{err:.4f}", f"{on_rtn:.2f}"]
        rows.append(row)
        records.append(record)
    header = ["linear (block 0)"]
    for label in models:
        header += [f"{label} error", f"{label} on RTN"]
    print_table(header, rows)
    agreement = agreement_by_block(models["slimkit gptq"], models["llm-compressor gptq"])
    roles = sorted({role for per_block in agreement for role in per_block})
    print_table(
        ["block", *roles],
        [
            [str(i), *(f"{per_block.get(r, float('nan')):.3f}" for r in roles)]
            for i, per_block in enumerate(agreement)
        ],
    )
    errors = {label: block_errors(dense, m, heldout) for label, m in models.items()}
    print("teacher-forced block error on held-out text (python-docs:eval for a real model):")
    print_table(
        ["block", *(f"{label} block error" for label in models)],
        [[str(i), *(f"{errors[label][i]:.4f}" for label in models)] for i in range(len(errors["rtn"]))],
    )
    result = {
        "args": vars(args),
        "linears": records,
        "agreement_by_block": agreement,
        "teacher_forced_block_error": errors,
    }
    print(f"wrote {write_result(args.out_name, result)}")


def block_errors(dense: torch.nn.Module, quantized: torch.nn.Module, calib: torch.Tensor) -> list[float]:
    """Per decoder block ``i``, ``||B̂_i(x_i) - B_i(x_i)|| / ||B_i(x_i) - x_i||`` with ``x_i`` the *dense*
    model's input to block ``i`` (teacher forcing: each quantized block gets the dense block's input, so
    a block's error is its own, not what the blocks before it passed on). The denominator is the
    block's own update to the residual stream."""
    dense_in: list[torch.Tensor] = []
    dense_out: list[torch.Tensor] = []
    errors: list[list[float]] = []
    dense_layers, quant_layers = get_adapter(dense).blocks(dense), get_adapter(quantized).blocks(quantized)

    def grab_in(module, args, kwargs):
        dense_in.append(args[0] if args else kwargs["hidden_states"])

    def grab_out(module, args, output):
        dense_out.append(output[0] if isinstance(output, tuple) else output)

    def feed(i):
        def hook(module, args, kwargs):
            if args:
                return (dense_in[i], *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": dense_in[i]}

        return hook

    def score(i):
        def hook(module, args, output):
            out = output[0] if isinstance(output, tuple) else output
            update = dense_out[i] - dense_in[i]
            errors[i].append(float((out - dense_out[i]).norm() / update.norm()))

        return hook

    handles = []
    for layer in dense_layers:
        handles.append(layer.register_forward_pre_hook(grab_in, with_kwargs=True))
        handles.append(layer.register_forward_hook(grab_out))
    for i, layer in enumerate(quant_layers):
        errors.append([])
        handles.append(layer.register_forward_pre_hook(feed(i), with_kwargs=True))
        handles.append(layer.register_forward_hook(score(i)))
    try:
        with torch.no_grad():
            for start in range(0, calib.shape[0], 8):
                dense_in.clear()
                dense_out.clear()
                dense(calib[start : start + 8])
                quantized(calib[start : start + 8])
    finally:
        for h in handles:
            h.remove()
    return [sum(e) / len(e) for e in errors]


def agreement_by_block(a: torch.nn.Module, b: torch.nn.Module) -> list[dict[str, float]]:
    """Per decoder block, ``{linear role: share of weights where a's and b's quantized values agree}``."""
    adapter = get_adapter(a)
    out: list[dict[str, float]] = [{} for _ in adapter.blocks(a)]
    for name, module in a.named_modules():
        if not isinstance(module, torch.nn.Linear) or not name.startswith(adapter.blocks_path + "."):
            continue
        other = b.get_submodule(name).weight.detach()
        out[block_index_of(name, adapter)][name.rsplit(".", 1)[-1]] = float(
            (module.weight.detach() == other).float().mean()
        )
    return out


if __name__ == "__main__":
    main()
