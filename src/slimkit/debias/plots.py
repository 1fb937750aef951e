"""The spuriosity-ranking plot: bias-conflicting fraction per stage-1 rank."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor


def conflicting_fraction_by_rank(ranks: Tensor, conflicting: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """For each occupied rank: (rank values, sample counts, fraction bias-conflicting); each ``[R]``."""
    values, inverse = torch.unique(ranks, return_inverse=True)
    counts = torch.bincount(inverse, minlength=len(values))
    n_conf = torch.bincount(inverse, weights=conflicting.double(), minlength=len(values))
    return values, counts, (n_conf / counts).float()


def plot_ranking(series: list[tuple[str, Tensor]], conflicting: Tensor, path: str | Path, title: str) -> Path:
    """Plot rank (x) against the bias-conflicting fraction (y; marker area ∝ samples) for each (label, ranks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, ranks in series:
        values, counts, frac = conflicting_fraction_by_rank(ranks, conflicting)
        ax.plot(values.numpy(), frac.numpy(), "-", alpha=0.5)
        sizes = 8 + 200 * counts.double().numpy() / counts.max().item()
        ax.scatter(values.numpy(), frac.numpy(), s=sizes, label=label, alpha=0.7)
    overall = conflicting.float().mean().item()
    ax.axhline(overall, color="grey", ls="--", lw=1, label=f"overall ({overall:.3f})")
    ax.set_xlabel("spuriosity rank (elimination round; last = never eliminated)")
    ax.set_ylabel("fraction bias-conflicting")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
