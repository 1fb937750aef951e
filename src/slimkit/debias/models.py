"""Classifiers for debiasing: an MLP and a small CNN for CPUs, torchvision ResNets with the ``vision`` extra.

Every model is a :class:`Classifier`: a ``backbone`` that maps images ``[B, C, H, W]`` to features
``[B, D]`` and a linear ``head`` ``[B, D] -> [B, num_classes]``. Sebra's contrastive stage needs the
features, so the split is part of the interface (``model.features(x)``, ``model.head(f)``).

ResNet weights come only from a local file (``ModelConfig.weights``: safetensors, or a
``torch.save`` state dict read with ``weights_only=True``); nothing is downloaded. The ImageNet
``fc`` layer in such a file is dropped: the head is always new.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from slimkit.core.config import Config, check_choice, check_range
from slimkit.core.errors import ConfigError, ModelLoadError

ARCHS = ("mlp", "cnn", "resnet18", "resnet50")
MAX_HIDDEN = 4_096  # a CNN with 4096 channels already has ~150 M parameters


@dataclass(frozen=True, kw_only=True)
class ModelConfig(Config):
    """Which classifier to train.

    Attributes:
        arch (str): ``mlp`` (two hidden layers), ``cnn`` (three conv blocks, global average pool),
            ``resnet18`` or ``resnet50`` (torchvision; needs ``pip install 'slimkit[vision]'``).
            Default: ``mlp``.
        hidden (int): MLP width / CNN channels. Default: 128.
        weights (str | None): local file with ResNet weights (e.g. ImageNet-pretrained), or None for
            random initialisation. Not used by ``mlp``/``cnn``. Default: None.
    """

    arch: str = "mlp"
    hidden: int = 128
    weights: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("model.arch", self.arch, ARCHS)
        check_range("model.hidden", self.hidden, 1, MAX_HIDDEN)
        if self.weights is not None and not self.arch.startswith("resnet"):
            raise ConfigError(f"model.weights is only read by resnet18/resnet50, not by arch={self.arch!r}")


class Classifier(nn.Module):
    """``head(backbone(x))``; ``features`` exposes the backbone output for representation losses."""

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(feature_dim, num_classes)
        self.feature_dim = feature_dim

    def features(self, x: Tensor) -> Tensor:
        """``[B, C, H, W] -> [B, feature_dim]``."""
        return self.backbone(x)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, H, W] -> [B, num_classes]`` logits."""
        return self.head(self.features(x))


def build_model(cfg: ModelConfig, input_shape: tuple[int, int, int], num_classes: int) -> Classifier:
    """A freshly initialised classifier for images of ``input_shape`` = (C, H, W)."""
    channels, height, width = input_shape
    if cfg.arch == "mlp":
        backbone = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * height * width, cfg.hidden),
            nn.ReLU(),
            nn.Linear(cfg.hidden, cfg.hidden),
            nn.ReLU(),
        )
        return Classifier(backbone, cfg.hidden, num_classes)
    if cfg.arch == "cnn":
        c = cfg.hidden

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

        backbone = nn.Sequential(
            *block(channels, c // 2 or 1),
            *block(c // 2 or 1, c),
            nn.MaxPool2d(2) if min(height, width) >= 4 else nn.Identity(),
            *block(c, c),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        return Classifier(backbone, c, num_classes)
    return _resnet(cfg, num_classes)


def _resnet(cfg: ModelConfig, num_classes: int) -> Classifier:
    tv_models = import_torchvision_models()
    net = getattr(tv_models, cfg.arch)(weights=None)
    if cfg.weights is not None:
        state = _read_state_dict(Path(cfg.weights))
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = net.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise ModelLoadError(
                f"{cfg.weights} does not hold {cfg.arch} weights: missing {missing[:3]}, "
                f"unexpected {unexpected[:3]}"
            )
    feature_dim = net.fc.in_features
    net.fc = nn.Identity()
    return Classifier(net, feature_dim, num_classes)


def import_torchvision_models():  # noqa: ANN201 - the torchvision.models module
    """``torchvision.models``, or a :class:`ConfigError` naming the ``vision`` extra."""
    try:
        import torchvision.models as tv_models
    except ImportError:
        raise ConfigError(
            "ResNet models need torchvision: pip install 'slimkit[vision]' "
            "(the torchvision build matching your torch)"
        ) from None
    return tv_models


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise ModelLoadError(f"model weights file not found: {path} (weights are never downloaded)")
    if path.suffix == ".safetensors":
        from slimkit.core.io import load_tensors

        return load_tensors(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling refusal or corrupt file
        raise ModelLoadError(f"{path} is not a weights-only torch state dict: {e}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path} does not hold a state dict")
    return state
