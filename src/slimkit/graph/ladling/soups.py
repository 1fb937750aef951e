"""Model soups over state dicts: uniform, greedy, greedy interpolation. Pure functions.

Wortsman et al., "Model soups: averaging weights of multiple fine-tuned models improves accuracy
without increasing inference time" (arXiv 2203.05482) for the uniform and greedy soups; Jaiswal et
al., Graph Ladling (arXiv 2306.10466) for the greedy interpolation soup. For states θ_1..θ_K (same
keys and shapes) and a validation score ``val(θ)``:

- uniform: ``θ = (1/K) Σ_k θ_k``.
- greedy: sort by ``val(θ_k)`` descending; start from the best; add the next ingredient to the
  averaged set when the average's validation accuracy does not drop (``>=``, Wortsman's Recipe 1).
- greedy interpolation: sort likewise; ``soup = θ_(1)``; for each next θ_(j) pick
  ``α* = argmax_{α ∈ linspace(0,1,G)} val(α·soup + (1−α)·θ_(j))`` and set the soup to that
  interpolation. α = 1 is the current soup, so validation accuracy never drops; ties keep the larger
  α (the current soup).

Only validation scores choose; the caller measures test accuracy once, afterwards. Non-floating
entries (BatchNorm's ``num_batches_tracked``) are never averaged: every recipe takes them from the
first state it starts from (the first listed for ``average``, the best ingredient for the greedy
soups). Averages are built with
``torch.lerp`` so a soup of identical states is bit-identical to each of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from slimkit.core.errors import ConfigError

State = dict[str, Tensor]
Evaluate = Callable[[State], float]  # a state -> its validation accuracy


@dataclass
class Soup:
    """A soup and how it was made.

    Attributes:
        state: the merged state dict.
        val_acc: its validation accuracy.
        weights: weight of each ingredient in the soup ([K], sums to 1), by ingredient index.
        alphas: greedy interpolation: the α chosen for each considered ingredient, in order.
        order: ingredient indices in the order they were considered.
        evaluations: how many validation evaluations the recipe used.
    """

    state: State
    val_acc: float
    weights: list[float]
    order: list[int] = field(default_factory=list)
    alphas: list[float] = field(default_factory=list)
    evaluations: int = 0


def check_compatible(states: Sequence[State]) -> None:
    """Raise :class:`ConfigError` unless every state has the same keys, shapes and dtypes."""
    if not states:
        raise ConfigError("a soup needs at least one ingredient")
    ref = states[0]
    for i, s in enumerate(states[1:], start=1):
        if s.keys() != ref.keys():
            diff = sorted(set(s) ^ set(ref))[:3]
            raise ConfigError(
                f"ingredients 0 and {i} have different architectures (parameters {diff} are in only one); "
                "a soup needs identical architectures"
            )
        for k, v in s.items():
            if v.shape != ref[k].shape or v.dtype != ref[k].dtype:
                raise ConfigError(
                    f"ingredients 0 and {i} have different architectures: {k} is "
                    f"{tuple(ref[k].shape)}/{ref[k].dtype} vs {tuple(v.shape)}/{v.dtype}; "
                    "a soup needs identical architectures"
                )


def interpolate(a: State, b: State, alpha: float) -> State:
    """``α·a + (1−α)·b`` for floating entries (``a``'s value for the others)."""
    return {k: torch.lerp(b[k], a[k], alpha) if a[k].is_floating_point() else a[k].clone() for k in a}


def average(states: Sequence[State], weights: Sequence[float] | None = None) -> State:
    """Weighted mean ``Σ w_k θ_k / Σ w_k`` (uniform without ``weights``); zero weights are skipped."""
    check_compatible(states)
    weights = [1.0] * len(states) if weights is None else [float(w) for w in weights]
    if len(weights) != len(states) or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ConfigError(f"soup weights must be {len(states)} non-negative numbers with a positive sum")
    out: State | None = None
    seen = 0.0
    for state, w in zip(states, weights, strict=True):
        if w == 0:
            continue
        seen += w
        # running mean: out ← out + (w/seen)·(θ − out), exact when all θ are equal
        out = {k: v.clone() for k, v in state.items()} if out is None else interpolate(state, out, w / seen)
    assert out is not None
    first = next(s for s, w in zip(states, weights, strict=True) if w > 0)
    # interpolate keeps its first argument's non-floating entries (here: the latest state); restore the
    # first state's, as the module docstring promises
    return {k: v if v.is_floating_point() else first[k].clone() for k, v in out.items()}


def _ranked(
    states: Sequence[State], val_accs: Sequence[float] | None, evaluate: Evaluate
) -> tuple[list[int], list[float]]:
    accs = list(val_accs) if val_accs is not None else [evaluate(s) for s in states]
    if len(accs) != len(states):
        raise ConfigError(f"got {len(accs)} validation accuracies for {len(states)} ingredients")
    order = sorted(range(len(states)), key=lambda i: (-accs[i], i))
    return order, accs


def uniform_soup(states: Sequence[State], evaluate: Evaluate) -> Soup:
    check_compatible(states)
    state = average(states)
    return Soup(
        state, evaluate(state), [1.0 / len(states)] * len(states), list(range(len(states))), evaluations=1
    )


def greedy_soup(states: Sequence[State], evaluate: Evaluate, val_accs: Sequence[float] | None = None) -> Soup:
    check_compatible(states)
    order, accs = _ranked(states, val_accs, evaluate)
    members = [order[0]]
    best_state, best_acc, evaluations = states[order[0]], accs[order[0]], 0
    for i in order[1:]:
        candidate = average([states[j] for j in [*members, i]])
        acc = evaluate(candidate)
        evaluations += 1
        if acc >= best_acc:
            members.append(i)
            best_state, best_acc = candidate, acc
    weights = [1.0 / len(members) if k in members else 0.0 for k in range(len(states))]
    return Soup(
        {k: v.clone() for k, v in best_state.items()}, best_acc, weights, order, evaluations=evaluations
    )


def greedy_interpolation_soup(
    states: Sequence[State], evaluate: Evaluate, *, grid: int = 11, val_accs: Sequence[float] | None = None
) -> Soup:
    check_compatible(states)
    if grid < 2:
        raise ConfigError(f"interpolation grid must have at least 2 points, got {grid}")
    order, accs = _ranked(states, val_accs, evaluate)
    soup, soup_acc = {k: v.clone() for k, v in states[order[0]].items()}, accs[order[0]]
    weights = [0.0] * len(states)
    weights[order[0]] = 1.0
    alphas, evaluations = [], 0
    # descending, so that among equal accuracies the larger α (closer to the current soup) wins
    grid_values = torch.linspace(1.0, 0.0, grid, dtype=torch.float64).tolist()
    for i in order[1:]:
        best_alpha, best_state, best_acc = 1.0, soup, soup_acc
        for alpha in grid_values[1:]:  # α = 1 is the current soup, already scored
            candidate = interpolate(soup, states[i], alpha)
            acc = evaluate(candidate)
            evaluations += 1
            if acc > best_acc:
                best_alpha, best_state, best_acc = alpha, candidate, acc
        alphas.append(best_alpha)
        soup, soup_acc = best_state, best_acc
        weights = [w * best_alpha for w in weights]
        weights[i] += 1.0 - best_alpha
    return Soup(soup, soup_acc, weights, order, alphas, evaluations)


def make_soup(
    name: str,
    states: Sequence[State],
    evaluate: Evaluate,
    *,
    grid: int = 11,
    val_accs: Sequence[float] | None = None,
) -> Soup:
    """The soup recipe ``name`` (``uniform``, ``greedy``, ``greedy-interp``)."""
    recipes: dict[str, Callable[[], Soup]] = {
        "uniform": lambda: uniform_soup(states, evaluate),
        "greedy": lambda: greedy_soup(states, evaluate, val_accs),
        "greedy-interp": lambda: greedy_interpolation_soup(states, evaluate, grid=grid, val_accs=val_accs),
    }
    if name not in recipes:
        raise ConfigError(f"soup={name!r} is not one of {sorted(recipes)}")
    return recipes[name]()
