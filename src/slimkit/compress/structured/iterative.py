"""Iterative structured FFN pruning during training (IDEA Prune's pruning phase), as a training-loop callback.

IDEA Prune (Li, Du, Jaiswal, Lei, Zhao, Wang, Wang; arXiv 2503.05920) trains an enlarged model and,
within the same run and the same cosine learning-rate schedule, prunes its FFN width gradually to the
target, then recovers. This callback is that pruning phase for :func:`slimkit.train.train`:

* every step in the phase ``(start, end]`` it reads the step's gradients (``on_gradients``) and updates
  an exponential moving average of each neuron's sensitivity
  ``ema_i <- beta * ema_i + (1 - beta) * Σ |θ ⊙ ∇θ|_i`` (the first sample initialises it);
* after the step (``on_update``) the kept width follows :func:`~slimkit.compress.structured.importance.scheduled_width`
  (cubic by default): each block keeps its top-``w(step)`` neurons by EMA among those still alive
  (masks only shrink), applied as masks on the intermediate activation;
* at ``end`` the width is exactly the target, and the masked neurons are removed for real
  (:func:`~slimkit.compress.structured.ffn.shrink_ffn_`, with the optimizer so that Adam's moments of
  the surviving neurons carry over). Training then continues on the smaller dense model.

Its state (masks, EMA, whether the removal happened) goes into every checkpoint, so a run resumed
mid-pruning continues identically, and one resumed after the removal rebuilds the smaller shapes
before the weights load.

Under DDP (``torchrun``) the loop hands ``on_gradients`` the gradients after DDP's all-reduce, so every
rank computes the same EMA and keeps the same neurons; each mask update and the removal check that
with one all-reduce of a checksum of the kept indices and raise if the ranks disagree.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from slimkit.compress.structured.ffn import NeuronMasks, ffn_sites, shrink_ffn_
from slimkit.compress.structured.importance import ema_, keep_top, scheduled_width
from slimkit.compress.structured.oneshot import site_sensitivity
from slimkit.core.config import check_range
from slimkit.core.distributed import check_same_on_all_ranks
from slimkit.core.errors import CheckpointError, ConfigError


class IterativeFFNPrune:
    """Prune every FFN of ``model`` from its width to ``target_width`` over optimizer steps ``(start, end]``.

    Args:
        model: the (enlarged) model being trained; masks are attached to it now (all ones until ``start``).
        target_width: neurons each FFN keeps at the end, in [1, current width].
        start_step / end_step: the pruning phase, in completed optimizer steps, ``0 <= start < end``.
        schedule: width schedule shape (``cubic`` | ``linear`` | ``cosine``). Default: ``cubic``.
        beta: EMA factor of the sensitivity, in [0, 1). Default: 0.85 (PLATON's).
        every: update the masks every this many steps of the phase (and always at its end). Default: 1.

    Attributes:
        widths: ``(step, width)`` after every mask update, for inspection.
        removed: whether the physical removal has happened.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        target_width: int,
        start_step: int,
        end_step: int,
        schedule: str = "cubic",
        beta: float = 0.85,
        every: int = 1,
    ) -> None:
        self.sites = ffn_sites(model)
        self.initial_width = self.sites[0].width
        if not 1 <= target_width <= self.initial_width:
            raise ConfigError(
                f"target width {target_width} must be in [1, {self.initial_width}] (the model's FFN width)"
            )
        if not 0 <= start_step < end_step:
            raise ConfigError(f"pruning phase ({start_step}, {end_step}] must satisfy 0 <= start < end")
        check_range("beta", beta, 0.0, 1.0, hi_inclusive=False)
        check_range("every", every, 1, None)
        scheduled_width(
            end_step, start_step, end_step, self.initial_width, target_width, schedule
        )  # validates
        self.target_width = target_width
        self.start, self.end, self.schedule = start_step, end_step, schedule
        self.beta, self.every = beta, every
        self.masks = NeuronMasks(self.sites).attach()
        self.ema = [torch.zeros(self.initial_width) for _ in self.sites]
        self.ema_steps = 0
        self.removed = False
        self.widths: list[tuple[int, int]] = []

    # -- the loop's hooks ---------------------------------------------------------------------------------------
    def on_gradients(self, step: int, model: nn.Module) -> None:
        if self.removed or not self.start < step <= self.end:
            return
        for i, site in enumerate(self.sites):
            s = site_sensitivity(site).cpu()
            if self.ema_steps == 0:
                self.ema[i].copy_(s)
            else:
                ema_(self.ema[i], s, self.beta)
        self.ema_steps += 1

    def on_update(self, step: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if self.removed or step <= self.start:
            return
        if (step - self.start) % self.every and step < self.end:
            return
        width = scheduled_width(
            step, self.start, self.end, self.initial_width, self.target_width, self.schedule
        )
        if width < self.masks.alive()[0]:
            for i in range(len(self.sites)):
                keep = keep_top(self.ema[i], width, alive=self.masks.masks[i])
                mask = torch.zeros(self.initial_width, dtype=torch.bool)
                mask[keep] = True
                self.masks.masks[i] = mask
            check_same_on_all_ranks(self.masks.keep_indices(), f"the FFN neurons kept after step {step}")
            self.widths.append((step, width))
        if step >= self.end:
            self._remove(model, optimizer)

    def on_step_end(self, step: int, loss: float, model: nn.Module) -> None:
        pass

    # -- checkpointing --------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "masks": torch.stack(self.masks.masks).to(torch.uint8),
            "ema": torch.stack(self.ema),
            "ema_steps": self.ema_steps,
            "removed": self.removed,
            "initial_width": self.initial_width,
            "target_width": self.target_width,
            "phase": [self.start, self.end],
            "widths": [list(w) for w in self.widths],
        }

    def load_state_dict(self, state: dict[str, Any], model: nn.Module) -> None:
        expected = (self.initial_width, self.target_width, [self.start, self.end])
        found = (state.get("initial_width"), state.get("target_width"), state.get("phase"))
        if tuple(found) != expected:
            raise CheckpointError(
                f"the checkpoint's pruning schedule (width, target, phase) = {found} differs from this run's "
                f"{expected}; resume with the same config"
            )
        self.masks.masks = [m.bool().clone() for m in state["masks"]]
        self.ema = [e.float().clone() for e in state["ema"]]
        self.ema_steps = int(state["ema_steps"])
        self.widths = [tuple(w) for w in state.get("widths", [])]
        if state["removed"] and not self.removed:
            self._remove(model, None)

    def _remove(self, model: nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
        check_same_on_all_ranks(self.masks.keep_indices(), "the FFN neurons to remove")
        shrink_ffn_(model, self.masks.keep_indices(), optimizer=optimizer, sites=self.sites)
        self.masks.detach()
        self.removed = True


__all__ = ["IterativeFFNPrune"]
