"""Debiasing metrics: pure functions of predictions, labels and bias annotations.

Conventions (Whac-A-Mole / JTT / LfF; see docs/sebra.md):

- **worst-group accuracy**: the lowest accuracy over the groups present in the evaluated set, even
  when that group is not a minority. Groups pool by *which attributes conflict* (``y · 2^K + Σ_k
  conflict_k · 2^k``): for binary attributes (Waterbirds, CelebA) the usual groups.
- **worst-cell accuracy**: the lowest accuracy over the observed (class, bias values) cells: for
  Colored MNIST the standard (digit, colour) worst group, which the pooled groups average over.
- **accuracy**: plain accuracy over the evaluated samples.
- **in-distribution (I.D.) accuracy**: ``Σ_g acc_g · p_g`` with ``p_g`` the *training* proportion of
  group g (renormalised over the groups present in the evaluated set): the accuracy the model would
  have on test data distributed like its training data. This is what the Waterbirds/CelebA literature
  (GroupDRO, JTT) calls "average accuracy".
- **bias-conflicting accuracy**: accuracy over the samples whose bias attribute differs from the
  class's aligned value.
- **unbiased accuracy**: the unweighted mean of accuracies over every observed (class, bias values)
  cell; equal to plain accuracy on a test set balanced over those cells.
- **ranking AUROC**: how well a spuriosity rank (higher = learned later = less spurious) separates
  bias-conflicting from bias-aligned training samples; 0.5 is chance.
"""

from __future__ import annotations

import torch
from torch import Tensor


def accuracy(pred: Tensor, labels: Tensor) -> float:
    """Fraction of ``pred == labels`` (``[N]``, ``[N]``)."""
    return (pred == labels).float().mean().item()


def group_accuracies(pred: Tensor, labels: Tensor, groups: Tensor, num_groups: int) -> Tensor:
    """``[num_groups]`` float accuracy per group id; NaN for a group with no samples."""
    correct = torch.zeros(num_groups).index_add_(0, groups, (pred == labels).float())
    counts = torch.bincount(groups, minlength=num_groups).float()
    return torch.where(counts > 0, correct / counts.clamp(min=1), torch.full_like(counts, float("nan")))


def worst_group_accuracy(group_acc: Tensor) -> float:
    """``min_g acc_g`` over the groups with samples (non-NaN entries of ``group_acc``)."""
    present = group_acc[~group_acc.isnan()]
    return present.min().item()


def in_distribution_accuracy(group_acc: Tensor, train_proportions: Tensor) -> float:
    """``Σ_g acc_g · p_g / Σ_g p_g`` over the groups present in both the evaluated and the training set."""
    present = ~group_acc.isnan() & (train_proportions > 0)
    weights = train_proportions[present]
    if not bool(present.any()):  # no evaluated group occurs in training: nothing to weight by
        return group_acc[~group_acc.isnan()].mean().item()
    return (group_acc[present] * weights).sum().item() / weights.sum().item()


def group_proportions(groups: Tensor, num_groups: int) -> Tensor:
    """``[num_groups]`` fraction of samples in each group."""
    return torch.bincount(groups, minlength=num_groups).float() / len(groups)


def bias_conflicting_accuracy(pred: Tensor, labels: Tensor, conflicting: Tensor) -> float | None:
    """Accuracy over the samples with ``conflicting`` set (``[N]`` bool); None when there are none."""
    if not bool(conflicting.any()):
        return None
    return accuracy(pred[conflicting], labels[conflicting])


def cell_accuracies(pred: Tensor, labels: Tensor, bias: Tensor) -> Tensor:
    """Accuracy of each observed (label, bias[:, 0], ..., bias[:, K-1]) cell, ``[cells]``.

    Shapes: ``pred``/``labels`` ``[N]``, ``bias`` ``[N, K]``.
    """
    cells = torch.cat([labels.unsqueeze(1), bias], dim=1)
    _, cell_ids = torch.unique(cells, dim=0, return_inverse=True)
    n_cells = int(cell_ids.max()) + 1
    return group_accuracies(pred, labels, cell_ids, n_cells)


def unbiased_accuracy(pred: Tensor, labels: Tensor, bias: Tensor) -> float:
    """Mean over the observed (label, bias values) cells of each cell's accuracy (:func:`cell_accuracies`)."""
    return cell_accuracies(pred, labels, bias).mean().item()


def ranking_auroc(ranks: Tensor, conflicting: Tensor) -> float | None:
    """AUROC of ``ranks`` (``[N]``, higher = less spurious) as a score for ``conflicting`` (``[N]`` bool).

    ``P(rank_c > rank_a) + ½·P(rank_c = rank_a)`` over (conflicting, aligned) pairs (ties count half),
    as :func:`sklearn.metrics.roc_auc_score` computes it. None when either class is absent.
    """
    if bool(conflicting.all()) or not bool(conflicting.any()):
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(conflicting.numpy().astype(int), ranks.double().numpy()))


def classification_metrics(
    pred: Tensor,
    labels: Tensor,
    bias: Tensor,
    groups: Tensor,
    conflicting: Tensor,
    num_groups: int,
    train_proportions: Tensor,
) -> dict[str, float | int]:
    """Every accuracy above for one evaluated set; ``n`` is the number of samples.

    Returns keys ``worst_group_accuracy``, ``worst_cell_accuracy``, ``accuracy``, ``id_accuracy``,
    ``unbiased_accuracy``, ``bias_conflicting_accuracy`` (absent when no sample conflicts),
    ``bias_aligned_accuracy`` (absent when every sample conflicts), ``worst_group`` (its id), ``n``.
    """
    group_acc = group_accuracies(pred, labels, groups, num_groups)
    present = ~group_acc.isnan()
    worst = int(torch.nonzero(present).flatten()[group_acc[present].argmin()])
    out: dict[str, float | int] = {
        "worst_group_accuracy": worst_group_accuracy(group_acc),
        "worst_cell_accuracy": cell_accuracies(pred, labels, bias).min().item(),
        "accuracy": accuracy(pred, labels),
        "id_accuracy": in_distribution_accuracy(group_acc, train_proportions),
        "unbiased_accuracy": unbiased_accuracy(pred, labels, bias),
        "worst_group": worst,
    }
    conflicting_acc = bias_conflicting_accuracy(pred, labels, conflicting)
    if conflicting_acc is not None:
        out["bias_conflicting_accuracy"] = conflicting_acc
    aligned_acc = bias_conflicting_accuracy(pred, labels, ~conflicting)
    if aligned_acc is not None:
        out["bias_aligned_accuracy"] = aligned_acc
    out["n"] = len(labels)
    return out
