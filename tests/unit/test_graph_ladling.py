"""Graph Ladling: soups over state dicts, ingredient determinism, the torchrun path, the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

pytest.importorskip("torch_geometric")

import typer  # noqa: E402

from slimkit.cli.errors import run_cli  # noqa: E402
from slimkit.cli.main import app  # noqa: E402
from slimkit.core.errors import ConfigError  # noqa: E402
from slimkit.core.io import load_tensors  # noqa: E402
from slimkit.evaluate.results import validate_results  # noqa: E402
from slimkit.graph import GNNConfig, GraphTrainConfig, ViewConfig, build_model, load_dataset, make_views  # noqa: E402
from slimkit.graph.ladling import (  # noqa: E402
    LadlingConfig,
    average,
    greedy_interpolation_soup,
    greedy_soup,
    interpolate,
    make_soup,
    run_ladling,
    train_ingredient,
    uniform_soup,
)
from slimkit.graph.train import accuracy  # noqa: E402

COMMAND = typer.main.get_command(app)
TINY = "csbm:nodes=240,feature_dim=8,seed=2"


def tiny_cfg(**changes) -> LadlingConfig:
    base = dict(
        model=GNNConfig(hidden=16),
        view=ViewConfig(kind="metis", num_parts=8),
        train=GraphTrainConfig(epochs=6, eval_every=3),
        ingredients=3,
    )
    return LadlingConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def tiny():
    return load_dataset(TINY)


@pytest.fixture(scope="module")
def tiny_run(tiny):
    return run_ladling(tiny_cfg(), tiny, progress=False)


def states(n: int, seed: int = 0):
    return [build_model(GNNConfig(hidden=8), 4, 3, seed=seed + i).state_dict() for i in range(n)]


# -- soups as pure functions ----------------------------------------------------------------------------
def test_soup_of_identical_ingredients_equals_each_ingredient():
    one = states(1)[0]
    same = [{k: v.clone() for k, v in one.items()} for _ in range(4)]
    evaluate = lambda s: 0.5  # noqa: E731
    for name in ("uniform", "greedy", "greedy-interp"):
        soup = make_soup(name, same, evaluate, grid=5)
        assert all(torch.equal(soup.state[k], one[k]) for k in one), name
    assert all(torch.equal(average(same)[k], one[k]) for k in one)


def test_average_and_interpolate_math():
    a, b = {"w": torch.tensor([0.0, 2.0])}, {"w": torch.tensor([4.0, 6.0])}
    assert torch.allclose(average([a, b])["w"], torch.tensor([2.0, 4.0]))
    assert torch.allclose(average([a, b], [3, 1])["w"], torch.tensor([1.0, 3.0]))
    assert torch.allclose(interpolate(a, b, 0.25)["w"], torch.tensor([3.0, 5.0]))
    with pytest.raises(ConfigError, match="non-negative"):
        average([a, b], [1, -1])


def test_greedy_recipes_on_a_known_score():
    # the score prefers states whose parameter mean is near 0.3: ingredient 0 is best alone,
    # mixing in some of ingredient 1 (mean 1.0) helps, ingredient 2 (mean -5) only hurts
    ingredients = [{"w": torch.full((3,), v)} for v in (0.0, 1.0, -5.0)]
    score = lambda s: float(1.0 - abs(s["w"].mean() - 0.3))  # noqa: E731
    interp = greedy_interpolation_soup(ingredients, score, grid=11)
    assert interp.order == [0, 1, 2]
    assert interp.alphas == pytest.approx([0.7, 1.0])
    assert interp.weights == pytest.approx([0.7, 0.3, 0.0])
    assert interp.val_acc == pytest.approx(1.0)
    greedy = greedy_soup(ingredients, score)
    assert greedy.weights == pytest.approx([0.5, 0.5, 0.0])  # 0.5 mean scores 0.8 >= 0.7; -5 rejected
    uniform = uniform_soup(ingredients, score)
    assert uniform.val_acc == pytest.approx(1.0 - abs(-4.0 / 3 - 0.3))


def test_greedy_interpolation_never_lowers_validation_accuracy():
    gen = torch.Generator().manual_seed(0)
    for trial in range(20):
        target = torch.randn(4, generator=gen)

        def score(s, t=target):
            return float(-((s["w"] - t) ** 2).sum())

        ingredients = sorted(
            ({"w": torch.randn(4, generator=gen)} for _ in range(5)), key=score, reverse=True
        )
        # the soup after each added ingredient is the soup over that prefix (same order, same choices)
        vals = [greedy_interpolation_soup(ingredients[:k], score, grid=6).val_acc for k in range(1, 6)]
        assert vals[0] == score(ingredients[0])
        assert all(later >= earlier for earlier, later in zip(vals, vals[1:], strict=False)), (trial, vals)
        soup = greedy_interpolation_soup(ingredients, score, grid=6)
        assert score(soup.state) == pytest.approx(soup.val_acc)
        assert sum(soup.weights) == pytest.approx(1.0)


def test_non_float_entries_come_from_the_first_state_in_every_recipe():
    # BatchNorm's num_batches_tracked: never averaged, taken from the state the recipe starts from
    ingredients = [
        {"w": torch.full((2,), v), "n": torch.tensor(c)} for v, c in ((0.0, 7), (1.0, 3), (2.0, 5))
    ]
    assert int(average(ingredients)["n"]) == 7
    assert int(average(ingredients, [0, 1, 1])["n"]) == 3
    score = lambda s: float(-(s["w"].mean() - 0.6).abs())  # noqa: E731 - ingredient 1 is best alone
    for name in ("greedy", "greedy-interp"):
        soup = make_soup(name, ingredients, score, grid=11)
        assert soup.order[0] == 1 and int(soup.state["n"]) == 3, name


def test_soup_over_different_architectures_is_refused():
    wide = build_model(GNNConfig(hidden=8), 4, 3).state_dict()
    narrow = build_model(GNNConfig(hidden=4), 4, 3).state_dict()
    deep = build_model(GNNConfig(hidden=8, layers=3), 4, 3).state_dict()
    for other in (narrow, deep):
        for name in ("uniform", "greedy", "greedy-interp"):
            with pytest.raises(ConfigError, match="different architectures"):
                make_soup(name, [wide, other], lambda s: 0.0)


# -- ingredients and the run ----------------------------------------------------------------------------
def test_ingredient_depends_only_on_seed_and_index(tiny, tiny_run):
    cfg = tiny_cfg()
    views = make_views(cfg.view, tiny, cfg.ingredients, seed=cfg.seed)
    torch.manual_seed(123)  # the caller's RNG state must not matter
    alone = train_ingredient(cfg, tiny, views[2], 2)
    ran = tiny_run.ingredients[2]
    assert all(torch.equal(alone.state[k], ran.state[k]) for k in ran.state)
    assert not torch.equal(
        tiny_run.ingredients[0].state["convs.0.lin_l.weight"], ran.state["convs.0.lin_l.weight"]
    )


def test_shared_and_independent_initialisation(tiny):
    shared = tiny_cfg(train=GraphTrainConfig(epochs=1, eval_every=1, select="last", lr=1e-9))
    indep = shared.replace(init="independent")
    views = make_views(shared.view, tiny, 3)
    a, b = (train_ingredient(shared, tiny, views[i], i).state for i in (0, 1))
    c, d = (train_ingredient(indep, tiny, views[i], i).state for i in (0, 1))
    key = "convs.0.lin_l.weight"
    assert torch.allclose(a[key], b[key], atol=1e-6)  # same start, lr ~ 0
    assert not torch.allclose(c[key], d[key], atol=1e-3)


def test_run_reports_every_soup_and_greedy_soups_beat_the_best_ingredient_on_validation(tiny_run):
    best = max(ing.val_acc for ing in tiny_run.ingredients)
    assert set(tiny_run.soups) == {"uniform", "greedy", "greedy-interp"}
    assert tiny_run.soups["greedy"].val_acc >= best
    assert tiny_run.soups["greedy-interp"].val_acc >= best
    assert all(0.0 <= t <= 1.0 for t in [*tiny_run.ingredient_test, *tiny_run.soup_test.values()])
    assert tiny_run.world_size == 1 and tiny_run.n_test == 240 - 24 - 48


def test_greedy_soups_of_the_run_really_mix_ingredients(tiny, tiny_run):
    # `>= best` holds trivially for a soup that returns the best ingredient alone; on this run both
    # greedy recipes find a strictly better mixture, and the soup's state is that mixture
    best = max(ing.val_acc for ing in tiny_run.ingredients)
    for name in ("greedy", "greedy-interp"):
        soup = tiny_run.soups[name]
        assert sum(w > 0 for w in soup.weights) >= 2, (name, soup.weights)
        assert soup.val_acc > best, name
        mixed = average([ing.state for ing in tiny_run.ingredients], soup.weights)
        key = "convs.0.lin_l.weight"
        assert torch.allclose(soup.state[key], mixed[key], atol=1e-6), name
        assert all(not torch.equal(soup.state[key], ing.state[key]) for ing in tiny_run.ingredients), name
        model = build_model(tiny_cfg().model, tiny.num_features, int(tiny.y.max()) + 1)
        model.load_state_dict(soup.state)
        assert accuracy(model, tiny, tiny.val_mask) == pytest.approx(soup.val_acc), name


def test_random_subsets_of_clusters_view(tiny):
    from slimkit.graph.views import random_part_subsets

    shares = random_part_subsets(10, 0.5, 3, seed=4)
    assert [len(s) for s in shares] == [5, 5, 5]
    assert len({tuple(s.tolist()) for s in shares}) == 3  # ingredients own different subsets
    # ingredient i's subset depends on (seed, i) only, not on how many ingredients there are
    assert all(
        torch.equal(a, b) for a, b in zip(random_part_subsets(10, 0.5, 5, seed=4)[:3], shares, strict=False)
    )
    views = make_views(ViewConfig(kind="metis", num_parts=8, cluster_fraction=0.5), tiny, 3)
    full = make_views(ViewConfig(kind="metis", num_parts=8), tiny, 3)
    assert all(v.train_nodes < full[0].train_nodes for v in views)
    g = torch.Generator().manual_seed(0)
    seen = torch.cat([b.nodes for b in views[0].epoch(g)]).unique()
    assert seen.numel() < tiny.num_nodes * 0.75  # the ingredient never visits the other half
    with pytest.raises(ConfigError, match="choose one"):
        ViewConfig(kind="metis", disjoint=True, cluster_fraction=0.5)
    with pytest.raises(ConfigError, match="metis and random views only"):
        ViewConfig(kind="neighbor", cluster_fraction=0.5)
    with pytest.raises(ConfigError, match="cluster_fraction"):
        ViewConfig(kind="metis", cluster_fraction=0.0)


def test_neighbor_fanouts_must_match_the_model_depth():
    with pytest.raises(ConfigError, match="2 fanouts \\[25, 10\\] for a 3-layer model"):
        tiny_cfg(view=ViewConfig(kind="neighbor"), model=GNNConfig(layers=3))
    tiny_cfg(view=ViewConfig(kind="neighbor", fanouts=(5, 5, 5)), model=GNNConfig(layers=3))
    tiny_cfg(view=ViewConfig(kind="metis"), model=GNNConfig(layers=3))  # fanouts unused there


@pytest.mark.parametrize("view", ["neighbor", "saint-rw"])
def test_greedy_soup_on_csbm_is_at_least_the_best_ingredient(view):
    data = load_dataset("csbm:nodes=600,feature_dim=16")
    cfg = tiny_cfg(
        view=ViewConfig(kind=view, batch_size=64, roots=64), ingredients=4, train=GraphTrainConfig(epochs=10)
    )
    result = run_ladling(cfg, data, progress=False)
    best = max(ing.val_acc for ing in result.ingredients)
    assert result.soups["greedy"].val_acc >= best
    assert result.soups["greedy-interp"].val_acc >= best
    assert best > 0.5  # the ingredients learned something (chance is 0.25)


# -- CLI and the torchrun path ------------------------------------------------------------------------------
def run(args, capsys):
    code = run_cli(COMMAND, [str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(code, err, *needles):
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle.lower() in err.lower(), (needle, err)


LADLING_ARGS = [
    "graph",
    "ladling",
    "--dataset",
    TINY,
    "--ingredients",
    "3",
    "--epochs",
    "4",
    "--hidden",
    "16",
]
LADLING_ARGS += ["--view", "metis", "--parts", "8", "--seed", "5"]


def test_cli_help_and_bad_input(tmp_path, capsys):
    code, out, _ = run(["graph", "ladling", "--help"], capsys)
    assert code == 0 and "Examples" in out and "torchrun" in out
    cases = [
        (["--dataset", "cora"], ["unknown graph dataset 'cora'"]),
        (["--dataset", f"planetoid:{tmp_path}/Cora"], ["ind.cora.x", "--download"]),
        (["--dataset", "karate", "--view", "random", "--parts", "40"], ["34 nodes", "40 partitions"]),
        (["--dataset", "karate", "--soup", "best"], ["soup"]),
        (["--dataset", "karate", "--model", "gin"], ["arch"]),
    ]
    for extra, needles in cases:
        code, _, err = run(["graph", "ladling", *extra, "--out", tmp_path / "o"], capsys)
        one_line_error(code, err, *needles)
        assert not (tmp_path / "o").exists()


def test_cli_without_the_graph_extra_says_how_to_install(monkeypatch, tmp_path, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch_geometric" else real(name, *a)
    )
    for name in [m for m in sys.modules if m.startswith("slimkit.graph")]:
        monkeypatch.delitem(sys.modules, name)
    code, _, err = run(["graph", "ladling", "--dataset", "karate", "--out", tmp_path / "o"], capsys)
    one_line_error(code, err, "pip install 'slimkit[graph]'")


def test_torchrun_with_two_gloo_processes_matches_the_sequential_run(tmp_path, capsys):
    code, out, err = run([*LADLING_ARGS, "--out", tmp_path / "seq"], capsys)
    assert code == 0, err
    env = {**os.environ, "SLIMKIT_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    launch += ["-m", "slimkit.cli.main", *LADLING_ARGS, "--out", str(tmp_path / "dist")]
    # a session of its own, so a hang kills torchrun *and* its workers
    proc = subprocess.Popen(
        launch, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-3000:]
    seq, par = (
        load_tensors(tmp_path / "seq" / "soup.safetensors"),
        load_tensors(tmp_path / "dist" / "soup.safetensors"),
    )
    assert seq.keys() == par.keys() and all(torch.equal(seq[k], par[k]) for k in seq)
    seq_res = json.loads((tmp_path / "seq" / "results.json").read_text())
    par_res = json.loads((tmp_path / "dist" / "results.json").read_text())
    validate_results(par_res)
    assert par_res["metrics"]["timing"]["world_size"] == 2 and seq_res["metrics"]["timing"]["world_size"] == 1
    for task in (
        "ingredient_0",
        "ingredient_1",
        "ingredient_2",
        "soup_uniform",
        "soup_greedy",
        "soup_greedy-interp",
    ):
        assert seq_res["metrics"][task]["test_acc"] == par_res["metrics"][task]["test_acc"], task
    assert (tmp_path / "dist" / "ladling.png").stat().st_size > 1000
    soups = json.loads((tmp_path / "seq" / "soups.json").read_text())
    assert sum(soups["greedy-interp"]["weights"]) == pytest.approx(1.0)


def test_config_round_trip_and_validation():
    from slimkit.core.config import Config

    cfg = tiny_cfg(view=ViewConfig(kind="neighbor", fanouts=(5, 3)), init="independent")
    assert Config.from_dict(json.loads(cfg.to_json())) == cfg
    for bad in ({"ingredients": 0}, {"init": "random"}, {"soup": "best"}, {"interp_grid": 1}):
        with pytest.raises(ConfigError):
            tiny_cfg(**bad)
    with pytest.raises(ConfigError, match="fanouts"):
        ViewConfig(fanouts=(0,))
