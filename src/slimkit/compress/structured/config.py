"""Config of one-shot structured FFN-neuron pruning (``compress_(model, FFNStructuredConfig(...), calib)``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from slimkit.core.config import Config, check_choice, check_range
from slimkit.core.errors import ConfigError

IMPORTANCES = ("sensitivity", "activation")


@dataclass(frozen=True)
class FFNStructuredConfig(Config):
    """One-shot structured pruning of FFN intermediate neurons, then their physical removal.

    The width criterion of IDEA Prune (Li et al., arXiv 2503.05920) applied once: every block keeps its
    ``w`` most important neurons and the rest are removed from the weights, so the result is a dense
    model with ``intermediate_size = w`` (see :mod:`slimkit.compress.structured.importance`):

    * ``sensitivity``: ``s_i = Σ |θ ⊙ ∇θ|`` over neuron ``i``'s gate/up rows and down column, the
      gradient of the LM loss on the calibration windows (averaged over chunks of windows);
    * ``activation`` (Minitron, arXiv 2407.14679): ``|| mean_t |h_t,i| ||_2`` over calibration sequences.

    Every block keeps the same width, so plain ``transformers`` loads the result.

    Attributes:
        target_width (int | None): neurons each FFN keeps, >= 1 and at most the current width.
        prune_ratio (float | None): or the fraction of neurons to remove, in [0, 1) (the kept width is
            ``round((1 - prune_ratio) * I)``). Exactly one of the two. Default: both None (an error).
        importance (str): ``sensitivity`` | ``activation``. Default: ``sensitivity``.
    """

    target_width: int | None = None
    prune_ratio: float | None = None
    importance: str = "sensitivity"

    #: the handler reads calibration windows (gradients or activations)
    needs_calibration: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.target_width is None) == (self.prune_ratio is None):
            raise ConfigError(
                "FFNStructuredConfig needs exactly one of target_width (neurons kept per FFN, e.g. "
                "--target-width 512) or prune_ratio (fraction removed, e.g. 0.25)"
            )
        if self.target_width is not None:
            check_range("FFNStructuredConfig.target_width", self.target_width, 1, None)
        if self.prune_ratio is not None:
            check_range("FFNStructuredConfig.prune_ratio", self.prune_ratio, 0.0, 1.0, hi_inclusive=False)
        check_choice("FFNStructuredConfig.importance", self.importance, IMPORTANCES)

    def kept_width(self, width: int) -> int:
        """The width a model whose FFNs have ``width`` neurons is pruned to.

        Raises:
            ConfigError: ``target_width`` is larger than ``width``.
        """
        if self.target_width is not None:
            if self.target_width > width:
                raise ConfigError(
                    f"FFNStructuredConfig.target_width={self.target_width} is larger than the model's FFN "
                    f"width {width}; choose a target width in [1, {width}]"
                )
            return self.target_width
        assert self.prune_ratio is not None
        return max(1, round((1.0 - self.prune_ratio) * width))


__all__ = ["IMPORTANCES", "FFNStructuredConfig"]
