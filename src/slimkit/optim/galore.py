"""GaLore's AdamW: Adam moments in a low-rank gradient subspace (one functional step, a thin Optimizer).

GaLore — "GaLore: Memory-Efficient LLM Training by Gradient Low-Rank Projection" (Zhao et al.,
arXiv 2403.03507), Algorithm 1. For a projected weight ``W [m, n]`` with gradient ``G``:

    every update_proj_gap steps:  P <- top-r singular vectors of G      (slimkit.optim.projector)
    R = project(G, P)                                   [r, n] or [m, r]
    M <- b1 M + (1 - b1) R;   V <- b2 V + (1 - b2) R²    (moments in the low-rank space)
    N = (M / (1 - b1^t)) / (sqrt(V / (1 - b2^t)) + eps)
    W <- W (1 - lr · wd) - lr · project_back(N, P, scale)

A parameter group without ``rank`` (or ``rank=None``) is plain AdamW (the same arithmetic with the
identity for P, which is what torch.optim.AdamW computes), so one optimizer covers every trainable
parameter — what layer-wise stepping needs. Moments are not reset when the subspace changes
(as in the paper). Weights held as INT8 by :class:`slimkit.nn.int8.Int8TrainingLinear` are updated by
dequantise -> add -> requantise with stochastic rounding (Q-GaLore, ``slimkit.optim.qgalore``).

Group keys: ``lr``, ``betas`` (0.9, 0.999), ``eps`` 1e-6, ``weight_decay`` 0, ``rank`` None,
``update_proj_gap`` 200, ``scale`` 0.25, ``proj_type`` "std", ``svd`` "full", and Q-GaLore's
``proj_bits`` (None = float32 projections), ``proj_group_size`` 256, ``queue_size`` 5,
``cos_threshold`` (None = fixed interval), ``gamma`` 2, ``stochastic_round`` True, and
``refresh_stagger`` 0: with S > 0 the k-th of a group's n projected weights holds still for
``floor(k·S / n)`` steps before its first SVD, so each of the first S steps runs about n / S SVDs instead
of step 0 running all n (and the later refreshes, ``update_proj_gap`` apart, stay spread the same way).
A held weight takes no update (no decay either): its moments and projection do not exist yet.

Per-parameter state (plain tensors, numbers, strings and lists: ``torch.load(weights_only=True)``
reads a saved ``state_dict``): ``step``, ``exp_avg``, ``exp_avg_sq`` and, for projected weights,
``side``, ``proj`` (float32) or ``proj_codes``/``proj_scale``/``proj_zero`` (quantised), ``proj_shape``,
``svd_count``, ``gap``, ``next_svd``, ``cos_queue``, ``hold`` (steps left before the first SVD).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from slimkit.core.errors import ConfigError
from slimkit.core.targeting import select_modules
from slimkit.nn.int8 import BLOCK_LINEARS, Int8TrainingLinear, int8_owner
from slimkit.optim import projector as pj

GROUP_DEFAULTS: dict[str, Any] = {
    "betas": (0.9, 0.999),
    "eps": 1e-6,
    "weight_decay": 0.0,
    "rank": None,
    "update_proj_gap": 200,
    "scale": 0.25,
    "proj_type": "std",
    "svd": "full",
    "proj_bits": None,
    "proj_group_size": 256,
    "queue_size": 5,
    "cos_threshold": None,
    "gamma": 2.0,
    "stochastic_round": True,
    "refresh_stagger": 0,
}


def adam_direction_(
    grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, step: int, beta1: float, beta2: float, eps: float
) -> Tensor:
    """Update the moments in place; return ``m̂ / (sqrt(v̂) + eps)`` (torch.optim.AdamW's arithmetic)."""
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2**step)).add_(eps)
    return (exp_avg / (1 - beta1**step)) / denom


def _store_projection(state: dict[str, Any], p: Tensor, group: dict[str, Any]) -> None:
    state["proj_shape"] = list(p.shape)
    bits = group["proj_bits"]
    if bits is None:
        state["proj"] = p
    else:
        stored = pj.quantize_projection(p, bits, group["proj_group_size"])
        state["proj_codes"], state["proj_scale"], state["proj_zero"] = (
            stored["codes"],
            stored["scale"],
            stored["zero"],
        )


