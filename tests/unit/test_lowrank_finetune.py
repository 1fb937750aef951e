"""LRC-only finetuning (frozen weights get no update and no optimizer state) and the CLI paths."""

from __future__ import annotations

import json

import pytest
import torch
import typer

from slimkit.cli.errors import run_cli
from slimkit.cli.main import app
from slimkit.compress import WeLoreConfig, compress_
from slimkit.compress.lowrank.finetune import (
    freeze_for_lrc_finetuning_,
    measure_optimizer_state_bytes,
    parameter_counts,
    unfreeze_all_,
)
from slimkit.core.errors import TargetError
from slimkit.models import load_model, tiny_model
from slimkit.nn.lowrank import LowRankLinear
from slimkit.train import AdamWConfig, TrainConfig, build_optimizer, train

COMMAND = typer.main.get_command(app)
CFG = TrainConfig(steps=3, batch_size=2, seqlen=16, optimizer=AdamWConfig(lr=1e-2), log_every=1)


def _welore_model():
    model = tiny_model("llama", seed=0)
    compress_(model, WeLoreConfig(target_params=0.11, min_ratio=0.5), progress=False)
    return model


def _ids() -> torch.Tensor:
    return torch.randint(3, 512, (400,), generator=torch.Generator().manual_seed(0))


def test_only_lrc_factors_and_norms_train_and_frozen_get_no_state():
    model = _welore_model()
    info = freeze_for_lrc_finetuning_(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(("down.weight" in n or "up.weight" in n or "norm" in n) for n in trainable)
    assert not any("embed" in n or "lm_head" in n for n in trainable)
    lrc_names = {n for n, m in model.named_modules() if isinstance(m, LowRankLinear)}
    assert 0 < info["lrc_modules"] == len(lrc_names) < 14  # some matrices stay dense (N-LRC)
    frozen_before = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trained_before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    # the loop's own optimizer builder: frozen parameters are not handed to it, so no state exists
    optimizer = build_optimizer(model, CFG.optimizer)
    handed = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert handed == {id(p) for p in model.parameters() if p.requires_grad}

    with torch.inference_mode(False):
        result = train(model, _ids(), CFG)
    assert len(result.losses) == 3
    for n, p in model.named_parameters():
        if n in frozen_before:
            assert torch.equal(p, frozen_before[n]), n  # not a single update
            assert p.grad is None, n
    assert any(
        not torch.equal(p, trained_before[n]) for n, p in model.named_parameters() if n in trained_before
    )

    lrc_bytes = measure_optimizer_state_bytes(model, CFG)
    # AdamW: exp_avg + exp_avg_sq per trainable fp32 weight, plus one step counter per tensor
    assert lrc_bytes >= 2 * 4 * info["trainable"]
    assert lrc_bytes < 2 * 4 * info["trainable"] + 8 * 64
    full = unfreeze_all_(model)
    assert full["trainable"] == sum(p.numel() for p in model.parameters()) > info["trainable"]
    assert measure_optimizer_state_bytes(model, CFG) > 3 * lrc_bytes
    assert parameter_counts(model)["frozen"] == 0


def test_lrc_only_needs_low_rank_components():
    with pytest.raises(TargetError, match="no low-rank components"):
        freeze_for_lrc_finetuning_(tiny_model("llama"))


def _run(args, capsys):
    code = run_cli(COMMAND, [str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_compress_then_lrc_only_finetune(tmp_path, tiny_model_dir, capsys):
    code, out, err = _run(
        [
            "compress",
            tiny_model_dir,
            "--method",
            "welore",
            "--target-params",
            "0.11",
            "--out",
            tmp_path / "w",
        ],
        capsys,
    )
    assert code == 0, err
    meta = json.loads((tmp_path / "w" / "slimkit.json").read_text())
    assert meta["method"] == "welore" and meta["lowrank"]["modules"]
    text = tmp_path / "corpus.txt"
    text.write_text("\n\n".join(f"the city {i} lies north of the river {i % 7}." for i in range(60)))
    yaml_path = tmp_path / "ft.yaml"
    yaml_path.write_text(
        "data: corpus.txt\ntrain: {steps: 2, batch_size: 2, seqlen: 16, log_every: 1}\nout: "
        + str(tmp_path / "run")
        + "\n"
    )
    code, out, err = _run(["finetune", tmp_path / "w", "--lrc-only", yaml_path], capsys)
    assert code == 0, err
    assert "LRC-only finetuning" in out and "optimizer state" in out
    loaded, _ = load_model(tmp_path / "run" / "model")
    assert any(isinstance(m, LowRankLinear) for m in loaded.modules())
    saved = json.loads((tmp_path / "run" / "model" / "slimkit.json").read_text())
    assert saved["finetune"]["lrc_only"] is True and saved["finetune"]["frozen"] > 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--method", "welore", "--target-params", "1.5"], "outside the allowed range"),
        (["--method", "welore", "--target-params", "0.3", "--target-rank", "0.3"], "not both"),
        (["--method", "svd-uniform", "--min-ratio", "0.5"], "no option"),
        (["--method", "welore", "--target-params", "0.5", "--min-ratio", "0.99"], "lower min_ratio"),
    ],
)
def test_cli_bad_lowrank_input_is_one_line(tmp_path, tiny_model_dir, capsys, args, needle):
    code, _, err = _run(["compress", tiny_model_dir, *args, "--out", tmp_path / "x"], capsys)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x").exists()


def test_cli_finetune_lrc_only_on_a_dense_model_fails_cleanly(tmp_path, tiny_model_dir, capsys):
    yaml_path = tmp_path / "ft.yaml"
    yaml_path.write_text("data: world:corpus\ntrain: {steps: 1}\nout: " + str(tmp_path / "run") + "\n")
    code, _, err = _run(["finetune", tiny_model_dir, "--lrc-only", yaml_path], capsys)
    assert code == 2 and "no low-rank components" in err
    yaml_path.write_text("model: {path: x}\ndata: a\ntrain: {}\nout: b\n")
    code, _, err = _run(["finetune", tiny_model_dir, yaml_path], capsys)
    assert code == 2 and "unknown key(s) ['model']" in err


@pytest.mark.parametrize("command", ["finetune", "compress"])
def test_help_shows_lowrank_examples(command, capsys):
    code, out, _ = _run([command, "--help"], capsys)
    assert code == 0 and "Examples:" in out and "welore" in out
