"""WeLore and uniform SVD on tiny models: the math, the τ search, LowRankLinear, save/load, bad input."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from slimkit.compress import (
    COMPRESSORS,
    SVDUniformConfig,
    WeLoreConfig,
    build_config,
    compress_,
    save_compressed,
)
from slimkit.compress.lowrank import (
    SVD_CACHE,
    MatrixSpectrum,
    NonFiniteWeightError,
    UnreachableTargetError,
    breakeven_rank_reduction,
    lowrank_factors,
    measure,
    normalize_spectrum,
    welore_assign,
    welore_kept_rank,
)
from slimkit.core.errors import ConfigError, TargetError
from slimkit.models import load_model, tiny_model
from slimkit.models.adapters import linear_weight
from slimkit.nn.lowrank import LowRankLinear


def _ids(n: int = 2, seqlen: int = 12) -> torch.Tensor:
    return torch.randint(3, 512, (n, seqlen), generator=torch.Generator().manual_seed(0))


def _lowrank_modules(model) -> dict[str, LowRankLinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, LowRankLinear)}


def test_cli_names_map_to_configs():
    assert COMPRESSORS.config_for("welore") is WeLoreConfig
    assert COMPRESSORS.config_for("svd-uniform") is SVDUniformConfig
    assert build_config("welore", target_rank=0.4, min_ratio=0.3) == WeLoreConfig(
        target_rank=0.4, min_ratio=0.3
    )


def test_normalised_spectrum_and_kept_rank_by_hand():
    s = torch.tensor([10.0, 6.0, 2.0, 1.0, 1.0])
    s_hat = normalize_spectrum(s)
    assert s_hat.tolist() == pytest.approx([1.0, 5 / 9, 1 / 9, 0.0, 0.0])
    ascending = torch.sort(s_hat).values
    assert welore_kept_rank(ascending, 0.0) == 5  # nothing is below 0
    assert welore_kept_rank(ascending, 0.05) == 3  # the two zeros go
    assert welore_kept_rank(ascending, 0.5) == 2
    assert welore_kept_rank(ascending, 1.0) == 1  # the largest always stays
    assert normalize_spectrum(torch.ones(4)).tolist() == [1.0] * 4  # flat spectrum: no tail to drop
    assert breakeven_rank_reduction(64, 64) == pytest.approx(0.5)
    assert breakeven_rank_reduction(4096, 11008) == pytest.approx(0.271, abs=1e-3)


def test_lowrank_linear_equals_usvt_applied_to_x():
    torch.manual_seed(0)
    w, b = torch.randn(24, 40, dtype=torch.float64), torch.randn(24, dtype=torch.float64)
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    k = 7
    layer = LowRankLinear.from_factors(u[:, :k], s[:k], vh[:k], bias=b)
    x = torch.randn(3, 5, 40, dtype=torch.float64)
    expected = x @ (u[:, :k] @ torch.diag(s[:k]) @ vh[:k]).T + b
    torch.testing.assert_close(layer(x), expected)
    up, down = lowrank_factors(u, s, vh, k)
    torch.testing.assert_close(layer.up.weight, up)
    torch.testing.assert_close(layer.down.weight, down)
    assert layer.factor_params == k * (24 + 40)
    # √S is split evenly: both factors have the same singular values
    torch.testing.assert_close(torch.linalg.svdvals(up), torch.linalg.svdvals(down))


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_full_rank_reproduces_every_layer(family):
    model = tiny_model(family, seed=0)
    for name, module in list(model.named_modules()):
        if name.endswith(("q_proj", "c_fc", "c_attn")):
            w = linear_weight(module).double()
            u, s, vh = torch.linalg.svd(w, full_matrices=False)
            bias = getattr(module, "bias", None)
            layer = LowRankLinear.from_factors(u, s, vh, bias=None if bias is None else bias.double())
            x = torch.randn(4, w.shape[1], dtype=torch.float64)
            torch.testing.assert_close(layer(x), module.double()(x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["params", "rank"])
@pytest.mark.parametrize("target", [0.3, 0.45, 0.7])
@pytest.mark.parametrize("config_cls", [WeLoreConfig, SVDUniformConfig])
def test_search_hits_target_within_half_a_percent(kind, target, config_cls):
    model = tiny_model("llama", seed=0)
    extra = {"min_ratio": 0.0} if config_cls is WeLoreConfig else {}
    report = compress_(model, config_cls(**{f"target_{kind}": target}, **extra), progress=False)
    achieved = report.param_reduction if kind == "params" else report.rank_reduction
    assert abs(achieved - target) <= 0.005
    assert report.overall_sparsity == report.param_reduction
    # the report's numbers are what the model now holds
    modules = _lowrank_modules(model)
    assert len(modules) == report.lrc and report.lrc + report.nlrc == 14
    stored = sum(m.params_stored for m in report.matrices)
    assert stored == sum(m.factor_params for m in modules.values()) + sum(
        m.params_dense for m in report.matrices if not m.factored
    )
    assert (
        report.model_params_before - report.model_params_after
        == sum(m.params_dense for m in report.matrices) - stored
    )
    for rec in report.matrices:
        if rec.factored:
            assert modules[rec.name].rank == rec.kept_rank


def test_welore_ranks_follow_the_spectrum_tail_and_respect_min_ratio():
    model = tiny_model("llama", seed=0)
    # give one matrix a heavy-tailed spectrum (a few large singular values, the rest tiny)
    q = model.model.layers[0].self_attn.q_proj
    u, _, vh = torch.linalg.svd(q.weight.detach(), full_matrices=False)
    tail = torch.cat([torch.tensor([5.0, 4.0, 3.0]), torch.full((61,), 0.01)])
    with torch.no_grad():
        q.weight.copy_(u @ torch.diag(tail) @ vh)
    report = compress_(model, WeLoreConfig(target_rank=0.3, min_ratio=0.5), progress=False)
    by_name = {m.name: m for m in report.matrices}
    heavy = by_name["model.layers.0.self_attn.q_proj"]
    others = [m.kept_rank for n, m in by_name.items() if n != heavy.name]
    assert heavy.kept_rank == 3 and heavy.kept_rank < min(others)  # non-uniform: the tail goes
    for m in report.matrices:
        if m.factored:
            assert (m.full_rank - m.kept_rank) / m.full_rank > 0.5
            assert m.params_stored < m.params_dense  # never more parameters than the dense matrix
        else:
            assert m.params_stored == m.params_dense
    assert (
        report.baseline is not None
        and abs(report.baseline["param_reduction"] - report.param_reduction) < 0.02
    )
    # the heavy-tailed matrix loses only its tail: ‖s[3:]‖ / ‖s‖ (Eckart–Young)
    assert heavy.spectral_error == pytest.approx((61e-4 / (50 + 61e-4)) ** 0.5, rel=1e-4)


def test_nlrc_matrices_stay_untouched():
    model, dense = tiny_model("llama", seed=0), tiny_model("llama", seed=0)
    report = compress_(model, WeLoreConfig(target_params=0.11, min_ratio=0.5), progress=False)
    assert 0 < report.lrc < 14
    for m in report.matrices:
        if not m.factored:
            assert torch.equal(model.get_submodule(m.name).weight, dense.get_submodule(m.name).weight)


def test_measures_of_an_assignment_by_hand():
    spectra = [
        MatrixSpectrum.of("a", 8, 8, torch.tensor([8.0, 4, 2, 1, 1, 1, 1, 1])),
        MatrixSpectrum.of("b", 8, 4, torch.tensor([3.0, 2, 1, 0.5])),
    ]
    # a: ŝ = (s-1)/7 drops 1/7 and five zeros -> k=2 (reduction .75: LRC);
    # b: ŝ = (s-.5)/2.5 = [1, .6, .2, 0] drops only the 0 -> k=3 (reduction .25: stays dense)
    assignment = welore_assign(spectra, 0.2, 0.5)
    assert [(x.rank, x.factored) for x in assignment] == [(2, True), (3, False)]
    m = measure(spectra, assignment)
    assert m.params_stored == 2 * 16 + 32 and m.params_dense == 64 + 32
    assert m.params == pytest.approx(1 - 64 / 96)
    assert m.rank == pytest.approx(1 - 5 / 12) and m.effective_rank == pytest.approx(1 - 6 / 12)


def test_decomposition_is_cached_across_copies_and_edits():
    model = tiny_model("llama", seed=3)
    SVD_CACHE.clear()
    first = compress_(copy.deepcopy(model), WeLoreConfig(target_params=0.3, min_ratio=0.0), progress=False)
    assert first.svd_computed == 14
    again = compress_(copy.deepcopy(model), SVDUniformConfig(target_params=0.5), progress=False)
    assert again.svd_computed == 0  # same contents, another copy: every SVD from the cache
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight.mul_(2)
    edited = compress_(model, WeLoreConfig(target_params=0.3, min_ratio=0.0), progress=False)
    assert edited.svd_computed == 1


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_save_load_gives_identical_logits(tmp_path, tiny_tok, family):
    model = tiny_model(family, seed=0)
    report = compress_(model, WeLoreConfig(target_params=0.4, min_ratio=0.0), progress=False)
    out = save_compressed(model, tiny_tok, tmp_path / "welore", report)
    meta = json.loads((out / "slimkit.json").read_text())
    assert meta["restore"] == ["lowrank"] and meta["format"] == "slimkit"
    assert set(meta["lowrank"]["modules"]) == set(_lowrank_modules(model))
    assert meta["report"]["param_reduction"] == report.param_reduction
    loaded, _ = load_model(out)
    assert set(_lowrank_modules(loaded)) == set(_lowrank_modules(model))
    ids = _ids()
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
    with pytest.raises(ConfigError, match="storage='dense'"):
        save_compressed(model, tiny_tok, tmp_path / "bm", report, storage="bitmask")


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.2, 1.5])
def test_target_outside_open_interval(bad):
    with pytest.raises(ConfigError, match="outside the allowed range"):
        WeLoreConfig(target_params=bad)
    with pytest.raises(ConfigError, match="outside the allowed range"):
        SVDUniformConfig(target_rank=bad)


def test_bad_options():
    with pytest.raises(ConfigError, match="not both"):
        WeLoreConfig(target_params=0.3, target_rank=0.3)
    with pytest.raises(ConfigError, match="min_ratio"):
        WeLoreConfig(min_ratio=1.0)
    with pytest.raises(ConfigError, match="svd_dtype"):
        WeLoreConfig(svd_dtype="float16")
    with pytest.raises(ConfigError, match="no option"):
        build_config("svd-uniform", min_ratio=0.5)
    with pytest.raises(TargetError):
        compress_(tiny_model("llama"), WeLoreConfig(targets=("re:nothing_like_this",)), progress=False)


def test_unreachable_target_says_what_would_reach_it():
    model = tiny_model("llama", seed=0)
    # min_ratio 0.99 on rank-64 matrices would need k < 0.64: no matrix can ever be factored
    with pytest.raises(UnreachableTargetError, match=r"min_ratio=0.99.*lower min_ratio"):
        compress_(model, WeLoreConfig(target_params=0.5, min_ratio=0.99), progress=False)
    with pytest.raises(UnreachableTargetError, match="lower the target"):
        compress_(model, WeLoreConfig(target_rank=0.995, min_ratio=0.0), progress=False)
    # uniform SVD on 14 tiny matrices: the square ones all switch to factors at once, a 2% step
    with pytest.raises(UnreachableTargetError, match=r"nearest reachable values are 0.1944 and 0.2170"):
        compress_(model, SVDUniformConfig(target_params=0.2), progress=False)
    assert not _lowrank_modules(model)  # nothing was changed
    assert compress_(model, SVDUniformConfig(target_params=0.2, tolerance=0.01), progress=False).lrc > 0


def test_nan_or_inf_weights_are_refused_by_name():
    model = tiny_model("llama", seed=0)
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight[0, 0] = float("nan")
        model.model.layers[0].self_attn.v_proj.weight[1, 2] = float("inf")
    with pytest.raises(NonFiniteWeightError, match="model.layers.0.self_attn.v_proj.*NaN/Inf"):
        compress_(model, WeLoreConfig(), progress=False)
    assert not _lowrank_modules(model)


def test_lowrank_linear_shapes_and_repr():
    layer = LowRankLinear(16, 8, 3, bias=True)
    assert layer(torch.randn(2, 16)).shape == (2, 8)
    assert layer.dense_weight().shape == (8, 16)
    assert "rank=3" in repr(layer)
    assert isinstance(layer.down, nn.Linear) and layer.down.bias is None
