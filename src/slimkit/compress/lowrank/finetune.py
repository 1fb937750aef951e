"""LRC-only finetuning of a WeLore model: train the low-rank factors (and norms), freeze the rest.

WeLore (arXiv 2407.11239, Sec. 4): after compression, the low-rank components (LRCs, the
``LowRankLinear`` factors) carry the trainable capacity; embeddings, ``lm_head`` and the dense N-LRC
matrices are frozen. The reference freezes exactly those and, by omission, also trains the norm
gains; so does :func:`freeze_for_lrc_finetuning_`. Frozen parameters get ``requires_grad=False``, so
the training loop (:func:`slimkit.train.train`) gives them no gradient and no optimizer state.

    info = freeze_for_lrc_finetuning_(model)            # {"trainable": ..., "frozen": ...}
    result = train(model, token_ids, TrainConfig(...))

``slimkit finetune MODEL --lrc-only CONFIG.yaml`` runs :func:`finetune_from_yaml`: the YAML has the
sections ``data``, ``train`` (TrainConfig fields) and ``out`` of a training recipe (docs/training.md);
the model comes from the command line. The result is saved to ``out/model`` with its factorisation.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit.core.config import load_yaml_text
from slimkit.core.errors import ConfigError, TargetError
from slimkit.nn.lowrank import RESTORER, LowRankLinear, lowrank_metadata
from slimkit.train.config import TrainConfig
from slimkit.train.optim import build_optimizer

_SECTIONS = {"data", "train", "out"}


def _is_norm(module: nn.Module) -> bool:
    # RMSNorm / LayerNorm classes of every supported family end in "Norm" (LlamaRMSNorm, LayerNorm)
    return type(module).__name__.endswith("Norm")


def freeze_for_lrc_finetuning_(model: nn.Module, *, train_norms: bool = True) -> dict[str, int]:
    """Freeze everything but the ``LowRankLinear`` factors (and, by default, the norm gains).

    Returns:
        ``{"trainable": n, "frozen": n, "lrc_modules": n}`` (parameter counts, tied weights once).

    Raises:
        TargetError: the model has no ``LowRankLinear`` (compress it with WeLore first).
    """
    lrcs = [m for m in model.modules() if isinstance(m, LowRankLinear)]
    if not lrcs:
        raise TargetError(
            "the model has no low-rank components (LowRankLinear) to finetune; compress it with "
            "--method welore (or svd-uniform) first, or train all weights without --lrc-only"
        )
    for p in model.parameters():
        p.requires_grad_(False)
    for m in lrcs:
        for p in m.parameters():
            p.requires_grad_(True)
    if train_norms:
        for m in model.modules():
            if _is_norm(m):
                for p in m.parameters(recurse=False):
                    p.requires_grad_(True)
    return {**parameter_counts(model), "lrc_modules": len(lrcs)}


def unfreeze_all_(model: nn.Module) -> dict[str, int]:
    """Make every parameter trainable (full finetuning); returns the counts."""
    for p in model.parameters():
        p.requires_grad_(True)
    return parameter_counts(model)


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """``{"trainable": n, "frozen": n}`` over ``model.parameters()`` (tied weights counted once)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return {"trainable": trainable, "frozen": frozen}


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held by the tensors in ``optimizer.state`` (AdamW: two moments per trainable weight)."""
    return sum(
        t.numel() * t.element_size()
        for state in optimizer.state.values()
        for t in state.values()
        if isinstance(t, torch.Tensor)
    )


def measure_optimizer_state_bytes(model: nn.Module, cfg: TrainConfig) -> int:
    """Optimizer-state bytes the training loop allocates for ``model`` under ``cfg``.

    Builds the loop's optimizer (same builder) on a throw-away copy, takes one step on zero
    gradients (so the state is allocated) and measures it; ``model`` is untouched.
    """
    import copy

    clone = copy.deepcopy(model)
    optimizer = build_optimizer(clone, cfg.optimizer)
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = torch.zeros_like(p)
    optimizer.step()
    return optimizer_state_bytes(optimizer)


def _load_finetune_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"finetune config not found: {path}")
    raw = load_yaml_text(path.read_text(), source=str(path))
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: a finetune config must be a mapping with data, train, out")
    unknown = sorted(set(raw) - _SECTIONS)
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {unknown}; known keys: {sorted(_SECTIONS)} (the model is given on the command line)"
        )
    missing = sorted(_SECTIONS - set(raw))
    if missing:
        raise ConfigError(f"{path}: missing section(s) {missing}")
    if not isinstance(raw["train"], Mapping):
        raise ConfigError(f"{path}: train must be a mapping of TrainConfig fields")
    data = str(raw["data"])
    if not Path(data).is_absolute() and (path.resolve().parent / data).exists():
        data = str(path.resolve().parent / data)
    return {"data": data, "train": TrainConfig.from_dict(dict(raw["train"])), "out": str(raw["out"])}


def finetune_from_yaml(
    model_dir: str | Path, config: str | Path, *, lrc_only: bool = True, out: str | Path | None = None
) -> tuple[Any, dict[str, Any], Path]:
    """Finetune the model in ``model_dir`` as the YAML ``config`` says; save it to ``out/model``.

    Args:
        model_dir: a model directory (typically written by ``slimkit compress --method welore``).
        config: YAML with ``data`` (a text source), ``train`` (TrainConfig fields), ``out``.
        lrc_only: train only the LRC factors and norms (WeLore); False trains every weight.
        out: replaces the YAML's ``out``.

    Returns:
        ``(TrainResult, info, run directory)``; ``info`` has the parameter counts and the measured
        optimizer-state bytes.

    Raises:
        ConfigError / DataError / ModelLoadError: bad config, data or model directory.
        TargetError: ``lrc_only`` on a model without low-rank components.
    """
    from slimkit.data.sources import read_documents
    from slimkit.models.loading import load_model, save_model
    from slimkit.train import tokenize_documents, train

    spec = _load_finetune_yaml(Path(config))
    cfg: TrainConfig = spec["train"]
    run_dir = Path(out if out is not None else spec["out"])
    model, tokenizer = load_model(model_dir, dtype="float32")
    info = freeze_for_lrc_finetuning_(model) if lrc_only else unfreeze_all_(model)
    info["optimizer_state_bytes"] = measure_optimizer_state_bytes(model, cfg)
    token_ids = tokenize_documents(tokenizer, read_documents(spec["data"]))
    with torch.inference_mode(False):
        result = train(model, token_ids, cfg, run_dir)
    model.eval()
    from slimkit.nn.int8 import restore_linears_

    restore_linears_(model)  # Q-GaLore trained INT8 linears in place: save plain nn.Linear
    for p in model.parameters():
        p.requires_grad_(True)
    metadata: dict[str, Any] = {
        "method": "finetune",
        "finetune": {
            "lrc_only": lrc_only,
            **info,
            "train_config": cfg.to_dict(),
            "final_loss": result.losses[-1] if result.losses else None,
            "tokens_per_s": result.tokens_per_s,
        },
    }
    lowrank = lowrank_metadata(model)
    if lowrank["modules"]:
        metadata["restore"] = [RESTORER]
        metadata[RESTORER] = lowrank
    save_model(model, tokenizer, run_dir / "model", metadata=metadata, parent=model_dir)
    return result, info, run_dir


__all__ = [
    "finetune_from_yaml",
    "freeze_for_lrc_finetuning_",
    "measure_optimizer_state_bytes",
    "optimizer_state_bytes",
    "parameter_counts",
    "unfreeze_all_",
]
