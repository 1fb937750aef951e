"""The causal-LM training loop: grad accumulation, bf16 autocast, clipping, cosine schedule,
atomic checkpoints and exact resume.

One optimizer step::

    for each of grad_accum micro-batches x: [batch_size, seqlen + 1]
        loss_i = CE(model(x[:, :-1]).logits, x[:, 1:])       # mean over batch_size * seqlen tokens
        backward(loss_i / grad_accum)                           # grads sum to the grad of the mean
    clip ||g||_2 to grad_clip;  optimizer.step();  scheduler.step()

Resume guarantee: a run checkpointed at step k and resumed produces the same losses and weights as
the uninterrupted run (bitwise on CPU; on GPU as far as the kernels themselves are deterministic),
because the checkpoint holds everything the next step reads: weights, optimizer and scheduler state,
every RNG, and the data position.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from slimkit.core.devices import resolve_device
from slimkit.core.errors import CheckpointError, ConfigError, DataError, SlimkitError
from slimkit.core.progress import progress_bar
from slimkit.core.seed import rng_state, seed_everything, set_rng_state
from slimkit.train.checkpoint import (
    data_fingerprint,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_callback_state,
    save_checkpoint,
)
from slimkit.train.config import TrainConfig
from slimkit.train.data import PackedSampler
from slimkit.train.optim import build_optimizer
from slimkit.train.schedules import cosine_schedule


@runtime_checkable
class Callback(Protocol):
    """Hook called after every optimizer step (after the periodic checkpoint, if one is due).

    A callback that changes the training state itself (a pruning schedule) may also define any of
    these optional methods; the loop calls those that exist:

    * ``on_gradients(step, model)``: the step's gradients are complete (accumulated, not yet clipped);
      ``step`` is the 1-based number of the step in progress.
    * ``on_update(step, model, optimizer)``: right after optimizer step ``step`` and *before* its
      checkpoint, so what it changes (masks, removed neurons, the optimizer's state) is checkpointed.
    * ``state_dict() -> dict`` / ``load_state_dict(state, model)``: the callback's own state, saved in
      every checkpoint (tensor values in ``callbacks.safetensors``, the rest in ``state.json``) and
      handed back on resume *before* the model's weights are loaded, so a callback that changed the
      model's shapes can change them again first.
    """

    def on_step_end(self, step: int, loss: float, model: nn.Module) -> None: ...


def _hooks(callbacks: Sequence[Any], name: str) -> list[Any]:
    return [getattr(cb, name) for cb in callbacks if callable(getattr(cb, name, None))]


@dataclass
class TrainResult:
    """What a run did.

    Attributes:
        losses: mean training loss of every completed step, from step 1 (earlier runs included on resume).
        tokens_seen: predicted tokens over all completed steps.
        wall_time_s: seconds this call spent (a resumed call counts only its own time).
        tokens_per_s: tokens trained in this call / wall_time_s.
        final_lr: the learning rate the schedule rests at after the last completed step.
        steps: completed optimizer steps.
        checkpoint: the last checkpoint written or resumed from (None without an output directory).
    """

    losses: list[float]
    tokens_seen: int
    wall_time_s: float
    tokens_per_s: float
    final_lr: float
    steps: int
    checkpoint: Path | None = None


def causal_lm_loss(model: nn.Module, windows: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of ``windows`` ``[batch, seqlen + 1]`` (inputs ``[:, :-1]``).

    Logits are upcast to float32 before the softmax so bf16 autocast does not cost loss precision.
    """
    inputs, labels = windows[:, :-1], windows[:, 1:]
    out = model(input_ids=inputs)
    logits = out.logits if hasattr(out, "logits") else out
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1))


