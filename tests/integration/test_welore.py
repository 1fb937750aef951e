"""WeLore and uniform SVD on the default factworld model: 50% parameter reduction, save/load, evaluation.

The perplexity comparison itself is recorded in docs/welore.md (benchmarks/welore.py); here only that
both run, hit the budget, give finite numbers, and that the saved WeLore model reloads exactly.
"""

from __future__ import annotations

import copy
import math

import torch

from slimkit.compress import SVDUniformConfig, WeLoreConfig, compress_, save_compressed
from slimkit.evaluate import evaluate
from slimkit.models import load_model
from slimkit.nn.lowrank import LowRankLinear


def test_welore_and_uniform_at_half_the_parameters(default_pair, tmp_path):
    from slimkit.models.default import default_world_data

    dense, tok = default_pair
    ppl_data = default_world_data("ppl")
    results = {}
    for config in (WeLoreConfig(target_params=0.5), SVDUniformConfig(target_params=0.5)):
        model = copy.deepcopy(dense)
        report = compress_(model, config, progress=False)
        assert abs(report.param_reduction - 0.5) <= 0.005, report.summary()
        assert report.lrc == sum(isinstance(m, LowRankLinear) for m in model.modules()) > 0
        ppl = evaluate(model, tok, suite="ppl", data=ppl_data, seqlen=128, limit=20)["ppl"]["perplexity"]
        assert math.isfinite(ppl) and ppl > 1
        results[report.method] = (model, report, ppl)

    model, report, ppl = results["welore"]
    assert report.baseline is not None  # every WeLore report carries the uniform baseline
    out = save_compressed(model, tok, tmp_path / "welore50", report)
    loaded, loaded_tok = load_model(out)
    ids = torch.tensor([tok("The capital of the country is", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
    # the evaluators work unchanged on the reloaded model
    again = evaluate(loaded, loaded_tok, suite="ppl", data=ppl_data, seqlen=128, limit=20)["ppl"][
        "perplexity"
    ]
    assert again == ppl
    factoid = evaluate(loaded, loaded_tok, suite="factoid", limit=20)["factoid"]
    assert factoid == evaluate(model, tok, suite="factoid", limit=20)["factoid"] and factoid["n"] == 20
