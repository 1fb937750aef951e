"""Pieces every compress-then-evaluate sweep shares (the study, the Junk DNA analysis).

One model is loaded once; each point of a sweep compresses a fresh copy of it with one shared
calibration set (so differences come from the methods alone) and evaluates the copy.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from slimkit.core.config import Config


def load_subject(model: str | None, device: str) -> tuple[Any, Any, str]:
    """(model in eval mode, tokenizer, display name); None = the built-in world's default model."""
    if model is None:
        from slimkit.models.default import default_model

        m, tok = default_model(device=device)
        name = "factworld-default"
    else:
        from slimkit.models.loading import load_model

        m, tok = load_model(model, device=device)
        name = model
    m.eval()
    return m, tok, name


def shared_calibration(
    configs: Sequence[Config | None],
    tokenizer: Any,
    source: str | None,
    *,
    nsamples: int,
    seqlen: int,
    seed: int,
) -> Any:
    """One calibration set for every calibrated config of a sweep (None when none needs one)."""
    from slimkit.compress import calibration_for, needs_calibration

    calibrated = next((c for c in configs if c is not None and needs_calibration(c)), None)
    if calibrated is None:
        return None
    return calibration_for(calibrated, tokenizer, source, nsamples=nsamples, seqlen=seqlen, seed=seed)


def compressed_copy(dense: Any, config: Config, calib: Any, device: str) -> tuple[Any, dict[str, Any]]:
    """A compressed deep copy of ``dense`` and what the compression reported (sparsity, time, per block)."""
    from slimkit.compress import compress_, needs_calibration

    model = copy.deepcopy(dense)
    report = compress_(model, config, calib if needs_calibration(config) else None, device=device)
    return model, {
        "achieved_sparsity": report.overall_sparsity,
        "compress_time_s": report.total_time_s,
        "block_sparsity": report.block_sparsity,
    }
