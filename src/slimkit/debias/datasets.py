"""Biased image-classification data: coloured digits (offline) and an image folder + metadata CSV reader.

A :class:`BiasDataset` holds images, class labels and one or more *bias attributes* per sample
(colour, background, ...), plus each class's *aligned* value of every attribute (the value the
attribute takes for most training samples of that class). A sample is **bias-conflicting** when any
attribute differs from its class's aligned value.

Groups (for worst-group accuracy and the group-balanced oracle) are ``(class, which attributes
conflict)``: ``group = y · 2^K + Σ_k [a_k ≠ aligned_k(y)] · 2^k`` for K attributes. With binary
classes and attributes (Waterbirds: y × place; CelebA; UrbanCars: y × background × co-object) these
are exactly the usual groups; with 10 coloured-digit classes they are 20 groups (each digit, aligned
or conflicting colour), large enough for a stable worst-group number.

Group and bias labels are for evaluation (and opt-in model selection) only; Sebra never trains on them.
"""

from __future__ import annotations

import csv
import io
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from slimkit.core.config import Config, check_range
from slimkit.core.errors import ConfigError, DataError
from slimkit.core.io import read_text_file

#: ten well-separated stroke colours (RGB in [0, 1]); class ``y``'s aligned colour is ``PALETTE[y]``.
PALETTE = (
    (0.89, 0.10, 0.11),  # red
    (0.22, 0.49, 0.92),  # blue
    (0.30, 0.79, 0.29),  # green
    (0.60, 0.31, 0.84),  # purple
    (1.00, 0.55, 0.00),  # orange
    (1.00, 1.00, 0.20),  # yellow
    (0.65, 0.34, 0.16),  # brown
    (0.97, 0.51, 0.75),  # pink
    (0.60, 0.60, 0.60),  # grey
    (0.00, 0.85, 0.85),  # cyan
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: image formats read from a dataset folder. Pillow's other plugins are never asked: some (EPS) run
#: external programs on the file, and a dataset of photos needs none of them.
IMAGE_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP", "PPM")
#: an image claiming more pixels than this is refused before it is decoded (Pillow's own
#: decompression-bomb threshold, about 9459 x 9459, enforced even if ``PIL.Image.MAX_IMAGE_PIXELS``
#: was changed).
MAX_IMAGE_PIXELS = 89_478_485
#: images are resized to at most this square size (a batch of 64 is then 800 MB of float32).
MAX_IMAGE_SIZE = 1_024
MAX_TRAIN_COPIES = 200
#: class ids of a metadata CSV must be below this (the head and per-group metrics are that wide)
MAX_CLASSES = 10_000
#: groups are (class, which attributes conflict): 2^K per class for K bias columns
MAX_BIAS_COLUMNS = 8


def _open_image(path: Path) -> object:
    """``PIL.Image.open`` restricted to :data:`IMAGE_FORMATS`, with the pixel count checked (header only)."""
    from PIL import Image

    img = Image.open(path, formats=IMAGE_FORMATS)
    width, height = img.size
    if width * height > MAX_IMAGE_PIXELS:
        img.close()
        raise DataError(
            f"image {path} claims {width} x {height} pixels, more than the cap of {MAX_IMAGE_PIXELS:,} "
            "(a decompression bomb?)"
        )
    return img


def read_image(path: Path, size: int) -> np.ndarray:
    """``[size, size, 3]`` float32 in [0, 1]; any unreadable, refused or oversized image is a :class:`DataError`.

    Pillow's ``DecompressionBombWarning`` is an error here, like its ``DecompressionBombError``.
    """
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with _open_image(path) as img:  # type: ignore[attr-defined]
                img = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
                return np.asarray(img, dtype=np.float32) / 255.0
        except DataError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise DataError(f"image {path} is refused as a decompression bomb: {e}") from None
        except MemoryError:
            raise DataError(f"image {path} is too large to decode") from None
        except Exception as e:  # noqa: BLE001 - Pillow's plugins raise many types for corrupt files
            raise DataError(f"cannot read image {path}: {type(e).__name__}: {e}") from None


def check_image(path: Path) -> None:
    """Read only ``path``'s header: a supported format and a pixel count under the cap, else :class:`DataError`."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            _open_image(path).close()  # type: ignore[attr-defined]
        except DataError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise DataError(f"image {path} is refused as a decompression bomb: {e}") from None
        except Exception as e:  # noqa: BLE001 - Pillow's plugins raise many types for corrupt files
            raise DataError(
                f"cannot read image {path}: {type(e).__name__}: {e} (formats read: {', '.join(IMAGE_FORMATS)})"
            ) from None


class ImageFiles:
    """Images on disk, read on demand with Pillow, resized to ``size × size``, RGB, optionally normalised.

    ``files[idx]`` for a LongTensor ``idx`` returns ``[len(idx), 3, size, size]`` float32.
    """

    def __init__(self, paths: list[Path], size: int, normalize: bool = True) -> None:
        self.paths = list(paths)
        self.size = size
        self.normalize = normalize

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, idx: Tensor) -> ImageFiles:
        return ImageFiles([self.paths[i] for i in idx.tolist()], self.size, self.normalize)

    def __getitem__(self, idx: Tensor) -> Tensor:
        out = torch.empty(len(idx), 3, self.size, self.size)
        for row, i in enumerate(idx.tolist()):
            out[row] = torch.from_numpy(read_image(self.paths[i], self.size)).permute(2, 0, 1)
        if self.normalize:
            mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
            out = (out - mean) / std
        return out


@dataclass
class BiasDataset:
    """Images with class labels and bias attributes.

    Attributes:
        inputs: ``[N, C, H, W]`` float tensor, or :class:`ImageFiles` read on demand.
        labels: ``[N]`` int64 class ids in ``[0, num_classes)``.
        bias: ``[N, K]`` int64 bias-attribute values (K >= 1).
        aligned_values: ``[num_classes, K]`` int64: attribute k's aligned value for class y.
        num_classes: number of classes (>= 2).
        bias_names: the K attribute names.
    """

    inputs: Tensor | ImageFiles
    labels: Tensor
    bias: Tensor
    aligned_values: Tensor
    num_classes: int
    bias_names: tuple[str, ...] = ("bias",)
    input_shape: tuple[int, int, int] = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.labels)
        if n == 0:
            raise DataError("the dataset is empty")
        if self.num_classes < 2:
            raise DataError(f"debiasing needs at least 2 classes, the dataset has {self.num_classes}")
        if self.bias.dim() != 2 or len(self.bias) != n or len(self.inputs) != n:
            raise DataError(f"inputs, labels and bias must have one row per sample ({n} labels)")
        if tuple(self.aligned_values.shape) != (self.num_classes, self.bias.shape[1]):
            raise DataError("aligned_values must be [num_classes, num_bias_attributes]")
        if len(self.bias_names) != self.bias.shape[1]:
            raise DataError(f"{self.bias.shape[1]} bias attributes but names {self.bias_names}")
        if int(self.labels.min()) < 0 or int(self.labels.max()) >= self.num_classes:
            raise DataError(f"labels must lie in [0, {self.num_classes})")
        if isinstance(self.inputs, Tensor):
            self.input_shape = tuple(self.inputs.shape[1:])  # type: ignore[assignment]
        else:
            self.input_shape = (3, self.inputs.size, self.inputs.size)

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, idx: Tensor, device: torch.device | str = "cpu") -> Tensor:
        """Images ``[len(idx), C, H, W]`` on ``device``."""
        return self.inputs[idx].to(device)

    def subset(self, idx: Tensor) -> BiasDataset:
        inputs = self.inputs.subset(idx) if isinstance(self.inputs, ImageFiles) else self.inputs[idx]
        return BiasDataset(
            inputs, self.labels[idx], self.bias[idx], self.aligned_values, self.num_classes, self.bias_names
        )

    @property
    def num_bias(self) -> int:
        return self.bias.shape[1]

    @property
    def attribute_conflicts(self) -> Tensor:
        """``[N, K]`` bool: attribute k differs from the class's aligned value."""
        return self.bias != self.aligned_values[self.labels]

    @property
    def conflicting(self) -> Tensor:
        """``[N]`` bool: the sample is bias-conflicting (any attribute conflicts)."""
        return self.attribute_conflicts.any(dim=1)

    @property
    def num_groups(self) -> int:
        return self.num_classes * 2**self.num_bias

    @property
    def group_ids(self) -> Tensor:
        """``[N]`` int64: ``y · 2^K + Σ_k conflict_k · 2^k``."""
        bits = (self.attribute_conflicts.long() * (2 ** torch.arange(self.num_bias))).sum(dim=1)
        return self.labels * 2**self.num_bias + bits

    def group_name(self, group: int) -> str:
        y, bits = divmod(group, 2**self.num_bias)
        parts = [
            f"{name}={'conflict' if bits >> k & 1 else 'aligned'}" for k, name in enumerate(self.bias_names)
        ]
        return f"y={y}," + ",".join(parts)


@dataclass
class DebiasSplits:
    """Train / validation (optional) / test data of one benchmark."""

    name: str
    train: BiasDataset
    test: BiasDataset
    val: BiasDataset | None = None

    def summary(self) -> dict[str, int | float]:
        out: dict[str, int | float] = {
            "train": len(self.train),
            "test": len(self.test),
            "val": 0 if self.val is None else len(self.val),
            "train_conflicting": int(self.train.conflicting.sum()),
            "classes": self.train.num_classes,
        }
        return out


# -- coloured digits ---------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ColoredDigitsConfig(Config):
    """Coloured digits: scikit-learn's 8×8 digits (1797 images, bundled, no download) with a colour bias.

    The LfF Colored-MNIST protocol (Nam et al., arXiv 2007.02561) on a CPU-sized base set: each class
    ``y`` has a stroke colour ``PALETTE[y]``; in training, exactly ``round((1 - alignment)·N)`` samples
    (chosen at random) take another class's colour instead, spread evenly over the other classes. The
    stroke colour is ``colour + N(0, color_std)`` per sample. Optionally a second bias: a 2×2 patch in
    the top-left corner whose colour is ``PALETTE[y]`` with probability ``patch_alignment``.

    Digit images are split per class into test (``test_per_class``), validation (``val_per_class``)
    and train (the rest, ~110 per class). Training images are rendered ``train_copies`` times with
    independent colours (more bias-conflicting samples at high alignment). Validation and test are
    **group-balanced**: every held-out digit is rendered in every colour (and, with a patch, once with
    the aligned and once with a conflicting patch), so each (class, colour) cell of the test set holds
    exactly ``test_per_class`` images (5000 in all with the defaults).

    Attributes:
        alignment (float): fraction of bias-aligned training samples, in (0, 1]. Default: 0.99.
        num_classes (int): use digits ``0 .. num_classes-1``, in [2, 10]. Default: 10.
        patch_alignment (float | None): alignment of the second (patch) bias, or None for none. Default: None.
        train_copies (int): renderings of each training digit. Default: 3.
        val_per_class (int): held-out digit images per class for validation (0: none). Default: 20.
        test_per_class (int): held-out digit images per class for the test set. Default: 50.
        color_std (float): per-sample colour jitter σ. Default: 0.05.
        seed (int): the split and colouring seed (independent of the training seed). Default: 0.
    """

    alignment: float = 0.99
    num_classes: int = 10
    patch_alignment: float | None = None
    train_copies: int = 3
    val_per_class: int = 20
    test_per_class: int = 50
    color_std: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("alignment", self.alignment, 0.0, 1.0, lo_inclusive=False)
        if self.patch_alignment is not None:
            check_range("patch_alignment", self.patch_alignment, 0.0, 1.0, lo_inclusive=False)
        check_range("num_classes", self.num_classes, 2, len(PALETTE))
        check_range("train_copies", self.train_copies, 1, MAX_TRAIN_COPIES)
        check_range("val_per_class", self.val_per_class, 0, None)
        check_range("test_per_class", self.test_per_class, 1, None)
        check_range("color_std", self.color_std, 0.0, 1e3)
        check_range("seed", self.seed, 0, 2**32 - 1)

    @property
    def name(self) -> str:
        patch = "" if self.patch_alignment is None else f"-patch{self.patch_alignment:g}"
        return f"colored-digits-{self.alignment:g}{patch}"


def colored_digits(cfg: ColoredDigitsConfig | None = None) -> DebiasSplits:
    """Generate the coloured-digits benchmark (deterministic in ``cfg``; ~0.1 s)."""
    from sklearn.datasets import load_digits

    cfg = cfg or ColoredDigitsConfig()
    digits = load_digits()
    keep = digits.target < cfg.num_classes
    strokes = torch.tensor(digits.images[keep] / 16.0, dtype=torch.float32)  # [M, 8, 8] in [0, 1]
    targets = torch.tensor(digits.target[keep], dtype=torch.long)
    held_out = cfg.val_per_class + cfg.test_per_class
    smallest = int(torch.bincount(targets).min())
    if held_out >= smallest:
        raise DataError(
            f"val_per_class + test_per_class = {held_out} leaves no training images "
            f"(the smallest class has {smallest} digit images)"
        )
    gen = torch.Generator().manual_seed(cfg.seed)
    parts: dict[str, list[Tensor]] = {"test": [], "val": [], "train": []}
    for y in range(cfg.num_classes):
        members = torch.nonzero(targets == y).flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        parts["test"].append(members[: cfg.test_per_class])
        parts["val"].append(members[cfg.test_per_class : held_out])
        parts["train"].append(members[held_out:])
    test_idx, val_idx, train_idx = (torch.cat(parts[k]) for k in ("test", "val", "train"))
    palette = torch.tensor(PALETTE[: cfg.num_classes])
    aligned = torch.arange(cfg.num_classes).unsqueeze(1).repeat(1, 1 if cfg.patch_alignment is None else 2)
    names = ("color",) if cfg.patch_alignment is None else ("color", "patch")

    def make(strokes_: Tensor, labels: Tensor, bias: Tensor) -> BiasDataset:
        images = _render(strokes_, bias, palette, cfg.color_std, gen)
        return BiasDataset(images, labels, bias, aligned, cfg.num_classes, names)

    # training: biased colours, exact conflicting counts
    train_strokes = strokes[train_idx].repeat(cfg.train_copies, 1, 1)
    train_labels = targets[train_idx].repeat(cfg.train_copies)
    columns = [biased_attribute(train_labels, cfg.alignment, cfg.num_classes, gen)]
    if cfg.patch_alignment is not None:
        columns.append(biased_attribute(train_labels, cfg.patch_alignment, cfg.num_classes, gen))
    train = make(train_strokes, train_labels, torch.stack(columns, dim=1))

    def balanced(idx: Tensor) -> BiasDataset:
        s, y, b = _balanced_bias(
            strokes[idx], targets[idx], cfg.num_classes, cfg.patch_alignment is not None, gen
        )
        return make(s, y, b)

    val = balanced(val_idx) if cfg.val_per_class > 0 else None
    return DebiasSplits(cfg.name, train, balanced(test_idx), val)


def biased_attribute(labels: Tensor, alignment: float, num_values: int, gen: torch.Generator) -> Tensor:
    """Attribute values ``[N]``: ``labels`` except for exactly ``round((1-alignment)·N)`` random samples.

    Conflicting samples take value ``(y + o) mod num_values`` with offsets ``o`` cycling through
    ``1 .. num_values-1``, so conflicting values are spread evenly over the other classes.
    """
    n = len(labels)
    n_conflicting = round((1.0 - alignment) * n)
    chosen = torch.randperm(n, generator=gen)[:n_conflicting]
    offsets = 1 + torch.arange(n_conflicting) % (num_values - 1)
    values = labels.clone()
    values[chosen] = (labels[chosen] + offsets) % num_values
    return values


def _balanced_bias(
    strokes: Tensor, labels: Tensor, num_classes: int, with_patch: bool, gen: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """Every digit in every colour (and, with a patch, in every (colour, patch colour) pair).

    Every (class, colour[, patch]) cell then holds the same number of images, so the unbiased accuracy
    (the mean over cells) and the worst cell compare equally sized cells. ``gen`` is unused: the
    held-out sets are a full product, not a draw.
    """
    del gen
    m = len(labels)
    values = num_classes**2 if with_patch else num_classes
    combo = torch.arange(values).repeat_interleave(m)
    strokes, labels = strokes.repeat(values, 1, 1), labels.repeat(values)
    if not with_patch:
        return strokes, labels, combo.unsqueeze(1)
    return strokes, labels, torch.stack([combo // num_classes, combo % num_classes], dim=1)


def _render(strokes: Tensor, bias: Tensor, palette: Tensor, color_std: float, gen: torch.Generator) -> Tensor:
    """``[N, 8, 8]`` stroke intensities -> ``[N, 3, 8, 8]`` coloured images (plus the optional patch)."""
    color = palette[bias[:, 0]] + color_std * torch.randn(len(bias), 3, generator=gen)
    images = strokes.unsqueeze(1) * color.clamp(0, 1).view(-1, 3, 1, 1)
    if bias.shape[1] > 1:
        images[:, :, :2, :2] = palette[bias[:, 1]].view(-1, 3, 1, 1)
    return images.contiguous()


# -- image folder + metadata CSV ------------------------------------------------------------------------------
_SPLIT_NAMES = {
    "train": "train",
    "0": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "1": "val",
    "test": "test",
    "2": "test",
}


def read_metadata_csv(
    csv_path: str | Path,
    *,
    image_root: str | Path | None = None,
    path_column: str = "path",
    label_column: str = "label",
    bias_columns: tuple[str, ...] = ("bias",),
    split_column: str = "split",
    image_size: int = 224,
    normalize: bool = True,
) -> DebiasSplits:
    """Read an image folder described by a metadata CSV (the Waterbirds / CelebA / UrbanCars layouts).

    One row per image: its path (relative to ``image_root``, default the CSV's directory), class label,
    bias attributes and split (``train``/``val``/``test``, or Waterbirds' ``0``/``1``/``2``). Labels and
    attributes may be integers or strings (strings are numbered in sorted order); CelebA's ``-1``/``1``
    attribute coding reads as ``0``/``1``. Integer class ids must be consecutive from 0 (a gap would be a
    class with no samples). Each class's aligned
    attribute value is its most frequent value among the class's *training* rows. For Waterbirds'
    ``metadata.csv``: ``path_column="img_filename", label_column="y", bias_columns=("place",)``.

    Images are read lazily with Pillow (no torchvision needed), resized to ``image_size`` and
    normalised with the ImageNet mean/std when ``normalize``. Every image's header is checked up front
    (a format of :data:`IMAGE_FORMATS`, at most :data:`MAX_IMAGE_PIXELS` pixels), so a bad file fails
    before training rather than in the middle of it.

    The CSV must be UTF-8 (a byte-order mark is allowed). Image paths must stay inside ``image_root``:
    absolute paths, ``..`` and symlinks that resolve outside it are refused.

    Raises:
        DataError: the CSV or an image is missing, not UTF-8, malformed or refused; a column is missing
            (named); a path leaves the image root; a split value is unknown; the train or test split
            is empty; there is only one class; or integer class ids have gaps.
        ConfigError: ``image_size`` outside ``[1, MAX_IMAGE_SIZE]``.
    """
    check_range("image_size", image_size, 1, MAX_IMAGE_SIZE)
    bias_columns = tuple(bias_columns)
    if not 1 <= len(bias_columns) <= MAX_BIAS_COLUMNS:
        raise ConfigError(
            f"bias_columns must name 1 to {MAX_BIAS_COLUMNS} columns, got {len(bias_columns)}: {list(bias_columns)}"
        )
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"metadata CSV not found: {csv_path}")
    root = Path(image_root) if image_root is not None else csv_path.parent
    if not root.is_dir():
        raise DataError(f"image root {root} is not a directory")
    header, rows = _read_csv_rows(csv_path, [path_column, label_column, *bias_columns, split_column])
    if not rows:
        raise DataError(f"{csv_path} has no rows")

    labels = _encode(csv_path, label_column, [r[label_column] for r in rows])
    bias = torch.stack([_encode(csv_path, c, [r[c] for r in rows]) for c in bias_columns], dim=1)
    splits = []
    for line, r in enumerate(rows, start=2):
        split = _SPLIT_NAMES.get(r[split_column].strip().lower())
        if split is None:
            raise DataError(
                f"{csv_path}:{line}: unknown split {r[split_column]!r} (use train/val/test or 0/1/2)"
            )
        splits.append(split)
    base = root.resolve()
    paths = [_image_path(csv_path, line, root, base, r[path_column]) for line, r in enumerate(rows, start=2)]

    distinct = sorted(set(labels.tolist()))
    if len(distinct) < 2:
        raise DataError(
            f"{csv_path}: column {label_column!r} has only one class ({distinct[0]}); debiasing needs at least 2"
        )
    num_classes = distinct[-1] + 1
    if num_classes > MAX_CLASSES:
        raise DataError(
            f"{csv_path}: column {label_column!r} has class id {distinct[-1]}; class ids must be below "
            f"{MAX_CLASSES} (use consecutive ids or string labels)"
        )
    if len(distinct) != num_classes:
        absent = sorted(set(range(num_classes)) - set(distinct))
        raise DataError(
            f"{csv_path}: column {label_column!r} has class ids {_short_list(distinct)} with "
            f"{_short_list(absent)} absent: those classes would have no samples; renumber the ids "
            "consecutively from 0 or use string labels"
        )
    split_arr = np.array(splits)
    index = {s: torch.from_numpy(np.flatnonzero(split_arr == s)) for s in ("train", "val", "test")}
    for s in ("train", "test"):
        if len(index[s]) == 0:
            raise DataError(f"{csv_path}: the {s!r} split is empty")
    aligned = _modal_values(labels[index["train"]], bias[index["train"]], num_classes)
    for p in paths:
        check_image(p)
    files = ImageFiles(paths, image_size, normalize)

    def part(s: str) -> BiasDataset:
        idx = index[s]
        return BiasDataset(
            files.subset(idx), labels[idx], bias[idx], aligned, num_classes, tuple(bias_columns)
        )

    return DebiasSplits(
        csv_path.parent.name or csv_path.stem,
        part("train"),
        part("test"),
        part("val") if len(index["val"]) else None,
    )


def _read_csv_rows(csv_path: Path, needed: list[str]) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of a UTF-8 CSV; each row has every ``needed`` column, else :class:`DataError`."""
    # the shared reader: a regular file of bounded size, UTF-8 (Excel's byte-order mark is dropped)
    text = read_text_file(csv_path, error=DataError).removeprefix("\ufeff")
    try:
        with io.StringIO(text, newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in needed if c not in header]
            if missing:
                raise DataError(f"{csv_path}: missing column(s) {missing}; the header has {header}")
            rows = []
            for r in reader:
                if any(r.get(c) is None for c in needed):
                    raise DataError(
                        f"{csv_path}:{reader.line_num}: the row has fewer fields than the header ({len(header)})"
                    )
                rows.append(r)
    except csv.Error as e:
        raise DataError(f"{csv_path} is not a readable CSV: {e}") from None
    return header, rows


def _image_path(csv_path: Path, line: int, root: Path, base: Path, text: str) -> Path:
    """``root / text`` resolved, refusing anything that leaves ``root`` (absolute, ``..``, symlinks out).

    ``base`` is ``root.resolve()``, computed once by the caller.
    """
    rel = text.strip()
    if not rel:
        raise DataError(f"{csv_path}:{line}: empty image path")
    candidate = Path(rel)
    if candidate.is_absolute() or candidate.drive or ".." in candidate.parts or "\x00" in rel:
        raise DataError(
            f"{csv_path}:{line}: image path {rel!r} is refused: paths must be relative to {root} without '..'"
        )
    try:
        path = (base / candidate).resolve()
    except (OSError, RuntimeError, ValueError) as e:  # RuntimeError: a symlink loop (Python < 3.13)
        raise DataError(f"{csv_path}:{line}: image path {rel!r} cannot be resolved: {e}") from None
    if path != base and base not in path.parents:
        raise DataError(
            f"{csv_path}:{line}: image path {rel!r} resolves to {path}, outside the image root {base}; refused"
        )
    if not path.is_file():
        raise DataError(f"{csv_path}:{line}: image not found: {root / candidate}")
    return path


def _short_list(values: list[int], limit: int = 8) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}]"


def _encode(csv_path: Path, column: str, values: list[str]) -> Tensor:
    """Integer column values as-is (must be >= 0; CelebA's -1/1 becomes 0/1); strings numbered in sorted order."""
    stripped = [v.strip() for v in values]
    if any(v == "" for v in stripped):
        raise DataError(f"{csv_path}: column {column!r} has empty values")
    try:
        ints = [int(v) for v in stripped]
    except ValueError:
        vocab = {v: i for i, v in enumerate(sorted(set(stripped)))}
        ints = [vocab[v] for v in stripped]
    if set(ints) == {-1, 1} or set(ints) == {-1}:  # CelebA's list_attr_celeba.txt codes absent as -1
        ints = [(v + 1) // 2 for v in ints]
    if min(ints) < 0:
        raise DataError(f"{csv_path}: column {column!r} has negative values")
    if max(ints) >= 2**31:
        raise DataError(
            f"{csv_path}: column {column!r} has value {max(ints)}; integer values must be below 2^31"
        )
    return torch.tensor(ints, dtype=torch.long)


def _modal_values(labels: Tensor, bias: Tensor, num_classes: int) -> Tensor:
    """``[num_classes, K]``: the most frequent value of each attribute among each class's samples."""
    out = torch.zeros(num_classes, bias.shape[1], dtype=torch.long)
    for y in range(num_classes):
        rows = bias[labels == y]
        for k in range(bias.shape[1]):
            if len(rows):
                out[y, k] = Counter(rows[:, k].tolist()).most_common(1)[0][0]
    return out
