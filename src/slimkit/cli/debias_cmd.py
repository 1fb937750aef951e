"""``slimkit debias``: Sebra and the debiasing baselines (ERM, JTT, LfF, group-balanced oracle)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from slimkit.cli.common import OVERWRITE, stdout

app = typer.Typer(
    help=(
        "Debias image classifiers: Sebra (self-guided spuriosity ranking + rank-guided contrastive training) "
        "and baselines, on coloured digits (built in, offline) or an image folder with a metadata CSV."
    ),
    no_args_is_help=True,
)

_DATA_HELP = "colored-digits (built in) | csv (an image folder described by --data metadata.csv)."

# shared options (the same flags on both commands)
DATASET = typer.Option("colored-digits", "--dataset", help=_DATA_HELP)
ALIGNMENT = typer.Option(
    0.99, "--alignment", help="colored-digits: fraction of bias-aligned training samples, in (0, 1]."
)
PATCH = typer.Option(
    None, "--patch-alignment", help="colored-digits: add a second bias (corner patch) with this alignment."
)
CLASSES = typer.Option(10, "--classes", help="colored-digits: number of digit classes (2-10).")
DATA = typer.Option(None, "--data", help="csv: the metadata CSV (path, label, bias columns, split).")
IMAGE_ROOT = typer.Option(
    None, "--image-root", help="csv: directory image paths are relative to (default: the CSV's)."
)
PATH_COL = typer.Option("path", "--path-column", help="csv: image path column.")
LABEL_COL = typer.Option("label", "--label-column", help="csv: class label column.")
BIAS_COL = typer.Option(["bias"], "--bias-column", help="csv: bias attribute column (repeatable).")
SPLIT_COL = typer.Option("split", "--split-column", help="csv: split column (train/val/test or 0/1/2).")
IMAGE_SIZE = typer.Option(224, "--image-size", help="csv: images are resized to this square size.")
MODEL = typer.Option("mlp", "--model", help="mlp | cnn | resnet18 | resnet50 (resnets need slimkit[vision]).")
HIDDEN = typer.Option(128, "--hidden", help="MLP width / CNN channels.")
WEIGHTS = typer.Option(None, "--weights", help="ResNet weights file (local; never downloaded).")
EPOCHS = typer.Option(30, "--epochs", help="Epochs of the final model.")
BATCH = typer.Option(64, "--batch-size", help="Batch size.")
OPTIMIZER = typer.Option("adam", "--optimizer", help="adam | sgd.")
LR = typer.Option(1e-3, "--lr", help="Learning rate.")
WD = typer.Option(0.0, "--weight-decay", help="Weight decay.")
SELECT = typer.Option(
    "last",
    "--select",
    help="Model selection: last | val-accuracy | val-worst-group (reads validation group labels).",
)
SEEDS = typer.Option(1, "--seeds", help="Number of training seeds: --seed, --seed+1, ...")
SEED = typer.Option(0, "--seed", help="First training seed.")
DATA_SEED = typer.Option(0, "--data-seed", help="colored-digits: split and colouring seed.")
DEVICE = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N.")
THREADS = typer.Option(
    1,
    "--threads",
    help="torch CPU threads. Default 1: the CPU models are tiny and lose time to thread hand-offs "
    "(6x slower with 2 on a busy 2-core machine); raise it for ResNets on a CPU.",
)
OUT = typer.Option(
    ..., "--out", help="Output directory (results.json, seed*/, ranking.png; written atomically)."
)
MAX_SEEDS = 1_000
MAX_SEED = 2**32 - 1
MAX_THREADS = 1_024


def _splits(
    dataset: str,
    alignment: float,
    patch: float | None,
    classes: int,
    data_seed: int,
    data: Path | None,
    image_root: Path | None,
    path_col: str,
    label_col: str,
    bias_cols: list[str],
    split_col: str,
    image_size: int,
):
    from slimkit.core.errors import ConfigError
    from slimkit.debias import ColoredDigitsConfig, colored_digits, read_metadata_csv

    if dataset == "colored-digits":
        cfg = ColoredDigitsConfig(
            alignment=alignment, patch_alignment=patch, num_classes=classes, seed=data_seed
        )
        return colored_digits(cfg)
    if dataset == "csv":
        if data is None:
            raise ConfigError("--dataset csv needs --data METADATA.csv")
        return read_metadata_csv(
            data,
            image_root=image_root,
            path_column=path_col,
            label_column=label_col,
            bias_columns=tuple(bias_cols),
            split_column=split_col,
            image_size=image_size,
        )
    raise ConfigError(f"--dataset {dataset!r} is not one of ['colored-digits', 'csv']")


def _preflight(
    seeds: int,
    seed: int,
    threads: int,
    device: str,
    out: Path,
    overwrite: bool,
    inputs: tuple[Path | None, ...],
) -> tuple[Path, ...]:
    """Check the run options and that ``out`` can be written, before any data is read or trained on.

    Returns the input paths ``out`` may not be or contain.
    """
    from slimkit.core.devices import resolve_device
    from slimkit.core.errors import ConfigError
    from slimkit.core.io import check_output_dir

    if isinstance(seeds, bool) or not 1 <= seeds <= MAX_SEEDS:
        raise ConfigError(f"--seeds={seeds} must be in [1, {MAX_SEEDS}]")
    if not 0 <= seed <= MAX_SEED - (seeds - 1):
        raise ConfigError(f"--seed={seed} must be in [0, {MAX_SEED - (seeds - 1)}] (with --seeds={seeds})")
    if not 1 <= threads <= MAX_THREADS:
        raise ConfigError(f"--threads={threads} must be in [1, {MAX_THREADS}]")
    resolve_device(device)
    protect = tuple(p for p in inputs if p is not None)
    check_output_dir(out, protect=protect, overwrite=overwrite)
    return protect


def _common(
    model: str,
    hidden: int,
    weights: Path | None,
    epochs: int,
    batch: int,
    optimizer: str,
    lr: float,
    wd: float,
    select: str,
) -> dict[str, Any]:
    from slimkit.core.errors import ModelLoadError
    from slimkit.debias import ModelConfig

    model_cfg = ModelConfig(arch=model, hidden=hidden, weights=None if weights is None else str(weights))
    if model_cfg.arch.startswith("resnet"):  # before any data is read: a missing extra or file fails now
        from slimkit.debias.models import import_torchvision_models

        import_torchvision_models()
    if weights is not None and not weights.is_file():
        raise ModelLoadError(f"--weights {weights} is not a file (weights are never downloaded)")
    return {
        "model": model_cfg,
        "epochs": epochs,
        "batch_size": batch,
        "optimizer": optimizer,
        "lr": lr,
        "weight_decay": wd,
        "model_selection": select,
    }


def _run(
    cfg: Any,
    splits: Any,
    seeds: int,
    seed: int,
    device: str,
    threads: int,
    out: Path,
    overwrite: bool = False,
    protect: tuple[Path, ...] = (),
) -> None:
    import torch
    from rich.table import Table

    from slimkit.debias import run_seeds, save_runs

    torch.set_num_threads(threads)
    runs, summary = run_seeds(cfg, splits, list(range(seed, seed + seeds)), device=device, progress=True)
    save_runs(out, runs, summary, splits, overwrite=overwrite, protect=protect)
    table = Table(title=f"{runs[0].method} on {splits.name} ({seeds} seed{'s' if seeds > 1 else ''}, test)")
    table.add_column("metric")
    table.add_column("mean ± std", justify="right")
    metrics = summary["metrics"]
    for key in (
        "worst_group_accuracy",
        "worst_cell_accuracy",
        "bias_conflicting_accuracy",
        "unbiased_accuracy",
        "accuracy",
        "id_accuracy",
    ):
        if key in metrics["test"]:
            table.add_row(key, f"{metrics['test'][key]:.4f} ± {metrics['test'][key + '_std']:.4f}")
    if "auroc" in metrics.get("ranking", {}):
        table.add_row(
            "ranking AUROC (train)",
            f"{metrics['ranking']['auroc']:.4f} ± {metrics['ranking']['auroc_std']:.4f}",
        )
    table.add_row("train seconds", f"{metrics['training']['seconds']:.1f}")
    stdout.print(table)
    stdout.print(f"wrote {out}")


@app.command(
    "sebra",
    help=(
        "Sebra (arXiv 2501.18277): rank training samples by spuriosity without bias labels, then train a fresh "
        "model with the rank-guided contrastive loss. Writes results.json (mean ± std over seeds), per-seed "
        "results and ranks, and ranking.png (rank vs bias-conflicting fraction).\n\n"
        "Examples:\n\n"
        "    slimkit debias sebra --dataset colored-digits --alignment 0.99 --seeds 3 --out runs/sebra99\n\n"
        "    slimkit debias sebra --alignment 0.995 --patch-alignment 0.9 --model cnn --hidden 32 --out runs/s2\n\n"
        "    slimkit debias sebra --dataset csv --data waterbirds/metadata.csv --path-column img_filename "
        "--label-column y --bias-column place --model resnet50 --weights r50.safetensors --optimizer sgd "
        "--lr 1e-3 --select val-worst-group --device cuda --out runs/wb"
    ),
)
def sebra(
    dataset: str = DATASET,
    alignment: float = ALIGNMENT,
    patch_alignment: float | None = PATCH,
    classes: int = CLASSES,
    data_seed: int = DATA_SEED,
    data: Path | None = DATA,
    image_root: Path | None = IMAGE_ROOT,
    path_column: str = PATH_COL,
    label_column: str = LABEL_COL,
    bias_column: list[str] = BIAS_COL,
    split_column: str = SPLIT_COL,
    image_size: int = IMAGE_SIZE,
    model: str = MODEL,
    hidden: int = HIDDEN,
    weights: Path | None = WEIGHTS,
    epochs: int = EPOCHS,
    batch_size: int = BATCH,
    optimizer: str = OPTIMIZER,
    lr: float = LR,
    weight_decay: float = WD,
    select: str = SELECT,
    seeds: int = SEEDS,
    seed: int = SEED,
    device: str = DEVICE,
    threads: int = THREADS,
    out: Path = OUT,
    overwrite: bool = OVERWRITE,
    beta_inv: float = typer.Option(
        0.7, "--beta-inv", help="Stage 1: exponent of p_y in the loss weight (β⁻¹)."
    ),
    p_critical: float = typer.Option(
        0.7, "--p-critical", help="Stage 1: eliminate samples with p_y above this."
    ),
    max_rounds: int = typer.Option(100, "--max-rounds", help="Stage 1: round limit."),
    rank_lr: float = typer.Option(1e-3, "--rank-lr", help="Stage 1: learning rate."),
    rank_batch_size: int = typer.Option(64, "--rank-batch-size", help="Stage 1: batch size."),
    gap: int = typer.Option(3, "--gap", help="Stage 2: positive's rank = anchor's rank + gap (clamped)."),
    temperature: float = typer.Option(0.1, "--temperature", help="Stage 2: contrastive temperature τ."),
    cls_weight: float = typer.Option(1.0, "--cls-weight", help="Stage 2: weight of the cross-entropy."),
) -> None:
    from slimkit.debias import SebraConfig

    cfg = SebraConfig(
        **_common(model, hidden, weights, epochs, batch_size, optimizer, lr, weight_decay, select),
        beta_inv=beta_inv,
        p_critical=p_critical,
        max_rounds=max_rounds,
        rank_lr=rank_lr,
        rank_batch_size=rank_batch_size,
        gap=gap,
        temperature=temperature,
        cls_weight=cls_weight,
    )
    protect = _preflight(seeds, seed, threads, device, out, overwrite, (data, image_root, weights))
    splits = _splits(
        dataset,
        alignment,
        patch_alignment,
        classes,
        data_seed,
        data,
        image_root,
        path_column,
        label_column,
        bias_column,
        split_column,
        image_size,
    )
    _run(cfg, splits, seeds, seed, device, threads, out, overwrite, protect)


@app.command(
    "baseline",
    help=(
        "Train a baseline in the same harness as Sebra: erm, jtt (train, up-weight the errors, retrain), lff "
        "(GCE-biased model + re-weighting) or group-balanced (an oracle: samples by the TRUE group labels).\n\n"
        "Examples:\n\n"
        "    slimkit debias baseline --method erm --alignment 0.99 --seeds 3 --out runs/erm99\n\n"
        "    slimkit debias baseline --method jtt --id-epochs 2 --upweight 20 --out runs/jtt99\n\n"
        "    slimkit debias baseline --method group-balanced --alignment 0.995 --out runs/oracle"
    ),
)
def baseline(
    method: str = typer.Option(..., "--method", help="erm | jtt | lff | group-balanced."),
    dataset: str = DATASET,
    alignment: float = ALIGNMENT,
    patch_alignment: float | None = PATCH,
    classes: int = CLASSES,
    data_seed: int = DATA_SEED,
    data: Path | None = DATA,
    image_root: Path | None = IMAGE_ROOT,
    path_column: str = PATH_COL,
    label_column: str = LABEL_COL,
    bias_column: list[str] = BIAS_COL,
    split_column: str = SPLIT_COL,
    image_size: int = IMAGE_SIZE,
    model: str = MODEL,
    hidden: int = HIDDEN,
    weights: Path | None = WEIGHTS,
    epochs: int = EPOCHS,
    batch_size: int = BATCH,
    optimizer: str = OPTIMIZER,
    lr: float = LR,
    weight_decay: float = WD,
    select: str = SELECT,
    seeds: int = SEEDS,
    seed: int = SEED,
    device: str = DEVICE,
    threads: int = THREADS,
    out: Path = OUT,
    overwrite: bool = OVERWRITE,
    id_epochs: int | None = typer.Option(
        None, "--id-epochs", help="jtt: epochs of the identification model (2)."
    ),
    upweight: int | None = typer.Option(
        None, "--upweight", help="jtt: copies of each misclassified sample (20)."
    ),
    gce_q: float | None = typer.Option(None, "--gce-q", help="lff: GCE exponent q (0.7)."),
    ema: float | None = typer.Option(None, "--ema", help="lff: loss EMA factor (0.7)."),
) -> None:
    from slimkit.core.errors import ConfigError
    from slimkit.debias import METHODS

    if method == "sebra" or method not in METHODS.names():
        raise ConfigError(f"--method {method!r} is not one of {[n for n in METHODS.names() if n != 'sebra']}")
    extra = {"id_epochs": id_epochs, "upweight": upweight, "q": gce_q, "ema": ema}
    cfg_cls = METHODS.config_for(method)
    fields = set(cfg_cls.__dataclass_fields__)
    given = {k: v for k, v in extra.items() if v is not None}
    flag = {"id_epochs": "--id-epochs", "upweight": "--upweight", "q": "--gce-q", "ema": "--ema"}
    for key in given:
        if key not in fields:
            raise ConfigError(f"{flag[key]} does not apply to --method {method}")
    cfg = cfg_cls(
        **_common(model, hidden, weights, epochs, batch_size, optimizer, lr, weight_decay, select), **given
    )
    protect = _preflight(seeds, seed, threads, device, out, overwrite, (data, image_root, weights))
    splits = _splits(
        dataset,
        alignment,
        patch_alignment,
        classes,
        data_seed,
        data,
        image_root,
        path_column,
        label_column,
        bias_column,
        split_column,
        image_size,
    )
    _run(cfg, splits, seeds, seed, device, threads, out, overwrite, protect)
