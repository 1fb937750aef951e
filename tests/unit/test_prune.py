"""Pruning whole tiny models through compress_: every method, pattern, family; targeting; bad input."""

from __future__ import annotations

import pytest
import torch

from slimkit.compress import COMPRESSORS, MagnitudeConfig, OWLConfig, SparseGPTConfig, WandaConfig, compress_
from slimkit.compress.prune import owl_block_sparsities, owl_outlier_ratios, select_prune_targets
from slimkit.core.errors import ConfigError, TargetError
from slimkit.models import tiny_model
from slimkit.models.adapters import get_adapter, linear_weight

FAMILIES = ["llama", "mistral", "qwen2", "opt", "gpt2"]
METHODS = [MagnitudeConfig, WandaConfig, SparseGPTConfig]


def _calib(n: int = 4, seqlen: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(3, 512, (n, seqlen), generator=torch.Generator().manual_seed(seed))


def _targets(model):
    return {n: linear_weight(m) for n, m in select_prune_targets(model, WandaConfig()).items()}


def _untouched(model, reference) -> list[str]:
    ref = reference.state_dict()
    return [k for k, v in model.state_dict().items() if torch.equal(v, ref[k])]


def test_cli_names_map_to_configs():
    assert COMPRESSORS.config_for("wanda") is WandaConfig
    assert COMPRESSORS.config_for("sparsegpt") is SparseGPTConfig
    assert COMPRESSORS.config_for("magnitude") is MagnitudeConfig


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("config_cls", METHODS)
def test_every_family_prunes(family, config_cls):
    model, dense = tiny_model(family, seed=0), tiny_model(family, seed=0)
    report = compress_(model, config_cls(sparsity=0.5), _calib(), progress=False)
    targets = _targets(model)
    assert (
        len(report.matrices)
        == len(targets)
        == len(get_adapter(model).block_linears(get_adapter(model).blocks(model)[0])) * 2
    )
    assert report.overall_sparsity == pytest.approx(0.5, abs=0.01)
    for name, weight in targets.items():
        assert float((weight == 0).float().mean()) == pytest.approx(0.5, abs=0.02), name
    # embeddings, norms, lm_head are never pruned
    unchanged = set(_untouched(model, dense))
    assert all(
        k in unchanged for k in model.state_dict() if not any(k.startswith(n + ".weight") for n in targets)
    )


def test_exact_sparsity_per_matrix_and_per_row():
    model = tiny_model("llama", seed=0)
    compress_(model, MagnitudeConfig(sparsity=0.3), progress=False)  # data-free
    for weight in _targets(model).values():
        assert int((weight == 0).sum()) == int(weight.numel() * 0.3)
    model = tiny_model("llama", seed=0)
    compress_(model, WandaConfig(sparsity=0.3), _calib(), progress=False)
    for weight in _targets(model).values():
        assert ((weight == 0).sum(1) == int(weight.shape[1] * 0.3)).all()


@pytest.mark.parametrize("config_cls", METHODS)
@pytest.mark.parametrize("pattern", ["2:4", "4:8"])
def test_nm_holds_in_every_group(config_cls, pattern):
    n, m = (int(x) for x in pattern.split(":"))
    model = tiny_model("qwen2", seed=0)
    report = compress_(model, config_cls(pattern=pattern), _calib(), progress=False)
    assert report.overall_sparsity == pytest.approx(0.5, abs=1e-6)
    for weight in _targets(model).values():
        assert ((weight == 0).reshape(weight.shape[0], -1, m).sum(-1) == n).all()


def test_owl_block_sparsity_follows_formula_and_averages_to_target():
    calib = _calib()
    model = tiny_model("llama", seed=0, num_hidden_layers=4)
    allocation = OWLConfig(m=3.0, lam=0.1)
    targets = select_prune_targets(model, WandaConfig())
    ratios = owl_outlier_ratios(model, calib, targets, allocation, progress=False)
    expected = owl_block_sparsities([ratios[i] for i in range(4)], 0.6, 0.1)
    report = compress_(model, WandaConfig(sparsity=0.6, allocation=allocation), calib, progress=False)
    assert report.block_target_sparsity == pytest.approx(expected)
    assert sum(expected) / 4 == pytest.approx(0.6)
    assert max(expected) - min(expected) == pytest.approx(0.2)
    # exact per-row counts at each block's own sparsity
    adapter = get_adapter(model)
    for name, weight in _targets(model).items():
        block = int(name[len(adapter.blocks_path) + 1 :].split(".")[0])
        assert ((weight == 0).sum(1) == int(weight.shape[1] * expected[block])).all()
        assert report.block_sparsity[block] == pytest.approx(expected[block], abs=0.02)


def test_owl_works_with_magnitude_and_sparsegpt():
    for config_cls in (MagnitudeConfig, SparseGPTConfig):
        model = tiny_model("opt", seed=0)
        report = compress_(
            model, config_cls(sparsity=0.5, allocation=OWLConfig(lam=0.05)), _calib(), progress=False
        )
        assert report.overall_sparsity == pytest.approx(0.5, abs=0.03)
        assert report.calibration == {"nsamples": 4, "seqlen": 16}


@pytest.mark.parametrize(
    "config", [WandaConfig(sparsity=0.5), SparseGPTConfig(sparsity=0.5, true_sequential=True)]
)
def test_deterministic(config):
    results = []
    for _ in range(2):
        model = tiny_model("llama", seed=0)
        compress_(model, config, _calib(seed=3), progress=False)
        results.append(model.state_dict())
    assert all(torch.equal(v, results[1][k]) for k, v in results[0].items())


def test_true_sequential_changes_sparsegpt_result():
    a, b = tiny_model("llama", seed=0), tiny_model("llama", seed=0)
    compress_(a, SparseGPTConfig(sparsity=0.5), _calib(), progress=False)
    compress_(b, SparseGPTConfig(sparsity=0.5, true_sequential=True), _calib(), progress=False)
    down = "model.layers.0.mlp.down_proj.weight"
    assert not torch.equal(a.state_dict()[down], b.state_dict()[down])
    q = "model.layers.0.self_attn.q_proj.weight"  # the first group sees the same inputs either way
    torch.testing.assert_close(a.state_dict()[q], b.state_dict()[q])


def test_true_sequential_wanda_scores_each_group_on_the_pruned_groups_before_it():
    """Reference by hand: for every block and group in forward order, a plain full forward of the model
    as pruned so far gives the group's inputs; Wanda's row-wise rule on those prunes the group."""
    from slimkit.compress.calibrate import true_sequential_groups
    from slimkit.compress.prune.patterns import select_mask, wanda_scores

    calib = _calib()
    model, ref = tiny_model("llama", seed=0), tiny_model("llama", seed=0)
    compress_(model, WandaConfig(sparsity=0.5, true_sequential=True), calib, progress=False)
    adapter = get_adapter(ref)
    for block in range(len(ref.model.layers)):
        for group in true_sequential_groups(adapter):
            names = [f"model.layers.{block}.{adapter.roles[role]}" for role in group]
            inputs: dict[str, list[torch.Tensor]] = {n: [] for n in names}
            hooks = [
                ref.get_submodule(n).register_forward_pre_hook(
                    lambda mod, args, n=n, store=inputs: store[n].append(
                        args[0].reshape(-1, args[0].size(-1))
                    )
                )
                for n in names
            ]
            with torch.no_grad():
                ref(calib)
            for h in hooks:
                h.remove()
            for n in names:
                x = torch.cat(inputs[n]).float()
                weight = ref.get_submodule(n).weight
                pruned = select_mask(wanda_scores(weight, (x * x).sum(0)), 0.5, None, group="row")
                with torch.no_grad():
                    weight.masked_fill_(pruned, 0.0)
    got, want = model.state_dict(), ref.state_dict()
    for name in _targets(ref):
        assert torch.equal(got[name + ".weight"] == 0, want[name + ".weight"] == 0), name
    dense = tiny_model("llama", seed=0)  # and it is not the paper's rule: o_proj's inputs changed
    compress_(dense, WandaConfig(sparsity=0.5), calib, progress=False)
    o = "model.layers.0.self_attn.o_proj.weight"
    assert not torch.equal(dense.state_dict()[o] == 0, got[o] == 0)


def test_targets_and_ignore():
    model, dense = tiny_model("llama", seed=0), tiny_model("llama", seed=0)
    report = compress_(
        model, WandaConfig(targets=("re:mlp\\.",), ignore=("re:down_proj",)), _calib(), progress=False
    )
    assert sorted({m.name.rsplit(".", 1)[-1] for m in report.matrices}) == ["gate_proj", "up_proj"]
    unchanged = _untouched(model, dense)
    assert "model.layers.0.self_attn.q_proj.weight" in unchanged
    assert "model.layers.1.mlp.down_proj.weight" in unchanged


def test_report_contents():
    model = tiny_model("gpt2", seed=0)
    report = compress_(model, SparseGPTConfig(sparsity=0.5), _calib(), progress=False)
    data = report.to_dict()
    assert data["method"] == "sparsegpt" and data["config"]["type"] == "SparseGPTConfig"
    assert data["matrices"][0]["shape"] == [192, 64]  # GPT-2's fused qkv Conv1D, reported as [out, in]
    assert all(m["time_s"] >= 0 and m["target_sparsity"] == 0.5 for m in data["matrices"])
    assert data["total_time_s"] > 0 and data["peak_memory_kind"] == "rss_peak_delta"
    assert len(data["block_sparsity"]) == 2 and data["calibration"] == {"nsamples": 4, "seqlen": 16}
    assert "sparsegpt" in report.summary()


# -- bad input: clear errors, model untouched ----------------------------------------------------------------------
def _assert_unchanged(model, dense):
    assert len(_untouched(model, dense)) == len(dense.state_dict())


def test_target_matching_nothing():
    model = tiny_model("llama", seed=0)
    with pytest.raises(TargetError, match="no_such_layer"):
        compress_(model, WandaConfig(targets=("no_such_layer",)), _calib(), progress=False)
    with pytest.raises(TargetError, match="lm_head"):  # lm_head is never a candidate
        compress_(model, MagnitudeConfig(targets=("lm_head",)), progress=False)
    with pytest.raises(TargetError, match="no linear layer left"):
        compress_(model, MagnitudeConfig(ignore=("Linear",)), progress=False)
    _assert_unchanged(model, tiny_model("llama", seed=0))


def test_m_not_dividing_width_fails_before_any_change():
    model = tiny_model("llama", seed=0, intermediate_size=120)  # down_proj has 120 inputs
    with pytest.raises(ConfigError, match=r"width 120 of model\.layers\.0\.mlp\.down_proj .* M=16"):
        compress_(model, WandaConfig(pattern="8:16"), _calib(), progress=False)
    _assert_unchanged(model, tiny_model("llama", seed=0, intermediate_size=120))


def test_owl_pushing_a_block_out_of_range():
    model = tiny_model("llama", seed=0, num_hidden_layers=3)
    with pytest.raises(ConfigError, match=r"OWL: block \d .*use lam <"):
        compress_(model, WandaConfig(sparsity=0.95, allocation=OWLConfig(lam=0.2)), _calib(), progress=False)
    _assert_unchanged(model, tiny_model("llama", seed=0, num_hidden_layers=3))


def test_build_config_from_cli_options(tiny_tok):
    from slimkit.compress import build_config, calibration_for, needs_calibration
    from slimkit.core.errors import RegistryError

    cfg = build_config("sparsegpt", sparsity=0.5, pattern="2:4", targets=("re:mlp",), ignore=(), owl_m=5.0)
    assert cfg == SparseGPTConfig(pattern="2:4", targets=("re:mlp",))
    owl = build_config("wanda", sparsity=0.7, allocation="owl", owl_m=4.0, owl_lambda=0.05)
    assert owl.allocation == OWLConfig(m=4.0, lam=0.05) and needs_calibration(owl)
    magnitude = build_config("magnitude", sparsity=0.5)
    assert not needs_calibration(magnitude)
    assert calibration_for(magnitude, tiny_tok, None) is None
    with pytest.raises(RegistryError, match="known"):
        build_config("pruneit")
    with pytest.raises(RegistryError, match="owl"):
        build_config("wanda", allocation="uniform")
    with pytest.raises(ConfigError, match="contradicts"):
        build_config("wanda", sparsity=0.5, pattern="1:4")


def test_summary_table_renders():
    from rich.console import Console

    model = tiny_model("llama", seed=0)
    report = compress_(model, MagnitudeConfig(sparsity=0.5), progress=False)
    console = Console(record=True, width=100)
    console.print(report.summary_table())
    text = console.export_text()
    assert "magnitude" in text and "0.5000" in text and "all" in text


def test_sequential_false_calibrates_on_dense_activations():
    calib = _calib()
    block1 = ("re:layers\\.1\\.",)
    only_block1 = tiny_model("llama", seed=0)
    compress_(only_block1, WandaConfig(targets=block1), calib, progress=False)  # block 0 stays dense
    dense_stats, propagated = tiny_model("llama", seed=0), tiny_model("llama", seed=0)
    compress_(dense_stats, WandaConfig(sequential=False), calib, progress=False)
    compress_(propagated, WandaConfig(), calib, progress=False)
    key = "model.layers.1.mlp.down_proj.weight"
    torch.testing.assert_close(dense_stats.state_dict()[key], only_block1.state_dict()[key])
    assert not torch.equal(propagated.state_dict()[key], only_block1.state_dict()[key])
    zero_key = "model.layers.0.mlp.down_proj.weight"
    assert torch.equal(dense_stats.state_dict()[zero_key], propagated.state_dict()[zero_key])


def test_calibration_for_records_source_and_coverage_in_the_report(tiny_tok, tmp_path):
    from slimkit.compress import calibration_for
    from slimkit.data.calibration import draw_calibration

    text = tmp_path / "calib.txt"
    long_doc = " ".join(f"word{i}" for i in range(400))
    text.write_text("short one\n\nshort two\n\n" + long_doc + "\n", encoding="utf-8")
    drawn = calibration_for(WandaConfig(), tiny_tok, str(text), nsamples=4, seqlen=16, seed=0)
    expected = draw_calibration(tiny_tok, ["short one", "short two", long_doc], nsamples=4, seqlen=16, seed=0)
    assert torch.equal(drawn.ids, expected.ids) and drawn.coverage == expected.coverage
    model = tiny_model("llama", seed=0)
    report = compress_(model, WandaConfig(sparsity=0.5), drawn, progress=False)
    assert report.calibration == {
        "nsamples": 4,
        "seqlen": 16,
        "source": str(text),
        "coverage": expected.coverage.to_dict(),
    }
    # the same ids as a bare tensor give the same pruned weights, without the provenance
    bare = tiny_model("llama", seed=0)
    bare_report = compress_(bare, WandaConfig(sparsity=0.5), drawn.ids, progress=False)
    assert bare_report.calibration == {"nsamples": 4, "seqlen": 16}
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), bare.state_dict().values(), strict=True)
    )
    # a data-free method keeps no calibration record even when handed one
    assert (
        compress_(tiny_model("llama", seed=0), MagnitudeConfig(), drawn, progress=False).calibration is None
    )