def accumulate_gradients_(
    model: nn.Module, micro_batches: Sequence[torch.Tensor], *, bf16: bool = False
) -> float:
    """Backpropagate the mean loss over equal-sized ``micro_batches`` into ``.grad``; return that mean.

    Each micro-batch loss is scaled by ``1 / len(micro_batches)``, so the accumulated gradient equals
    the gradient of the loss over all windows at once (batch 2 x accum 2 == batch 4 x accum 1 up to
    float rounding). Gradients add to whatever ``.grad`` holds; zero them first.
    """
    scale = 1.0 / len(micro_batches)
    total = 0.0
    for windows in micro_batches:
        with torch.autocast(device_type=windows.device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = causal_lm_loss(model, windows)
        (loss * scale).backward()
        total += loss.item() * scale
    return total


def train(
    model: nn.Module,
    token_ids: torch.Tensor,
    cfg: TrainConfig,
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    max_steps_this_run: int | None = None,
) -> TrainResult:
    """Train ``model`` (a causal LM taking ``input_ids`` and returning ``.logits``) on ``token_ids``.

    Args:
        model: trained in place; moved to ``cfg.device``. Parameters with ``requires_grad=False`` stay
            frozen and get no optimizer state.
        token_ids: 1-D LongTensor, the tokenized corpus (see :func:`slimkit.train.tokenize_documents`).
        cfg: the loop's config.
        out_dir: checkpoints go to ``out_dir/checkpoints``; None trains without checkpoints.
        resume: continue from the newest checkpoint in ``out_dir`` (exactly: same losses and weights as
            an uninterrupted run). Without it an ``out_dir`` that already holds checkpoints is refused.
        callbacks: objects with ``on_step_end(step, loss, model)`` and optionally ``on_gradients``,
            ``on_update``, ``state_dict`` / ``load_state_dict`` (see :class:`Callback`).
        max_steps_this_run: stop after this many steps in this call (checkpointing if ``out_dir`` is
            set), e.g. to fit a time-limited job; ``resume`` continues from there.

    Returns:
        :class:`TrainResult`.

    Raises:
        DataError: too little text for one window.
        CheckpointError: nothing to resume, a corrupt checkpoint, or one from a different run.
        ConfigError: the device is unavailable.
        SlimkitError: the loss became NaN/inf (lower the learning rate).
        KeyboardInterrupt: re-raised after saving a checkpoint of the last completed step.
    """
    device = resolve_device(cfg.device)
    if max_steps_this_run is not None and max_steps_this_run < 1:
        raise ConfigError(f"max_steps_this_run={max_steps_this_run} must be >= 1 (or None for no limit)")
    ckpt_root = Path(out_dir) / "checkpoints" if out_dir is not None else None
    if resume and ckpt_root is None:
        raise CheckpointError("resume=True needs the out_dir of the run to resume")

    sampler = PackedSampler(token_ids, cfg.seqlen, cfg.seed, random_offset=cfg.random_offset)
    model.to(device)
    was_training = model.training
    model.train()
    optimizer = build_optimizer(model, cfg.optimizer)
    configure = getattr(optimizer, "configure_for_loop", None)
    if configure is not None:  # e.g. layer-wise stepping needs grad_accum and refuses global clipping
        configure(grad_accum=cfg.grad_accum, clip_norm=cfg.clip_norm)
    scheduler = cosine_schedule(optimizer, cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio)
    trainable = [p for group in optimizer.param_groups for p in group["params"]]
    fingerprint = data_fingerprint(token_ids) if ckpt_root is not None else {}

    stateful = [cb for cb in callbacks if callable(getattr(cb, "state_dict", None))]
    on_gradients, on_update = _hooks(callbacks, "on_gradients"), _hooks(callbacks, "on_update")
    step, tokens_seen, losses, last_ckpt = 0, 0, [], None
    if resume:
        assert ckpt_root is not None
        last_ckpt = latest_checkpoint(ckpt_root)
        if last_ckpt is None:
            raise CheckpointError(f"nothing to resume: no checkpoint in {ckpt_root}")
        saved_callbacks = read_callback_state(last_ckpt)
        if len(saved_callbacks) != len(stateful):
            raise CheckpointError(
                f"checkpoint {last_ckpt} holds the state of {len(saved_callbacks)} stateful callback(s), "
                f"this run has {len(stateful)}; resume with the same callbacks"
            )
        for cb, cb_state in zip(stateful, saved_callbacks, strict=True):
            cb.load_state_dict(cb_state, model)  # may reshape the model before its weights load
        state = load_checkpoint(
            last_ckpt,
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            config=cfg,
            fingerprint=fingerprint,
        )
        try:
            sampler.load_state_dict(state.data_state)
        except DataError as e:
            raise CheckpointError(f"checkpoint {last_ckpt}: {e}") from None
        set_rng_state(state.rng)
        step, tokens_seen, losses = state.step, state.tokens_seen, state.losses
    else:
        if ckpt_root is not None and list_checkpoints(ckpt_root):
            raise CheckpointError(
                f"{ckpt_root} already holds checkpoints; pass resume=True (slimkit train --resume) to "
                "continue that run, or choose another output directory"
            )
        seed_everything(cfg.seed)

    def checkpoint(rng: dict[str, Any], data_state: dict[str, int]) -> Path:
        assert ckpt_root is not None
        return save_checkpoint(
            ckpt_root,
            step=step,
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            config=cfg,
            data_state=data_state,
            rng=rng,
            losses=losses,
            tokens_seen=tokens_seen,
            fingerprint=fingerprint,
            callback_state=[cb.state_dict() for cb in stateful],
        )

    start_step, saved_step = step, step if resume else -1
    stop_at = cfg.steps if max_steps_this_run is None else min(cfg.steps, step + max_steps_this_run)
    fields: dict[str, Any] = {}
    t0 = time.perf_counter()
    # `live` is False while a step is in flight: its RNG draws and data reads are then not yet
    # matched by an optimizer update, so an interrupt checkpoints the snapshot taken before it.
    # An interrupt inside the update itself (`updating`) cannot be checkpointed consistently.
    live, updating = True, False
    snapshot = (rng_state(), sampler.state_dict())
    try:
        with progress_bar(cfg.steps, "train") as bar:
            bar.update(step)
            while step < stop_at:
                snapshot = (rng_state(), sampler.state_dict())
                live = False
                micro = [sampler.next_batch(cfg.batch_size).to(device) for _ in range(cfg.grad_accum)]
                loss = accumulate_gradients_(model, micro, bf16=cfg.bf16)
                if not math.isfinite(loss):
                    raise SlimkitError(
                        f"training loss became {loss} at step {step + 1}; lower optimizer.lr "
                        f"(now {cfg.optimizer.lr}) or set grad_clip"
                    )
                for hook in on_gradients:
                    hook(step + 1, model)
                if cfg.clip_norm is not None:
                    torch.nn.utils.clip_grad_norm_(trainable, cfg.clip_norm)
                updating = True
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                tokens_seen += cfg.tokens_per_step
                losses.append(loss)
                for hook in on_update:
                    hook(step, model, optimizer)
                updating, live = False, True

                if ckpt_root is not None and cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    last_ckpt, saved_step = checkpoint(rng_state(), sampler.state_dict()), step
                for callback in callbacks:
                    callback.on_step_end(step, loss, model)
                if step % cfg.log_every == 0 or step == stop_at:
                    recent = losses[-cfg.log_every :]
                    elapsed = max(time.perf_counter() - t0, 1e-9)
                    fields = {
                        "loss": sum(recent) / len(recent),
                        "lr": optimizer.param_groups[0]["lr"],
                        "tok/s": round((step - start_step) * cfg.tokens_per_step / elapsed),
                    }
                bar.update(1, **fields)
        if ckpt_root is not None and saved_step != step:
            last_ckpt, saved_step = checkpoint(rng_state(), sampler.state_dict()), step
    except KeyboardInterrupt as e:
        # the note travels with the exception: the CLI prints it as its one "interrupted" line
        if ckpt_root is not None and not updating and saved_step != step:
            rng, data_state = (rng_state(), sampler.state_dict()) if live else snapshot
            last_ckpt = checkpoint(rng, data_state)
            raise KeyboardInterrupt(f"saved step {step} to {last_ckpt}; continue with --resume") from e
        if ckpt_root is not None and updating:
            raise KeyboardInterrupt(f"inside an optimizer update; --resume continues from {last_ckpt}") from e
        raise
    finally:
        model.train(was_training)

    wall = time.perf_counter() - t0
    trained_tokens = (step - start_step) * cfg.tokens_per_step
    return TrainResult(
        losses=losses,
        tokens_seen=tokens_seen,
        wall_time_s=wall,
        tokens_per_s=trained_tokens / wall if wall > 0 else 0.0,
        final_lr=optimizer.param_groups[0]["lr"],
        steps=step,
        checkpoint=last_ckpt,
    )


__all__ = ["Callback", "TrainResult", "accumulate_gradients_", "causal_lm_loss", "train"]
