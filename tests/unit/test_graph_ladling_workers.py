"""Disjoint Graph Ladling workers: each holds its share plus an L-hop halo, re-indexed, and trains on it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

pytest.importorskip("torch_geometric")

from torch_geometric.data import Data  # noqa: E402

from slimkit.cli.errors import run_cli  # noqa: E402
from slimkit.core.errors import ConfigError, DataError  # noqa: E402
from slimkit.core.io import load_tensors  # noqa: E402
from slimkit.graph import GNNConfig, GraphTrainConfig, ViewConfig, build_model, load_dataset, make_views  # noqa: E402
from slimkit.graph.ladling import LadlingConfig, run_ladling, train_ingredient  # noqa: E402
from slimkit.graph.ladling import runner as ladling_runner  # noqa: E402
from slimkit.graph.models import layerwise_forward  # noqa: E402
from slimkit.graph.train import accuracy  # noqa: E402
from slimkit.graph.views import worker_subgraph  # noqa: E402

TINY = "csbm:nodes=240,feature_dim=8,seed=2"
SPARSE = "csbm:nodes=400,avg_degree=3,feature_dim=8,seed=1"  # sparse enough that a halo is not everything


def disjoint_cfg(**changes) -> LadlingConfig:
    base = dict(
        model=GNNConfig(hidden=16),
        view=ViewConfig(kind="metis", num_parts=8, disjoint=True, halo=-1),
        train=GraphTrainConfig(epochs=6, eval_every=3),
        ingredients=3,
    )
    return LadlingConfig(**{**base, **changes})


def path_graph(n: int) -> Data:
    """0 - 1 - ... - (n-1), both directions; node i has feature i, label i % 2; every node trains."""
    a = torch.arange(n - 1)
    edge_index = torch.stack([torch.cat([a, a + 1]), torch.cat([a + 1, a])])
    mask = torch.ones(n, dtype=torch.bool)
    return Data(
        x=torch.arange(n, dtype=torch.float32)[:, None],
        y=torch.arange(n) % 2,
        edge_index=edge_index,
        train_mask=mask,
        val_mask=mask.clone(),
        test_mask=mask.clone(),
        num_nodes=n,
    )


def global_edges(sub: Data) -> set[tuple[int, int]]:
    return {(int(sub.n_id[s]), int(sub.n_id[d])) for s, d in sub.edge_index.t()}


def hand_halo(data: Data, share: torch.Tensor, hops: int) -> set[int]:
    """Nodes within ``hops`` in-hops of ``share``, by a plain breadth-first search over Python sets."""
    preds: dict[int, set[int]] = {}
    for s, d in data.edge_index.t().tolist():
        preds.setdefault(d, set()).add(s)
    reach, frontier = set(share.tolist()), set(share.tolist())
    for _ in range(hops):
        frontier = {p for v in frontier for p in preds.get(v, ())} - reach
        reach |= frontier
    return reach


@pytest.fixture(scope="module")
def tiny():
    return load_dataset(TINY)


@pytest.fixture(scope="module")
def sparse():
    return load_dataset(SPARSE)


# -- the subgraph --------------------------------------------------------------------------------------------
def test_worker_subgraph_of_a_path_holds_the_share_and_its_halo():
    data = path_graph(7)
    share = torch.tensor([1, 0])
    expected = {  # hops -> (nodes, edges into the nodes at most hops - 1 away)
        0: ({0, 1}, {(0, 1), (1, 0)}),
        1: ({0, 1, 2}, {(0, 1), (1, 0), (2, 1)}),
        2: ({0, 1, 2, 3}, {(0, 1), (1, 0), (2, 1), (1, 2), (3, 2)}),
    }
    for hops, (nodes, edges) in expected.items():
        sub = worker_subgraph(data, share, hops)
        assert sub.n_id.tolist() == sorted(nodes) and sub.num_nodes == len(nodes), hops
        assert global_edges(sub) == edges, hops
        assert sub.share_mask.tolist() == [True, True] + [False] * (len(nodes) - 2)
        # features and labels sliced by the global ids; only share nodes train, validate, test
        assert sub.x[:, 0].tolist() == sorted(nodes) and sub.y.tolist() == [v % 2 for v in sorted(nodes)]
        for split in ("train", "val", "test"):
            assert torch.equal(sub[f"{split}_mask"], sub.share_mask)
        # GCN degrees of the whole graph (with the self-loop): the ends have 2, inner nodes 3
        assert sub.gcn_deg.tolist() == [2.0 if v in (0, 6) else 3.0 for v in sorted(nodes)]
        assert sub.full_num_nodes == 7 and sub.full_num_classes == 2


def test_disjoint_worker_holds_only_share_plus_halo(sparse):
    views = make_views(ViewConfig(kind="metis", num_parts=8, disjoint=True), sparse, 4, seed=0)
    for hops in (0, 1, 2):
        for view in views:
            sub = worker_subgraph(sparse, view.share, hops)
            halo = hand_halo(sparse, view.share, hops)
            assert set(sub.n_id.tolist()) == halo
            assert int(sub.share_mask.sum()) == view.share.numel()
            assert sub.num_nodes < sparse.num_nodes  # not the whole graph
    with pytest.raises(DataError, match="lacks"):
        views[0].on(worker_subgraph(sparse, views[1].share, 1))


@pytest.mark.parametrize("arch", ["sage", "gcn", "gat"])
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_forward_on_the_subgraph_equals_the_full_graph_forward_on_the_share(sparse, arch, layers):
    model = build_model(GNNConfig(arch=arch, layers=layers, hidden=8, heads=2), 8, 4, seed=3).eval()
    share = make_views(ViewConfig(kind="metis", num_parts=8, disjoint=True), sparse, 4)[1].share
    full = layerwise_forward(model, sparse.x, sparse.edge_index)[share]
    sub = worker_subgraph(sparse, share, layers)
    assert sub.num_nodes < sparse.num_nodes
    local = layerwise_forward(model, sub.x, sub.edge_index, deg=sub.gcn_deg)[sub.share_mask]
    assert torch.allclose(local, full, atol=1e-5), (local - full).abs().max()
    with torch.no_grad():  # the plain forward agrees too, except GCN: it needs the full graph's degrees
        plain = model(sub.x, sub.edge_index)[sub.share_mask]
    assert torch.allclose(plain, full, atol=1e-5) == (arch != "gcn")
    # a halo one hop short is not enough (so the equality above is not trivial)
    short = worker_subgraph(sparse, share, layers - 1)
    cut = layerwise_forward(model, short.x, short.edge_index, deg=short.gcn_deg)[short.share_mask]
    assert not torch.allclose(cut, full, atol=1e-5)


# -- training on it ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["sage", "gcn"])
def test_training_on_the_worker_subgraph_is_bit_identical(tiny, arch):
    cfg = disjoint_cfg(
        model=GNNConfig(arch=arch, hidden=16), train=GraphTrainConfig(epochs=6, eval_every=3, select="last")
    )
    views = make_views(cfg.view, tiny, cfg.ingredients, seed=cfg.seed)
    for i in range(cfg.ingredients):
        whole = train_ingredient(cfg, tiny, views[i], i)  # the share inside the whole graph (before)
        sub = worker_subgraph(tiny, views[i].share, cfg.model.layers)
        worker = train_ingredient(cfg, sub, views[i].on(sub), i)
        assert worker.steps == whole.steps
        assert all(torch.equal(worker.state[k], whole.state[k]) for k in whole.state), i
        # its validation is the full-graph output on the share's own validation nodes
        model = build_model(cfg.model, tiny.num_features, int(tiny.y.max()) + 1)
        model.load_state_dict(worker.state)
        own_val = tiny.val_mask & torch.isin(torch.arange(tiny.num_nodes), views[i].share)
        assert worker.val_acc == pytest.approx(accuracy(model, tiny, own_val), abs=1e-6)


def test_run_trains_disjoint_ingredients_on_their_subgraph_and_the_rest_unchanged(tiny, monkeypatch):
    seen: list[tuple[int, int]] = []
    real = ladling_runner.train_ingredient

    def spy(cfg, data, view, index, **kw):
        seen.append((index, data.num_nodes))
        return real(cfg, data, view, index, **kw)

    monkeypatch.setattr(ladling_runner, "train_ingredient", spy)
    cfg = disjoint_cfg(view=ViewConfig(kind="metis", num_parts=8, disjoint=True, halo=0))
    result = run_ladling(cfg, lambda: load_dataset(TINY), progress=False)
    views = make_views(cfg.view, tiny, cfg.ingredients, seed=cfg.seed)
    assert seen == [(i, views[i].share.numel()) for i in range(3)]
    assert all(n < tiny.num_nodes for _, n in seen)
    assert result is not None and result.n_val == int(tiny.val_mask.sum())  # soups on the full graph

    # not disjoint: the whole graph, the same ingredients whether given the graph or a loader
    seen.clear()
    plain = disjoint_cfg(view=ViewConfig(kind="metis", num_parts=8))
    a = run_ladling(plain, tiny, progress=False)
    b = run_ladling(plain, lambda: load_dataset(TINY), progress=False)
    assert [n for _, n in seen] == [tiny.num_nodes] * 6
    plain_views = make_views(plain.view, tiny, 3, seed=plain.seed)
    alone = train_ingredient(plain, tiny, plain_views[1], 1)  # as before this change
    for ing_a, ing_b in zip(a.ingredients, b.ingredients, strict=True):
        assert all(torch.equal(ing_a.state[k], ing_b.state[k]) for k in ing_a.state)
    assert all(torch.equal(alone.state[k], a.ingredients[1].state[k]) for k in alone.state)
    assert a.soup_test == b.soup_test


def test_halo_needs_a_disjoint_view_and_a_sane_depth(capsys, tmp_path):
    with pytest.raises(ConfigError, match="halo applies to disjoint views only"):
        ViewConfig(kind="metis", halo=1)
    with pytest.raises(ConfigError, match="halo"):
        ViewConfig(kind="metis", disjoint=True, halo=-2)
    import typer

    from slimkit.cli.main import app

    code = run_cli(
        typer.main.get_command(app), ["graph", "ladling", "--halo", "1", "--out", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "halo applies to disjoint views only" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


# -- torchrun ------------------------------------------------------------------------------------------------
WORKER_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, weakref
    import torch
    from safetensors.torch import save_file
    from slimkit.graph import GNNConfig, GraphTrainConfig, ViewConfig, load_dataset
    from slimkit.graph.ladling import LadlingConfig, run_ladling
    from slimkit.graph.ladling import runner

    out = sys.argv[1]
    rank = int(os.environ["RANK"])
    loaded = []
    def loader():
        data = load_dataset("{spec}")
        loaded.append(weakref.ref(data))
        return data
    record = []
    real = runner.train_ingredient
    def spy(cfg, data, view, index, **kw):
        record.append({{"index": index, "num_nodes": data.num_nodes, "graph_alive": loaded[0]() is not None}})
        return real(cfg, data, view, index, **kw)
    runner.train_ingredient = spy
    cfg = LadlingConfig(model=GNNConfig(hidden=16), view=ViewConfig(kind="metis", num_parts=8, disjoint=True, halo=-1),
                        train=GraphTrainConfig(epochs=6, eval_every=3), ingredients=3)
    result = run_ladling(cfg, loader, progress=False)
    with open(os.path.join(out, f"rank{{rank}}.json"), "w") as f:
        json.dump(record, f)
    if result is not None:
        save_file(result.soup.state, os.path.join(out, "soup.safetensors"))
    """
)


def test_two_gloo_processes_rank1_frees_the_graph_and_the_soup_matches(tmp_path, sparse):
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT.format(spec=SPARSE))
    env = {**os.environ, "SLIMKIT_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    proc = subprocess.Popen(
        [*launch, str(script), str(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a hang kills torchrun and its workers
    )
    try:
        _, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-3000:]
    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    rank1 = json.loads((tmp_path / "rank1.json").read_text())
    assert [r["index"] for r in rank0] == [0, 2] and [r["index"] for r in rank1] == [1]
    assert all(r["graph_alive"] for r in rank0)  # rank 0 keeps the graph for the soups
    assert not rank1[0]["graph_alive"]  # rank 1 freed it before training
    cfg = disjoint_cfg()
    share = make_views(cfg.view, sparse, cfg.ingredients, seed=cfg.seed)[1].share
    assert rank1[0]["num_nodes"] == len(hand_halo(sparse, share, 2)) < sparse.num_nodes
    sequential = run_ladling(cfg, sparse, progress=False)
    par = load_tensors(tmp_path / "soup.safetensors")
    assert all(torch.equal(par[k], sequential.soup.state[k]) for k in par)
