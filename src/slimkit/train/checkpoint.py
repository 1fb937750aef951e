"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON.

Layout of ``<out>/checkpoints/step-00000040/`` (one directory per saved step)::

    model.safetensors       model.state_dict()
    optimizer.safetensors   optimizer tensors, keys "state.{param_index}.{name}" (exp_avg, step, ...)
    rng.safetensors         "torch" (CPU generator ByteTensor), "cuda.{i}" per CUDA device
    callbacks.safetensors   tensors of stateful training callbacks, "{callback index}.{name}" (only
                            when one stores tensors; e.g. a pruning schedule's masks and scores)
    state.json              step, tokens_seen, losses, data position, scheduler state, the optimizer's
                            non-tensor state and param_groups, Python/NumPy RNG states, the TrainConfig,
                            parameter names, a data fingerprint, and the sha256 of every file above

A checkpoint is written into a hidden temporary directory and renamed into place, so a crash while
writing leaves the previous checkpoint untouched; the newest ``keep`` checkpoints are kept (2 by
default: the latest, and the one before it in case the latest is damaged later). Resuming reads the
newest ``step-*`` directory and refuses, with :class:`CheckpointError`, one that is corrupt, was
written by a different model/optimizer/config, or for different data.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slimkit.core.errors import CheckpointError, SlimkitError
from slimkit.core.io import atomic_dir, load_tensors, read_json, save_tensors, write_json
from slimkit.train.config import RESUME_MUTABLE_FIELDS, TrainConfig

FORMAT_VERSION = 1
_STEP_DIR = re.compile(r"^step-(\d+)$")
_TENSOR_FILES = ("model.safetensors", "optimizer.safetensors", "rng.safetensors")
_CALLBACK_FILE = "callbacks.safetensors"  # only when a stateful training callback stores tensors


@dataclass
class ResumeState:
    """What a loaded checkpoint hands back to the loop (model/optimizer/scheduler are restored in place)."""

    path: Path
    step: int
    tokens_seen: int
    losses: list[float]
    data_state: dict[str, int]
    rng: dict[str, Any]  # in the form core.seed.set_rng_state takes


# -- public API ------------------------------------------------------------------------------------
def checkpoint_dir(root: Path, step: int) -> Path:
    return Path(root) / f"step-{step:08d}"


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoint directories under ``root``, oldest first (hidden temp dirs excluded)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def data_fingerprint(token_ids: torch.Tensor) -> dict[str, Any]:
    """``{"n_tokens", "sha256"}`` of the token stream, so a resume on other data is refused."""
    data = token_ids.detach().to("cpu", torch.long).contiguous().numpy().tobytes()
    return {"n_tokens": int(token_ids.numel()), "sha256": hashlib.sha256(data).hexdigest()}


def save_checkpoint(
    root: Path,
    *,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config: TrainConfig,
    data_state: dict[str, int],
    rng: dict[str, Any],
    losses: list[float],
    tokens_seen: int,
    fingerprint: dict[str, Any],
    keep: int = 2,
    callback_state: list[dict[str, Any]] | None = None,
) -> Path:
    """Atomically write the checkpoint of ``step`` under ``root`` and prune to the newest ``keep``.

    ``rng`` is :func:`slimkit.core.seed.rng_state` output taken at the end of ``step``.
    """
    root = Path(root)
    _remove_stale_temp_dirs(root)
    opt_tensors, opt_meta = flatten_optimizer_state(optimizer.state_dict())
    rng_tensors, rng_meta = _flatten_rng(rng)
    target = checkpoint_dir(root, step)
    with atomic_dir(target) as tmp:
        save_tensors(tmp / "model.safetensors", {k: v.cpu() for k, v in model.state_dict().items()})
        save_tensors(tmp / "optimizer.safetensors", {k: v.cpu() for k, v in opt_tensors.items()})
        save_tensors(tmp / "rng.safetensors", rng_tensors)
        files = list(_TENSOR_FILES)
        cb_tensors, cb_meta = _flatten_callbacks(callback_state or [])
        if cb_tensors:
            save_tensors(tmp / _CALLBACK_FILE, cb_tensors)
            files.append(_CALLBACK_FILE)
        state = {
            "format_version": FORMAT_VERSION,
            "step": step,
            "tokens_seen": tokens_seen,
            "losses": losses,
            "data": data_state,
            "data_fingerprint": fingerprint,
            "scheduler": scheduler.state_dict(),
            "optimizer": opt_meta,
            "rng": rng_meta,
            "config": config.to_dict(),
            "param_names": optimizer_param_names(model, optimizer),
            "callbacks": cb_meta,
            "files": {name: _sha256(tmp / name) for name in files},
        }
        write_json(tmp / "state.json", state)
    for old in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return target


def load_checkpoint(
    path: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config: TrainConfig,
    fingerprint: dict[str, Any],
) -> ResumeState:
    """Restore ``model``, ``optimizer`` and ``scheduler`` in place from the checkpoint at ``path``.

    Raises:
        CheckpointError: a file is missing or corrupt, or the checkpoint belongs to another run
            (different trajectory-relevant config, parameters, or data).
    """
    path = Path(path)
    state = _read_state(path)
    for name, digest in state["files"].items():
        if not (path / name).is_file():
            raise CheckpointError(f"checkpoint {path} is incomplete: {name} is missing")
        if _sha256(path / name) != digest:
            raise CheckpointError(f"checkpoint {path} is corrupt: {name} does not match its recorded sha256")
    _check_matches_run(path, state, model, optimizer, config, fingerprint)
    model_tensors = _load(path / "model.safetensors")
    try:
        model.load_state_dict(model_tensors, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0:2]
        raise CheckpointError(f"checkpoint {path} does not fit this model: {' '.join(first)}") from None
    try:
        optimizer.load_state_dict(
            unflatten_optimizer_state(_load(path / "optimizer.safetensors"), state["optimizer"])
        )
        scheduler.load_state_dict(state["scheduler"])
    except (ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(
            f"checkpoint {path}: optimizer/scheduler state does not fit this run: {e}"
        ) from None
    return ResumeState(
        path=path,
        step=int(state["step"]),
        tokens_seen=int(state["tokens_seen"]),
        losses=[float(x) for x in state["losses"]],
        data_state=state["data"],
        rng=_unflatten_rng(_load(path / "rng.safetensors"), state["rng"]),
    )


def read_callback_state(path: Path) -> list[dict[str, Any]]:
    """The training callbacks' states stored in the checkpoint at ``path`` (``[]`` when none were).

    Raises:
        CheckpointError: the checkpoint or its callback file is missing or corrupt.
    """
    path = Path(path)
    state = _read_state(path)
    metas = state.get("callbacks", [])
    tensors: dict[str, torch.Tensor] = {}
    if _CALLBACK_FILE in state["files"]:
        file = path / _CALLBACK_FILE
        if not file.is_file() or _sha256(file) != state["files"][_CALLBACK_FILE]:
            raise CheckpointError(f"checkpoint {path} is corrupt: {_CALLBACK_FILE} is missing or altered")
        tensors = _load(file)
    out: list[dict[str, Any]] = []
    for i, meta in enumerate(metas):
        entry = dict(meta)
        prefix = f"{i}."
        entry.update({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
        out.append(entry)
    return out


def _flatten_callbacks(states: list[dict[str, Any]]) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    tensors: dict[str, torch.Tensor] = {}
    metas: list[dict[str, Any]] = []
    for i, st in enumerate(states):
        meta = {}
        for key, value in st.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{i}.{key}"] = value.detach().cpu().contiguous()
            else:
                meta[key] = _json_safe(value, f"callback {i} state {key}")
        metas.append(meta)
    return tensors, metas


def optimizer_param_names(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The model's name for each optimizer parameter index (the index used in ``state_dict()``)."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [names.get(id(p), "<not in model>") for g in optimizer.param_groups for p in g["params"]]


# -- optimizer state <-> (tensors, JSON) --------------------------------------------------------------
def flatten_optimizer_state(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into safetensors-ready tensors and JSON-ready data.

    Tensors go to ``"state.{param_index}.{name}"``; non-tensor per-parameter values to
    ``meta["state"][str(param_index)][name]``; ``param_groups`` as they are (tuples become lists).
    """
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for idx, per_param in state_dict["state"].items():
        plain[str(idx)] = {}
        for name, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{idx}.{name}"] = value
            else:
                plain[str(idx)][name] = _json_safe(value, f"optimizer state[{idx}].{name}")
    groups = [_json_safe(g, "optimizer param_groups") for g in state_dict["param_groups"]]
    return tensors, {"state": plain, "param_groups": groups}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer_state`."""
    state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in meta["state"].items()}
    for key, value in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    groups = []
    for g in meta["param_groups"]:
        # JSON turned tuples (betas) into lists; give optimizers back the types they wrote.
        groups.append({k: (tuple(v) if isinstance(v, list) and k != "params" else v) for k, v in g.items()})
    return {"state": state, "param_groups": groups}


# -- internals ----------------------------------------------------------------------------------------
def _flatten_rng(rng: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch": rng["torch"]}
    for i, s in enumerate(rng.get("cuda", [])):
        tensors[f"cuda.{i}"] = s
    version, internal, gauss_next = rng["python"]
    name, keys, pos, has_gauss, cached = rng["numpy"]
    meta = {
        "python": [version, list(internal), gauss_next],
        "numpy": [name, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached)],
        "n_cuda": len(rng.get("cuda", [])),
    }
    return tensors, meta


def _unflatten_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    version, internal, gauss_next = meta["python"]
    name, keys, pos, has_gauss, cached = meta["numpy"]
    out: dict[str, Any] = {
        "python": (version, tuple(internal), gauss_next),
        "numpy": (name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached),
        "torch": tensors["torch"],
    }
    if meta["n_cuda"]:
        out["cuda"] = [tensors[f"cuda.{i}"] for i in range(meta["n_cuda"])]
    return out


def _check_matches_run(
    path: Path,
    state: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    fingerprint: dict[str, Any],
) -> None:
    # Compared as plain dicts: the saved optimizer config's class need not be importable to say so.
    saved = {k: v for k, v in state["config"].items() if k not in RESUME_MUTABLE_FIELDS}
    current = {k: v for k, v in config.to_dict().items() if k not in RESUME_MUTABLE_FIELDS}
    changed = sorted(k for k in current.keys() | saved.keys() if saved.get(k) != current.get(k))
    if changed:
        diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed)
        raise CheckpointError(
            f"checkpoint {path} was written with a different training config ({diffs}); "
            "resume with the same config or start a new run in another directory"
        )
    if state["data_fingerprint"] != fingerprint:
        raise CheckpointError(
            f"checkpoint {path} was trained on different data "
            f"({state['data_fingerprint'].get('n_tokens')} tokens, now {fingerprint['n_tokens']}); "
            "resume on the same tokenized corpus"
        )
    names = optimizer_param_names(model, optimizer)
    if state["param_names"] != names:
        diff = next(
            (i for i, (a, b) in enumerate(zip(state["param_names"], names, strict=False)) if a != b),
            min(len(names), len(state["param_names"])),
        )
        raise CheckpointError(
            f"checkpoint {path} optimizes {len(state['param_names'])} parameters, this run {len(names)}; "
            f"first difference at index {diff} (was the same set of parameters frozen?)"
        )


def _read_state(path: Path) -> dict[str, Any]:
    if not path.is_dir():
        raise CheckpointError(f"checkpoint directory not found: {path}")
    try:
        state = read_json(path / "state.json")
    except SlimkitError as e:
        raise CheckpointError(f"checkpoint {path} is unreadable: {e}") from None
    required = {"format_version", "step", "files", "config", "optimizer", "scheduler", "rng", "data"}
    if not isinstance(state, dict) or not required <= set(state):
        raise CheckpointError(f"checkpoint {path}/state.json is incomplete (needs keys {sorted(required)})")
    if state["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {state['format_version']}; this slimkit reads {FORMAT_VERSION}"
        )
    return state


def _load(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_tensors(path)
    except SlimkitError as e:
        raise CheckpointError(f"checkpoint file unreadable: {e}") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _json_safe(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v, where) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v, where) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise CheckpointError(f"{where}: cannot store a {type(value).__name__} without pickle")


def _remove_stale_temp_dirs(root: Path) -> None:
    """Temp dirs left by a crash mid-write (``.step-*.tmp``) are garbage; the last good one is intact."""
    if root.is_dir():
        for p in root.glob(".step-*.tmp"):
            shutil.rmtree(p, ignore_errors=True)


__all__ = [
    "FORMAT_VERSION",
    "ResumeState",
    "checkpoint_dir",
    "data_fingerprint",
    "flatten_optimizer_state",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "optimizer_param_names",
    "read_callback_state",
    "save_checkpoint",
    "unflatten_optimizer_state",
]
