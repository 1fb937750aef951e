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

Under ``torchrun`` (``WORLD_SIZE > 1``, ``cfg.parallel == "ddp"``) every rank holds the whole model
wrapped in DistributedDataParallel (gloo on CPU, NCCL on CUDA, the group made here unless the caller
made one). Every rank draws the same global micro-batch ``[batch_size, seqlen + 1]`` and trains on its
contiguous slice of ``batch_size / world_size`` windows; DDP averages the gradients, so a step's
gradient is the gradient of the mean loss over the global batch, the same as in one process (up to
float rounding of the reduction order). The global batch is the config's, so 1 and N processes see the
same data per step and the same token count. Only rank 0 draws the progress bar and writes
checkpoints; every rank reads them on resume. A callback that reshapes parameters (neuron removal)
makes the loop rebuild the DDP wrapper, whose buckets are sized by the old shapes.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from slimkit.core.distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    distributed_context,
    local_device,
)
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

    A DistributedDataParallel ``model`` all-reduces once, on the last micro-batch's backward (the
    others run under its ``no_sync``); the returned loss is this rank's.
    """
    scale = 1.0 / len(micro_batches)
    total = 0.0
    no_sync = getattr(model, "no_sync", None)
    for i, windows in enumerate(micro_batches):
        last = i == len(micro_batches) - 1
        with no_sync() if no_sync is not None and not last else contextlib.nullcontext():
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
    device = local_device(cfg.device)
    with distributed_context(device) as ctx:
        return _train(model, token_ids, cfg, out_dir, device, ctx, resume, callbacks, max_steps_this_run)


def _ddp(model: nn.Module, device: torch.device, ctx: DistInfo) -> nn.Module:
    """``model`` wrapped in DistributedDataParallel over ``ctx``'s group (``model`` itself in one process)."""
    if ctx.world_size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    # DDP broadcasts rank 0's parameters and buffers now and checks every rank has the same shapes
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def _train(
    model: nn.Module,
    token_ids: torch.Tensor,
    cfg: TrainConfig,
    out_dir: str | Path | None,
    device: torch.device,
    ctx: DistInfo,
    resume: bool,
    callbacks: Sequence[Callback],
    max_steps_this_run: int | None,
) -> TrainResult:
    if cfg.batch_size % ctx.world_size:
        raise ConfigError(
            f"TrainConfig.batch_size={cfg.batch_size} must be a multiple of the {ctx.world_size} torchrun "
            "ranks: each rank trains on an equal slice of every global micro-batch"
        )
    local = slice(
        ctx.rank * cfg.batch_size // ctx.world_size, (ctx.rank + 1) * cfg.batch_size // ctx.world_size
    )
    main = ctx.rank == 0
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
    barrier()  # no rank may write a checkpoint before every rank has checked the directory

    def checkpoint(rng: dict[str, Any], data_state: dict[str, int], *, sync: bool = True) -> Path:
        assert ckpt_root is not None
        if not main:  # rank 0 writes; the others wait for it and name the same checkpoint
            barrier()
            found = latest_checkpoint(ckpt_root)
            assert found is not None
            return found
        path = save_checkpoint(
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
        if sync:
            barrier()
        return path

    def shapes() -> list[tuple[int, ...]]:
        return [tuple(p.shape) for p in trainable]

    net = _ddp(model, device, ctx)

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
                # every rank draws the same global batch (same sampler state) and keeps its slice
                micro = [sampler.next_batch(cfg.batch_size)[local].to(device) for _ in range(cfg.grad_accum)]
                loss = all_reduce_mean(accumulate_gradients_(net, micro, bf16=cfg.bf16))
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
                before = shapes() if ctx.world_size > 1 and on_update else None
                for hook in on_update:
                    hook(step, model, optimizer)
                if before is not None and shapes() != before:
                    net = None  # the old wrapper's reducer (and its autograd hooks) goes first
                    net = _ddp(model, device, ctx)
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
        # the note travels with the exception: the CLI prints it as its one "interrupted" line.
        # Under torchrun rank 0 alone saves, with no collective: the other ranks may be gone already.
        if ckpt_root is not None and not updating and saved_step != step and main:
            rng, data_state = (rng_state(), sampler.state_dict()) if live else snapshot
            last_ckpt = checkpoint(rng, data_state, sync=False)
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