def load_projection(state: dict[str, Any], group: dict[str, Any]) -> Tensor:
    """The float32 projection of a parameter's state (dequantised when stored as integers)."""
    if "proj" in state:
        return state["proj"]
    if "proj_codes" not in state:
        return torch.zeros(0)
    stored = {"codes": state["proj_codes"], "scale": state["proj_scale"], "zero": state["proj_zero"]}
    return pj.dequantize_projection(stored, state["proj_shape"], group["proj_bits"])


def refresh_projection_(grad: Tensor, state: dict[str, Any], group: dict[str, Any]) -> Tensor:
    """Run the SVD, update the adaptive interval (when ``cos_threshold`` is set), store and return P."""
    side = state["side"]
    new = pj.svd_projector(grad, group["rank"], side, method=group["svd"])
    state["svd_count"] += 1
    if group["cos_threshold"] is not None and state["svd_count"] > 1:
        old = load_projection(state, group)
        state["cos_queue"] = pj.push_cosine(
            state["cos_queue"], pj.leading_cosine(new, old), group["queue_size"]
        )
        state["gap"] = pj.next_refresh_gap(
            state["cos_queue"],
            state["gap"],
            threshold=group["cos_threshold"],
            gamma=group["gamma"],
            queue_size=group["queue_size"],
        )
    state["next_svd"] = state["step"] + state["gap"]
    _store_projection(state, new, group)
    # compute with what is stored, so the step does not depend on whether P was just refreshed
    return new if group["proj_bits"] is None else load_projection(state, group)


def galore_adam_step(
    grad: Tensor, state: dict[str, Any], group: dict[str, Any], *, hold: int = 0
) -> Tensor | None:
    """One GaLore-Adam step for one parameter: the full-space update ``-lr · back(N)`` (no decay).

    Args:
        grad: ``[m, n]`` (or any shape for an unprojected parameter).
        state: this parameter's optimizer state, initialised on first use (mutated).
        group: the parameter's group (``lr``, ``betas``, ``eps``, ``rank``, ...).
        hold: steps a projected weight waits before its first SVD (read when ``state`` is initialised;
            see ``refresh_stagger`` in the module docstring).

    Returns:
        float32 update of ``grad``'s shape, to be added to the weight; None while the weight is held.
    """
    g = grad.float()
    rank = group["rank"]
    if not state:
        state["step"] = 0
        if rank is not None:
            state["side"] = pj.projection_side(tuple(g.shape), rank, group["proj_type"])
            state.update(svd_count=0, gap=int(group["update_proj_gap"]), next_svd=0, cos_queue=[])
            state["hold"] = int(hold) if state["side"] != "identity" else 0
    if state.get("hold", 0) > 0:
        state["hold"] -= 1
        return None
    side = state.get("side", "identity")
    if side != "identity":
        p = (
            refresh_projection_(g, state, group)
            if state["step"] >= state["next_svd"]
            else load_projection(state, group)
        )
        low = pj.project(g, p, side)
    else:
        p, low = None, g
    if "exp_avg" not in state:
        state["exp_avg"] = torch.zeros_like(low)
        state["exp_avg_sq"] = torch.zeros_like(low)
    state["step"] += 1
    beta1, beta2 = group["betas"]
    direction = adam_direction_(
        low, state["exp_avg"], state["exp_avg_sq"], state["step"], beta1, beta2, group["eps"]
    )
    if p is not None:
        direction = pj.project_back(direction, p, side, group["scale"])
    return direction.mul_(-group["lr"])


