"""Configs of the low-rank methods: WeLore and the uniform-rank SVD baseline."""

from __future__ import annotations

from dataclasses import dataclass

from slimkit.compress.lowrank.svd import SVD_DTYPES
from slimkit.core.config import Config, check_choice, check_range
from slimkit.core.errors import ConfigError
from slimkit.core.targeting import check_patterns

TARGET_KINDS = ("params", "rank")


@dataclass(frozen=True, kw_only=True)
class LowRankConfig(Config):
    """Options shared by the low-rank methods (data-free: no calibration).

    Exactly one target is given; with neither, ``target_params=0.5``. Both are fractions in (0, 1)
    measured over the targeted matrices:

    * parameter reduction ``1 - Σ stored weights / Σ m·n`` (factored matrices store ``k·(m+n)``,
      dense ones ``m·n``; biases are not counted): what users budget;
    * rank reduction ``1 - Σ k / Σ min(m, n)`` with each matrix's rank ``k`` as the rule assigns it
      (WeLore's own measure, the one its τ tables are calibrated on).

    Attributes:
        target_params (float | None): parameter reduction to hit. Default: None (0.5 if no target).
        target_rank (float | None): rank reduction to hit. Default: None.
        tolerance (float): the search must land within this absolute distance of the target, else
            it fails naming the nearest reachable values. Default: 0.005.
        targets (tuple[str, ...]): module patterns (exact, class name or ``re:`` regex); ``()`` = every
            linear inside the decoder blocks. Embeddings and ``lm_head`` are never touched. Default: ().
        ignore (tuple[str, ...]): patterns removed from the targets. Default: ().
        svd_dtype (str): ``float32`` (the reference) or ``float64``. Default: ``float32``.
    """

    target_params: float | None = None
    target_rank: float | None = None
    tolerance: float = 0.005
    targets: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    svd_dtype: str = "float32"

    needs_calibration = False

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        if self.target_params is not None and self.target_rank is not None:
            raise ConfigError(
                f"{name}: give target_params or target_rank, not both "
                f"(got {self.target_params} and {self.target_rank})"
            )
        if self.target_params is None and self.target_rank is None:
            object.__setattr__(self, "target_params", 0.5)
        check_range(
            f"{name}.{self.target_kind_field}", self.target, 0.0, 1.0, lo_inclusive=False, hi_inclusive=False
        )
        check_range(f"{name}.tolerance", self.tolerance, 0.0, 0.5, lo_inclusive=False)
        check_choice(f"{name}.svd_dtype", self.svd_dtype, SVD_DTYPES)
        for field_name in ("targets", "ignore"):
            object.__setattr__(
                self, field_name, check_patterns(f"{name}.{field_name}", getattr(self, field_name))
            )

    @property
    def target_kind(self) -> str:
        """``"params"`` or ``"rank"``."""
        return "params" if self.target_params is not None else "rank"

    @property
    def target_kind_field(self) -> str:
        return f"target_{self.target_kind}"

    @property
    def target(self) -> float:
        value = self.target_params if self.target_params is not None else self.target_rank
        assert value is not None  # __post_init__ fills one in
        return value


@dataclass(frozen=True, kw_only=True)
class WeLoreConfig(LowRankConfig):
    """WeLore — "From GaLore to WeLore: How Low-Rank Weights Non-uniformly Emerge from Low-Rank
    Gradients" (Jaiswal et al., arXiv 2407.11239).

    One global threshold τ on min-max normalised singular values (``ŝ < τ`` dropped) gives every
    matrix its own rank; τ is found by bisection to hit the target. A matrix whose rank reduction
    exceeds ``min_ratio`` and whose factors are smaller than it becomes a low-rank component (LRC,
    :class:`~slimkit.nn.lowrank.LowRankLinear`); the others (N-LRC) stay dense and untouched.

    Attributes:
        min_ratio (float): LRC threshold on a matrix's rank reduction, in [0, 1). The reference
            finetune scripts use 0.4999; factoring a square matrix saves weights only above 0.5.
            Default: 0.5.
        (and every :class:`LowRankConfig` field)
    """

    min_ratio: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("WeLoreConfig.min_ratio", self.min_ratio, 0.0, 1.0, hi_inclusive=False)


@dataclass(frozen=True, kw_only=True)
class SVDUniformConfig(LowRankConfig):
    """Uniform-rank SVD: the baseline WeLore is compared with (e.g. arXiv 2407.11239, Table 1).

    Every targeted matrix keeps the same fraction ``f`` of its rank, ``k = round(f · min(m, n))``;
    ``f`` is found by bisection to hit the target. A matrix whose factors would not be smaller than
    it stays dense and untouched. (Every :class:`LowRankConfig` field; no others.)
    """


__all__ = ["TARGET_KINDS", "LowRankConfig", "SVDUniformConfig", "WeLoreConfig"]
