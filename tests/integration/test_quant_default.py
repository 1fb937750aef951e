"""Weight-only quantization on the default factworld model: 8-bit is lossless in perplexity, GPTQ beats
RTN at 4 bits, the packed model saves, reloads and evaluates exactly.

The full comparison (RTN / GPTQ / AWQ at 8/4/3 bits, against llm-compressor) is in docs/quantization.md
(benchmarks/quant_vs_llmcompressor.py and the study sweep); here only what must always hold.
"""

from __future__ import annotations

import copy

import torch

from slimkit.compress import GPTQConfig, RTNConfig, calibration_for, compress_, save_compressed
from slimkit.evaluate import perplexity
from slimkit.models import load_model
from slimkit.nn.quantized import QuantizedLinear


def _held_out_ids(tok, text: str, seqlen: int = 128, windows: int = 8) -> torch.Tensor:
    from slimkit.data.sources import read_documents

    ids = tok("\n\n".join(read_documents(text)), add_special_tokens=False)["input_ids"]
    return torch.tensor(ids[: seqlen * windows]).reshape(windows, seqlen)


def _mean_kl(dense: torch.nn.Module, model: torch.nn.Module, ids: torch.Tensor) -> float:
    """Mean over tokens of ``KL(p_dense || p_model)`` of the next-token distributions."""
    with torch.no_grad():
        p = torch.log_softmax(dense(ids).logits.float(), -1)
        q = torch.log_softmax(model(ids).logits.float(), -1)
    return float((p.exp() * (p - q)).sum(-1).mean())


# the default model's widths are 256 and 688 = 16 x 43: group 16 divides both (128 does not)
GROUP = 16


def test_quantization_on_the_default_model(default_pair, tmp_path):
    from slimkit.models.default import default_world_data

    dense, tok = default_pair
    text = default_world_data("ppl")
    base = perplexity(dense, tok, text, seqlen=256).ppl

    rtn8 = copy.deepcopy(dense)
    compress_(rtn8, RTNConfig(bits=8, group_size=None), progress=False)
    ppl8 = perplexity(rtn8, tok, text, seqlen=256).ppl
    assert abs(ppl8 / base - 1) < 0.01, (base, ppl8)  # the bound: < 1%

    calib = calibration_for(GPTQConfig(), tok, "world:corpus", nsamples=32, seqlen=128, seed=0, model=dense)
    results = {}
    for config in (RTNConfig(bits=3, group_size=GROUP), GPTQConfig(bits=3, group_size=GROUP)):
        model = copy.deepcopy(dense)
        report = compress_(model, config, calib, progress=False)
        assert sum(isinstance(m, QuantizedLinear) for m in model.modules()) == len(report.matrices) == 28
        results[report.method] = (model, report, perplexity(model, tok, text, seqlen=256).ppl)
    # judged by the KL divergence from the dense model's next-token distribution on held-out text: this
    # world's perplexity can *fall* under quantization noise (it did here at 3 bits: docs/quantization.md)
    held_out = _held_out_ids(tok, text)
    kl = {name: _mean_kl(dense, model, held_out) for name, (model, _, _) in results.items()}
    assert 0 < kl["gptq"] < 0.8 * kl["rtn"], kl

    model, report, ppl = results["gptq"]
    out = save_compressed(model, tok, tmp_path / "gptq3", report)
    loaded, loaded_tok = load_model(out)
    ids = torch.tensor([tok("The capital of the country is", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
    assert perplexity(loaded, loaded_tok, text, seqlen=256).ppl == ppl