class GaLoreAdamW(torch.optim.Optimizer):
    """AdamW whose groups with a ``rank`` keep their moments in a GaLore low-rank subspace.

    Drop-in ``torch.optim.Optimizer``::

        groups = galore_param_groups(model, rank=128, update_proj_gap=200, scale=0.25)
        opt = GaLoreAdamW(groups, lr=0.01)

    Args:
        params: parameters or group dicts (see the module docstring for the group keys).
        lr, betas, eps, weight_decay: AdamW's, defaults for every group.
        **defaults: defaults for the other group keys (``rank``, ``update_proj_gap``, ...).

    Raises:
        ConfigError: a projected parameter is not 2-D, its rank is out of range, or the projection
            group size does not divide rank x side (checked here, before any step).
    """

    _GROUP_DEFAULTS = GROUP_DEFAULTS

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        **defaults: Any,
    ) -> None:
        unknown = set(defaults) - set(self._GROUP_DEFAULTS)
        if unknown:
            raise ConfigError(f"{type(self).__name__}: unknown options {sorted(unknown)}")
        if lr <= 0:
            raise ConfigError(f"{type(self).__name__}: lr must be > 0, got {lr}")
        all_defaults = {**self._GROUP_DEFAULTS, **defaults, "lr": lr, "betas": tuple(betas), "eps": eps}
        all_defaults["weight_decay"] = weight_decay
        super().__init__(params, all_defaults)
        self._layerwise = False
        self.layerwise: Any = None  # a LayerwiseStepper once attached (slimkit.optim.layerwise)
        for group in self.param_groups:
            self._check_group(group)

    def _check_group(self, group: dict[str, Any]) -> None:
        name = type(self).__name__
        group["betas"] = tuple(group["betas"])
        if group["rank"] is None:
            return
        for p in group["params"]:
            side = pj.projection_side(tuple(p.shape), group["rank"], group["proj_type"])
            if group["proj_bits"] is not None and side != "identity":
                m, n = p.shape
                pj.check_quantizable(
                    (m if side == "left" else n) * group["rank"],
                    group["proj_group_size"],
                    f"{name} projection",
                )
        if group["svd"] not in pj.SVD_METHODS:
            raise ConfigError(f"{name}: svd must be one of {pj.SVD_METHODS}, got {group['svd']!r}")
        if int(group["update_proj_gap"]) < 1:
            raise ConfigError(f"{name}: update_proj_gap must be >= 1, got {group['update_proj_gap']!r}")
        stagger = group.get("refresh_stagger") or 0
        if not isinstance(stagger, int) or isinstance(stagger, bool) or stagger < 0:
            raise ConfigError(f"{name}: refresh_stagger must be an integer >= 0, got {stagger!r}")

    # -- stepping ------------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self._layerwise:
            self.layerwise.check_complete()
            return loss  # every parameter already stepped inside backward
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self.step_param(p, group)
        return loss

    @torch.no_grad()
    def step_param(self, p: Tensor, group: dict[str, Any]) -> None:
        """Step one parameter with its current ``.grad`` (what layer-wise stepping calls)."""
        grad = p.grad
        owner = int8_owner(p)
        if owner is not None and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # DDP all-reduces only float parameters that require grad; int8 weights' grads by hand
            dist.all_reduce(grad)
            grad.div_(dist.get_world_size())
        state = self.state[p]
        update = galore_adam_step(grad, state, group, hold=0 if state else self._hold_steps(p, group))
        if update is None:
            return  # held until its staggered first SVD
        lr, wd = group["lr"], group["weight_decay"]
        if owner is not None:
            w = owner.dequantized_weight()
            if wd:
                update.add_(w, alpha=-lr * wd)
            owner.set_weight_(w.add_(update), stochastic=group["stochastic_round"])
        else:
            if wd:
                p.mul_(1 - lr * wd)
            p.add_(update.to(p.dtype))

    @staticmethod
    def _hold_steps(p: Tensor, group: dict[str, Any]) -> int:
        """Steps ``p`` waits before its first SVD: ``floor(k · S / n)`` for the k-th of the group's n
        parameters under ``refresh_stagger`` S (0 without stagger or for an unprojected group)."""
        stagger = int(group.get("refresh_stagger") or 0)
        if stagger <= 0 or group["rank"] is None:
            return 0
        params = group["params"]
        k = next(i for i, q in enumerate(params) if q is p)
        return k * stagger // len(params)

    def configure_for_loop(self, *, grad_accum: int, clip_norm: float | None) -> None:
        """Called by :func:`slimkit.train.train`: layer-wise stepping needs the accumulation count and
        refuses global clipping (see :class:`slimkit.optim.layerwise.LayerwiseStepper`)."""
        if self.layerwise is not None:
            self.layerwise.check_clipping(clip_norm)
            self.layerwise.set_grad_accum(grad_accum)

    # -- introspection -------------------------------------------------------------------------------
    def svd_counts(self, model: nn.Module | None = None) -> dict[str | int, int]:
        """SVDs run so far per projected parameter: keyed by name when ``model`` is given, else by
        index in the optimizer's parameter order."""
        names = {id(p): n for n, p in model.named_parameters()} if model is not None else {}
        out: dict[str | int, int] = {}
        for i, p in enumerate(q for g in self.param_groups for q in g["params"]):
            st = self.state.get(p, {})
            if "svd_count" in st:
                out[names.get(id(p), i)] = st["svd_count"]
        return out

    def state_bytes(self) -> int:
        """Bytes of every tensor in the optimizer state (moments, projections)."""
        return sum(
            v.numel() * v.element_size()
            for st in self.state.values()
            for v in st.values()
            if isinstance(v, Tensor)
        )

    # -- state ---------------------------------------------------------------------------------------
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As ``torch.optim.Optimizer.load_state_dict``, but tensors keep their saved dtype: the moments
        of an int8 weight are float32 and packed projections uint8 (torch would cast them to the
        parameter's dtype)."""
        saved_state = state_dict["state"]
        super().load_state_dict({"state": {}, "param_groups": state_dict["param_groups"]})
        params = [p for g in self.param_groups for p in g["params"]]
        for idx, st in saved_state.items():
            p = params[int(idx)]
            self.state[p] = {
                k: (v.to(p.device) if isinstance(v, Tensor) else copy.deepcopy(v)) for k, v in st.items()
            }
        for group in self.param_groups:
            group["betas"] = tuple(group["betas"])


def _trainable(p: Tensor) -> bool:
    return p.requires_grad or int8_owner(p) is not None


def galore_param_groups(
    model: nn.Module,
    *,
    rank: int,
    targets: Sequence[str] = BLOCK_LINEARS,
    ignore: Sequence[str] = (),
    weight_decay: float = 0.0,
    **options: Any,
) -> list[dict[str, Any]]:
    """Param groups for :class:`GaLoreAdamW` / ``QGaLoreAdamW`` from a model.

    The weights of the linears selected by ``targets``/``ignore`` (``nn.Linear`` or
    ``Int8TrainingLinear``) form the projected group (``rank`` and ``options`` such as
    ``update_proj_gap``, ``scale``, ``proj_type``); every other trainable parameter goes to plain
    AdamW groups, decayed only for non-embedding matrices (as :func:`slimkit.train.optim.weight_decay_groups`).
    Frozen parameters get no group and no state.
    """
    chosen = select_modules(
        model, targets, ignore, candidates=lambda _, m: isinstance(m, nn.Linear | Int8TrainingLinear)
    )
    projected_ids = {id(m.weight) for m in chosen.values() if _trainable(m.weight)}
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    projected, decay, no_decay = [], [], []
    for _, p in model.named_parameters():
        if not _trainable(p):
            continue
        if id(p) in projected_ids:
            projected.append(p)
        elif p.ndim >= 2 and id(p) not in embedding_ids:
            decay.append(p)
        else:
            no_decay.append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "rank": None},
        {"params": no_decay, "weight_decay": 0.0, "rank": None},
        {"params": projected, "weight_decay": weight_decay, "rank": rank, **options},
    ]
    return [g for g in groups if g["params"]]


__all__ = [
    "GROUP_DEFAULTS",
    "GaLoreAdamW",
    "adam_direction_",
    "galore_adam_step",
    "galore_param_groups",
    "load_projection",
    "refresh_projection_",
]
