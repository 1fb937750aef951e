"""Debiasing: Sebra and baselines on biased image classification (``slimkit debias``).

- :mod:`.datasets`: coloured digits (offline, from scikit-learn) and an image folder + metadata CSV
  reader (Waterbirds / CelebA / UrbanCars layouts); :class:`BiasDataset`.
- :mod:`.models`: MLP, small CNN, torchvision ResNet-18/50 (``vision`` extra).
- :mod:`.sebra`: Sebra (arXiv 2501.18277) stage 1 ranking and stage 2 contrastive debiasing.
- :mod:`.baselines`: ERM, JTT, LfF, the group-balanced oracle.
- :mod:`.metrics`: worst-group, average, I.D., bias-conflicting and unbiased accuracy; ranking AUROC.
- :mod:`.runner`: the shared harness (``run_method``, ``run_seeds``, ``save_runs``).
"""

from slimkit.debias.baselines import ERMConfig, GroupBalancedConfig, JTTConfig, LfFConfig
from slimkit.debias.config import METHODS, DebiasConfig
from slimkit.debias.datasets import (
    BiasDataset,
    ColoredDigitsConfig,
    DebiasSplits,
    colored_digits,
    read_metadata_csv,
)
from slimkit.debias.models import ModelConfig, build_model
from slimkit.debias.runner import RunResult, run_method, run_seeds, save_runs
from slimkit.debias.sebra import SebraConfig

__all__ = [
    "METHODS",
    "BiasDataset",
    "ColoredDigitsConfig",
    "DebiasConfig",
    "DebiasSplits",
    "ERMConfig",
    "GroupBalancedConfig",
    "JTTConfig",
    "LfFConfig",
    "ModelConfig",
    "RunResult",
    "SebraConfig",
    "build_model",
    "colored_digits",
    "read_metadata_csv",
    "run_method",
    "run_seeds",
    "save_runs",
]
