"""The shared training settings of every debiasing method, and the method registry.

Sebra and the baselines (ERM, JTT, LfF, group-balanced) run through one harness
(:mod:`slimkit.debias.runner`), so they train the same model with the same optimiser, batch size,
epoch budget and model-selection rule. Each method's config inherits :class:`DebiasConfig` and adds
only its own fields; its trainer is registered in :data:`METHODS` keyed by the config type::

    @METHODS.register(ERMConfig, name="erm")
    def fit_erm(cfg: ERMConfig, splits: DebiasSplits, ctx: FitContext) -> Fitted: ...

    trainer = METHODS.lookup(cfg)                       # dispatch on the config type
    cfg_cls = METHODS.config_for("jtt")                  # the CLI's --method name
"""

from __future__ import annotations

from dataclasses import dataclass, field

from slimkit.core.config import Config, check_choice, check_range
from slimkit.core.registry import Registry
from slimkit.debias.models import ModelConfig

OPTIMIZERS = ("adam", "sgd")
#: ``last``: the final epoch's model (no validation data used). ``val-accuracy``: the epoch with the best
#: validation accuracy (no group labels). ``val-worst-group``: the best validation worst-group accuracy;
#: this reads validation *group labels*, so it is opt-in (the papers' UrbanCars/CelebA protocol).
MODEL_SELECTION = ("last", "val-accuracy", "val-worst-group")
#: refused before any work: counts beyond these are typos that would run for days or exhaust memory
MAX_EPOCHS = 100_000
MAX_BATCH = 10_000_000


@dataclass(frozen=True, kw_only=True)
class DebiasConfig(Config):
    """Training settings shared by every debiasing method (the final model's training).

    Attributes:
        model (ModelConfig): architecture of every network the method trains. Default: ``mlp``.
        epochs (int): passes over the training set for the final model. Default: 30.
        batch_size (int): samples per step. Default: 64.
        optimizer (str): ``adam`` or ``sgd``. Default: ``adam``.
        lr (float): learning rate. Default: 1e-3.
        momentum (float): SGD momentum (ignored by Adam). Default: 0.9.
        weight_decay (float): L2 weight decay. Default: 0.0.
        model_selection (str): one of :data:`MODEL_SELECTION`. Default: ``last``.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    model_selection: str = "last"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("epochs", self.epochs, 1, MAX_EPOCHS)
        check_range("batch_size", self.batch_size, 1, MAX_BATCH)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_range("lr", self.lr, 0.0, 1e3, lo_inclusive=False)
        check_range("momentum", self.momentum, 0.0, 1.0, hi_inclusive=False)
        check_range("weight_decay", self.weight_decay, 0.0, 1e3)
        check_choice("model_selection", self.model_selection, MODEL_SELECTION)

    @property
    def uses_group_labels(self) -> bool:
        """Whether any group label reaches training or model selection (only the oracle and opt-in selection)."""
        return self.model_selection == "val-worst-group"


#: Debiasing method trainers, keyed by config type; CLI names ``sebra``, ``erm``, ``jtt``, ``lff``,
#: ``group-balanced``.
METHODS: Registry = Registry("debiasing method")
