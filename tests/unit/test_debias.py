"""slimkit.debias: datasets, metrics (hand-computed tables), baselines' pure pieces, models, harness, bad input."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from slimkit.core.config import Config
from slimkit.core.errors import ConfigError, DataError
from slimkit.debias import (
    METHODS,
    BiasDataset,
    ColoredDigitsConfig,
    ERMConfig,
    GroupBalancedConfig,
    JTTConfig,
    LfFConfig,
    ModelConfig,
    SebraConfig,
    build_model,
    colored_digits,
    read_metadata_csv,
    run_method,
    run_seeds,
    save_runs,
)
from slimkit.debias.baselines import (
    LossEMA,
    gce_loss,
    group_balanced_weights,
    jtt_upsampled_indices,
    lff_weights,
)
from slimkit.debias.datasets import biased_attribute
from slimkit.debias.metrics import (
    bias_conflicting_accuracy,
    cell_accuracies,
    classification_metrics,
    group_accuracies,
    in_distribution_accuracy,
    ranking_auroc,
    unbiased_accuracy,
    worst_group_accuracy,
)
from slimkit.evaluate.results import validate_results

SMALL = ColoredDigitsConfig(alignment=0.95, train_copies=1, val_per_class=5, test_per_class=10, seed=3)


@pytest.fixture(scope="module")
def small():
    return colored_digits(SMALL)


# -- coloured digits -----------------------------------------------------------------------------------------
def test_colored_digits_alignment_is_exact_and_spread(small):
    train = small.train
    n = len(train)
    assert train.conflicting.sum().item() == round(0.05 * n)
    colors = train.bias[:, 0]
    conflicting_offsets = (colors - train.labels)[train.conflicting] % 10
    counts = torch.bincount(conflicting_offsets, minlength=10)
    assert counts[0] == 0 and counts[1:].max() - counts[1:].min() <= 1  # spread over the other classes
    assert train.inputs.shape[1:] == (3, 8, 8) and train.input_shape == (3, 8, 8)


def test_colored_digits_test_set_is_group_balanced(small):
    test = small.test
    cells = torch.bincount(test.labels * 10 + test.bias[:, 0], minlength=100)
    assert (cells == 10).all()  # 10 digit images per class, each in every colour
    assert test.conflicting.float().mean().item() == pytest.approx(0.9)
    assert len(test) == 100 * 10


def test_colored_digits_is_deterministic_and_colour_tracks_bias(small):
    again = colored_digits(SMALL)
    torch.testing.assert_close(small.train.inputs, again.train.inputs)
    # stroke colour of each image is (close to) the palette colour of its colour attribute
    from slimkit.debias.datasets import PALETTE

    img = small.train.inputs
    brightest = img.sum(1).flatten(1).argmax(1)
    rgb = img.flatten(2)[torch.arange(len(img)), :, brightest]
    rgb = rgb / rgb.norm(dim=1, keepdim=True)
    palette = torch.tensor(PALETTE) / torch.tensor(PALETTE).norm(dim=1, keepdim=True)
    assert ((rgb @ palette.T).argmax(1) == small.train.bias[:, 0]).float().mean() > 0.95


def test_colored_digits_second_bias_patch():
    splits = colored_digits(
        ColoredDigitsConfig(
            alignment=0.9, patch_alignment=0.8, num_classes=3, val_per_class=0, test_per_class=10
        )
    )
    train = splits.train
    assert train.bias_names == ("color", "patch") and train.num_groups == 3 * 4
    patch_conflicts = train.attribute_conflicts[:, 1]
    assert patch_conflicts.sum().item() == round(0.2 * len(train))
    # the test set renders every digit in every (colour, patch) pair: each cell holds the same count,
    # so the unbiased accuracy averages balanced cells
    test = splits.test
    assert len(test) == 3 * 10 * 3 * 3
    cells = torch.cat([test.labels.unsqueeze(1), test.bias], dim=1)
    _, counts = torch.unique(cells, dim=0, return_counts=True)
    assert len(counts) == 27 and torch.all(counts == 10)
    assert len(torch.unique(test.group_ids)) == 12


def test_biased_attribute_alignment_one_has_no_conflicts():
    labels = torch.arange(10).repeat(5)
    assert (biased_attribute(labels, 1.0, 10, torch.Generator().manual_seed(0)) == labels).all()


@pytest.mark.parametrize("alignment", [0.0, -0.1, 1.01, 2.0])
def test_alignment_outside_unit_interval_is_refused(alignment):
    with pytest.raises(ConfigError, match=r"alignment=.*outside the allowed range \(0.0, 1.0\]"):
        ColoredDigitsConfig(alignment=alignment)


def test_one_class_is_refused():
    with pytest.raises(ConfigError, match="num_classes"):
        ColoredDigitsConfig(num_classes=1)
    with pytest.raises(DataError, match="at least 2 classes"):
        BiasDataset(
            torch.zeros(4, 3, 2, 2),
            torch.zeros(4, dtype=torch.long),
            torch.zeros(4, 1, dtype=torch.long),
            torch.zeros(1, 1, dtype=torch.long),
            num_classes=1,
        )


# -- metadata CSV --------------------------------------------------------------------------------------------
def _write_folder(
    root: Path, rows: list[dict], header: list[str] | None = None, path_key: str = "img"
) -> Path:
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    for r in rows:
        (root / r[path_key]).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (12, 10), color=(40 * int(r["y"]), 100, 200)).save(root / r[path_key])
    header = header or list(rows[0])
    with (root / "metadata.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return root / "metadata.csv"


def _waterbirds_rows() -> list[dict]:
    rows = []
    for i in range(16):
        y = i % 2
        split = "0" if i < 10 else ("1" if i < 12 else "2")
        place = y if i not in (3, 10, 13) else 1 - y  # a few conflicting
        rows.append({"img": f"birds/{i:03d}.jpg", "y": str(y), "place": str(place), "split": split})
    return rows


def test_metadata_csv_reads_waterbirds_layout(tmp_path):
    path = _write_folder(tmp_path / "wb", _waterbirds_rows())
    splits = read_metadata_csv(
        path, path_column="img", label_column="y", bias_columns=("place",), image_size=16
    )
    assert (len(splits.train), len(splits.val), len(splits.test)) == (10, 2, 4)
    assert splits.train.aligned_values.tolist() == [[0], [1]]  # modal place of each class in train
    assert splits.train.conflicting.sum().item() == 1 and splits.test.conflicting.sum().item() == 1
    x = splits.train.batch(torch.tensor([0, 1]))
    assert x.shape == (2, 3, 16, 16) and x.dtype == torch.float32
    assert splits.train.input_shape == (3, 16, 16)


def test_metadata_csv_string_labels_and_named_splits(tmp_path):
    rows = [
        {
            "path": f"{i}.png",
            "label": ["cat", "dog"][i % 2],
            "bg": ["in", "out"][i % 2],
            "y": i % 2,
            "split": ["train", "test"][i // 6],
        }
        for i in range(10)
    ]
    splits = read_metadata_csv(
        _write_folder(tmp_path / "s", rows, ["path", "label", "bg", "split", "y"], "path"),
        bias_columns=("bg",),
        image_size=8,
        normalize=False,
    )
    assert splits.train.num_classes == 2 and splits.val is None
    assert splits.train.labels.tolist() == [0, 1, 0, 1, 0, 1]


def test_metadata_csv_reads_celeba_minus_one_one_coding(tmp_path):
    # CelebA's list_attr_celeba codes attributes as -1/1; they read as 0/1, matching a 0/1 copy exactly
    rows = [
        {**r, "Blond_Hair": str(2 * int(r["y"]) - 1), "Male": str(2 * int(r["place"]) - 1)}
        for r in _waterbirds_rows()
    ]
    path = _write_folder(tmp_path / "celeba", rows)
    pm = read_metadata_csv(path, path_column="img", label_column="Blond_Hair", bias_columns=("Male",))
    zo = read_metadata_csv(path, path_column="img", label_column="y", bias_columns=("place",))
    assert pm.train.num_classes == 2
    assert torch.equal(pm.train.labels, zo.train.labels) and torch.equal(pm.test.bias, zo.test.bias)


def test_metadata_csv_class_ids_with_gaps_are_refused(tmp_path):
    rows = [{**r, "y": str(2 * int(r["y"]))} for r in _waterbirds_rows()]  # classes 0 and 2, no 1
    with pytest.raises(DataError, match=r"class ids \[0, 2\] with \[1\] absent"):
        read_metadata_csv(
            _write_folder(tmp_path / "gap", rows),
            path_column="img",
            label_column="y",
            bias_columns=("place",),
        )


def test_metadata_csv_missing_column_is_named(tmp_path):
    path = _write_folder(tmp_path / "m", _waterbirds_rows(), header=["img", "y", "split"])
    with pytest.raises(DataError, match=r"missing column\(s\) \['place'\]"):
        read_metadata_csv(path, path_column="img", label_column="y", bias_columns=("place",))


def test_metadata_csv_one_class_missing_image_and_bad_split(tmp_path):
    rows = [{**r, "y": "1"} for r in _waterbirds_rows()]
    with pytest.raises(DataError, match="only one class"):
        read_metadata_csv(
            _write_folder(tmp_path / "one", rows),
            path_column="img",
            label_column="y",
            bias_columns=("place",),
        )
    path = _write_folder(tmp_path / "gone", _waterbirds_rows())
    (tmp_path / "gone" / "birds" / "004.jpg").unlink()
    with pytest.raises(DataError, match="004.jpg"):
        read_metadata_csv(path, path_column="img", label_column="y", bias_columns=("place",))
    rows = [{**r, "split": "holdout"} for r in _waterbirds_rows()]
    with pytest.raises(DataError, match="holdout"):
        read_metadata_csv(
            _write_folder(tmp_path / "bad", rows),
            path_column="img",
            label_column="y",
            bias_columns=("place",),
        )
    with pytest.raises(DataError, match="not found"):
        read_metadata_csv(tmp_path / "nope.csv")


# -- metrics -------------------------------------------------------------------------------------------------
def test_metrics_match_a_hand_computed_confusion_table():
    # 2 classes x 1 binary bias; groups: g = 2y + conflict.  Per group (correct / total):
    #   g0 (y0 aligned) 3/4, g1 (y0 conflicting) 1/2, g2 (y1 aligned) 4/4, g3 (y1 conflicting) 0/2
    labels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    bias = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0]).unsqueeze(1)
    pred = torch.tensor([0, 0, 0, 1, 0, 1, 1, 1, 1, 1, 0, 0])
    conflicting = bias[:, 0] != labels
    groups = labels * 2 + conflicting.long()
    acc = group_accuracies(pred, labels, groups, 4)
    torch.testing.assert_close(acc, torch.tensor([0.75, 0.5, 1.0, 0.0]))
    assert worst_group_accuracy(acc) == 0.0
    train_p = torch.tensor([0.45, 0.05, 0.45, 0.05])
    assert in_distribution_accuracy(acc, train_p) == pytest.approx(0.45 * 0.75 + 0.05 * 0.5 + 0.45 * 1.0)
    assert bias_conflicting_accuracy(pred, labels, conflicting) == pytest.approx(1 / 4)
    # cells (y, bias): (0,0) 3/4, (0,1) 1/2, (1,1) 4/4, (1,0) 0/2 -> mean 0.5625
    assert unbiased_accuracy(pred, labels, bias) == pytest.approx((0.75 + 0.5 + 1 + 0) / 4)
    m = classification_metrics(pred, labels, bias, groups, conflicting, 4, train_p)
    assert m["accuracy"] == pytest.approx(8 / 12) and m["worst_group"] == 3 and m["n"] == 12
    assert m["worst_cell_accuracy"] == 0.0
    assert m["bias_aligned_accuracy"] == pytest.approx(7 / 8)


def test_worst_cell_is_not_the_pooled_worst_group():
    # 3 classes, one 3-valued bias. Class 0 conflicting pools cells (0, 1) 2/2 and (0, 2) 0/2: the pooled
    # group reads 0.5, the cell 0.0
    labels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 2, 2])
    bias = torch.tensor([0, 0, 1, 1, 2, 2, 1, 1, 2, 2]).unsqueeze(1)
    pred = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    conflicting = bias[:, 0] != labels
    groups = labels * 2 + conflicting.long()
    m = classification_metrics(pred, labels, bias, groups, conflicting, 6, torch.full((6,), 1 / 6))
    assert m["worst_group_accuracy"] == pytest.approx(0.5)
    assert m["worst_cell_accuracy"] == 0.0
    torch.testing.assert_close(cell_accuracies(pred, labels, bias), torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0]))


def test_empty_groups_are_skipped_not_zero():
    acc = group_accuracies(torch.tensor([1, 1]), torch.tensor([1, 0]), torch.tensor([2, 2]), 4)
    assert math.isnan(acc[0]) and acc[2] == 0.5
    assert worst_group_accuracy(acc) == 0.5
    assert bias_conflicting_accuracy(torch.tensor([1]), torch.tensor([1]), torch.tensor([False])) is None


def test_ranking_auroc_hand_computed_with_ties():
    ranks = torch.tensor([0, 0, 1, 2, 2, 3])
    conflicting = torch.tensor([False, False, False, True, False, True])
    # conflicting ranks {2, 3} vs aligned {0, 0, 1, 2}: pairs won 3 + 4, tie 0.5 -> 7.5 / 8
    assert ranking_auroc(ranks, conflicting) == pytest.approx(7.5 / 8)
    assert ranking_auroc(ranks, torch.zeros(6, dtype=torch.bool)) is None


# -- baselines' pure pieces ----------------------------------------------------------------------------------
def test_jtt_upsamples_exactly_the_errors():
    errors = torch.tensor([False, True, False, True])
    idx = jtt_upsampled_indices(errors, 5)
    assert torch.bincount(idx, minlength=4).tolist() == [1, 5, 1, 5]


def test_group_balanced_weights_sum_to_one_per_group():
    groups = torch.tensor([0, 0, 0, 1, 2, 2])
    w = group_balanced_weights(groups)
    assert torch.zeros(3).index_add_(0, groups, w).tolist() == pytest.approx([1, 1, 1])


def test_gce_and_lff_weights():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0])
    p = logits.softmax(1)[:, 0]
    expected = -p.log() * p**0.7 * 0.7
    torch.testing.assert_close(gce_loss(logits, labels, 0.7), expected)
    w = lff_weights(torch.tensor([3.0, 0.0]), torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(w, torch.tensor([0.75, 0.0]), atol=1e-6, rtol=0)


def test_lff_loss_ema_and_classwise_normalisation():
    ema = LossEMA(torch.tensor([0, 0, 1]), 2, alpha=0.5)
    ema.update(torch.tensor([0, 1, 2]), torch.tensor([2.0, 4.0, 1.0]))  # first value taken as is
    ema.update(torch.tensor([0]), torch.tensor([6.0]))  # 0.5*2 + 0.5*6 = 4
    assert ema.values.tolist() == [4.0, 4.0, 1.0]
    assert ema.normalized(torch.tensor([0, 1, 2])).tolist() == [1.0, 1.0, 1.0]


def test_registry_names_and_config_round_trip():
    assert METHODS.names() == ["erm", "group-balanced", "jtt", "lff", "sebra"]
    assert (
        METHODS.config_for("sebra") is SebraConfig
        and METHODS.config_for("group-balanced") is GroupBalancedConfig
    )
    for cfg in (
        SebraConfig(gap=4, model=ModelConfig(arch="cnn", hidden=16)),
        JTTConfig(upweight=7),
        LfFConfig(),
    ):
        assert Config.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: JTTConfig(upweight=0), "upweight"),
        (lambda: LfFConfig(q=0.0), "q"),
        (lambda: ERMConfig(model_selection="best"), "model_selection"),
        (lambda: ERMConfig(lr=0), "lr"),
        (lambda: ModelConfig(arch="vit"), "arch"),
        (lambda: ModelConfig(arch="mlp", weights="w.pt"), "weights"),
    ],
)
def test_bad_method_configs(make, field):
    with pytest.raises(ConfigError, match=field):
        make()


# -- models --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_cpu_models_shapes(arch):
    model = build_model(ModelConfig(arch=arch, hidden=16), (3, 8, 8), 5)
    x = torch.randn(4, 3, 8, 8)
    assert model(x).shape == (4, 5) and model.features(x).shape == (4, 16)


def test_resnet_without_torchvision_names_the_vision_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torchvision(name, *args, **kwargs):
        if name.startswith("torchvision"):
            raise ImportError("No module named 'torchvision'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torchvision)
    with pytest.raises(ConfigError, match=r"slimkit\[vision\]"):
        build_model(ModelConfig(arch="resnet18"), (3, 32, 32), 2)


# -- harness -------------------------------------------------------------------------------------------------
FAST = {"epochs": 2, "model": ModelConfig(hidden=16)}


@pytest.mark.parametrize(
    "cfg",
    [
        ERMConfig(**FAST),
        JTTConfig(**FAST, id_epochs=1),
        LfFConfig(**FAST),
        GroupBalancedConfig(**FAST),
        SebraConfig(**FAST, max_rounds=3),
    ],
    ids=lambda c: type(c).__name__,
)
def test_every_method_runs_and_writes_valid_results(cfg, small):
    run = run_method(cfg, small, seed=1)
    validate_results(run.results)
    test = run.metrics["test"]
    assert 0 <= test["worst_group_accuracy"] <= test["unbiased_accuracy"] <= 1
    assert test["n"] == len(small.test) and run.metrics["val"]["n"] == len(small.val)
    assert ("ranking" in run.metrics) == isinstance(cfg, SebraConfig)
    assert run.results["provenance"]["config"]["group_labels_used_for_training"] == isinstance(
        cfg, GroupBalancedConfig
    )


def test_runs_repeat_with_the_same_seed(small):
    a = run_method(SebraConfig(**FAST, max_rounds=3), small, seed=4)
    b = run_method(SebraConfig(**FAST, max_rounds=3), small, seed=4)
    assert torch.equal(a.fitted.ranks, b.fitted.ranks)
    assert a.metrics["test"] == b.metrics["test"]


def test_model_selection_uses_validation_and_needs_it(small):
    run = run_method(ERMConfig(**FAST, model_selection="val-worst-group"), small, seed=0)
    assert run.metrics["training"]["selected_epoch"] in (0, 1)
    assert run.results["provenance"]["config"]["group_labels_used_for_selection"] is True
    no_val = colored_digits(SMALL.replace(val_per_class=0))
    with pytest.raises(ConfigError, match="validation split"):
        run_method(ERMConfig(**FAST, model_selection="val-accuracy"), no_val, seed=0)


def test_save_runs_writes_results_ranks_and_plot(tmp_path, small):
    cfg = SebraConfig(**FAST, max_rounds=3)
    runs, summary = run_seeds(cfg, small, [0, 1])
    validate_results(summary)
    assert summary["metrics"]["test"]["seeds"] == 2 and "unbiased_accuracy_std" in summary["metrics"]["test"]
    out = save_runs(tmp_path / "run", runs, summary, small)
    assert (out / "results.json").is_file() and (out / "ranking.png").stat().st_size > 1000
    from slimkit.core.io import load_tensors

    saved = load_tensors(out / "seed1" / "ranks.safetensors")
    assert torch.equal(saved["ranks"], runs[1].fitted.ranks)


# -- CLI -----------------------------------------------------------------------------------------------------
def _cli(args: list, capsys) -> tuple[int, str, str]:
    import typer

    from slimkit.cli import debias_cmd
    from slimkit.cli.errors import run_cli

    code = run_cli(typer.main.get_command(debias_cmd.app), [str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)


@pytest.mark.parametrize("command", ["sebra", "baseline"])
def test_cli_help_has_examples(command, capsys):
    code, out, _ = _cli([command, "--help"], capsys)
    assert code == 0 and "Examples" in out and "--alignment" in out


def test_cli_sebra_writes_results_and_plot(tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "sebra",
        "--alignment",
        "0.95",
        "--classes",
        "3",
        "--epochs",
        "2",
        "--max-rounds",
        "3",
        "--hidden",
        "16",
        "--seeds",
        "2",
        "--out",
        out,
    ]
    code, stdout, err = _cli(args, capsys)
    assert code == 0, err
    assert "bias_conflicting_accuracy" in stdout and "ranking AUROC" in stdout
    from slimkit.core.io import read_json

    summary = read_json(out / "results.json")
    validate_results(summary)
    assert summary["provenance"]["config"]["seeds"] == [0, 1]
    assert (out / "ranking.png").is_file() and (out / "seed1" / "ranks.safetensors").is_file()


def test_cli_baseline_runs_jtt(tmp_path, capsys):
    args = [
        "baseline",
        "--method",
        "jtt",
        "--classes",
        "2",
        "--epochs",
        "1",
        "--id-epochs",
        "1",
        "--upweight",
        "3",
        "--hidden",
        "8",
        "--out",
        tmp_path / "jtt",
    ]
    code, _, err = _cli(args, capsys)
    assert code == 0, err
    assert (tmp_path / "jtt" / "seed0" / "results.json").is_file()
    assert not (tmp_path / "jtt" / "ranking.png").exists()


@pytest.mark.parametrize(
    "args, needles",
    [
        (["sebra", "--alignment", "1.5"], ["alignment=1.5", "(0.0, 1.0]"]),
        (["sebra", "--alignment", "0"], ["alignment=0.0"]),
        (["sebra", "--classes", "1"], ["num_classes=1"]),
        (["sebra", "--gap", "0"], ["gap=0"]),
        (["sebra", "--model", "resnet18"], ["slimkit[vision]"]),
        (["sebra", "--dataset", "csv"], ["--data"]),
        (["sebra", "--dataset", "imagenet"], ["imagenet"]),
        (["baseline", "--method", "dro"], ["'dro'"]),
        (["baseline", "--method", "erm", "--upweight", "3"], ["--upweight"]),
        (["sebra", "--seeds", "0"], ["--seeds=0"]),
    ],
)
def test_cli_bad_input_is_one_line(args, needles, tmp_path, capsys):
    code, _, err = _cli([*args, "--out", tmp_path / "o"], capsys)
    _one_line_error(code, err, *needles)
    assert not (tmp_path / "o").exists()


def test_cli_csv_missing_column_is_one_line(tmp_path, capsys):
    path = _write_folder(tmp_path / "m", _waterbirds_rows(), header=["img", "y", "split"])
    args = [
        "sebra",
        "--dataset",
        "csv",
        "--data",
        path,
        "--path-column",
        "img",
        "--label-column",
        "y",
        "--bias-column",
        "place",
        "--out",
        tmp_path / "o",
    ]
    code, _, err = _cli(args, capsys)
    _one_line_error(code, err, "missing column(s) ['place']")
