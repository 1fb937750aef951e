"""slimkit.graph datasets, models and data views: shapes, determinism, coverage, bad input."""

from __future__ import annotations

import gzip
import itertools
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("torch_geometric")

from slimkit.core.errors import ConfigError, DataError, RegistryError  # noqa: E402
from slimkit.graph import (  # noqa: E402
    CSBMConfig,
    GNNConfig,
    OGBConfig,
    PlanetoidConfig,
    ViewConfig,
    build_model,
    load_dataset,
    make_views,
    metis_partition,
    parse_dataset_spec,
    random_partition,
    recompute_norm_stats_,
)
from slimkit.graph.views import CSR, induced_subgraph, neighbor_batch, random_walks  # noqa: E402

SMALL = "csbm:nodes=300,feature_dim=8,seed=1"


@pytest.fixture(scope="module")
def small():
    return load_dataset(SMALL)


def edge_set(edge_index: torch.Tensor) -> set[tuple[int, int]]:
    return set(map(tuple, edge_index.t().tolist()))


# -- datasets -------------------------------------------------------------------------------------------
def test_csbm_is_a_clean_undirected_graph_with_disjoint_splits(small):
    edges = edge_set(small.edge_index)
    assert small.x.shape == (300, 8) and small.y.shape == (300,)
    assert all((b, a) in edges for a, b in edges)
    assert all(a != b for a, b in edges)
    assert len(edges) == small.edge_index.size(1)  # no duplicates
    masks = torch.stack([small.train_mask, small.val_mask, small.test_mask]).int()
    assert (masks.sum(0) == 1).all()  # every node in exactly one split
    assert torch.bincount(small.y).tolist() == [75] * 4


def test_csbm_follows_its_parameters_and_seed():
    data = load_dataset("csbm:nodes=2000,homophily=0.8,avg_degree=10")
    src, dst = data.edge_index
    same = (data.y[src] == data.y[dst]).float().mean().item()
    assert 0.75 < same < 0.85
    assert 9.0 < data.edge_index.size(1) / 2000 < 11.0
    again = load_dataset("csbm:nodes=2000,homophily=0.8,avg_degree=10")
    assert torch.equal(data.x, again.x) and torch.equal(data.edge_index, again.edge_index)
    other = load_dataset("csbm:nodes=2000,homophily=0.8,avg_degree=10,seed=1")
    assert not torch.equal(data.x, other.x)


def test_karate_and_world_graphs():
    karate = load_dataset("karate")
    assert karate.num_nodes == 34 and int(karate.y.max()) == 3
    world = load_dataset("world")
    kinds = world.node_kinds
    assert len(world.raw_texts) == world.num_nodes == len(kinds)
    assert world.label_texts == ["person", "city", "country", "company"]
    assert [world.label_texts[c] for c in world.y.tolist()] == kinds
    assert world.edge_relation.numel() == world.edge_index.size(1)
    assert set(world.relation_names) == {
        "born_in",
        "lives_in",
        "works_for",
        "in_country",
        "capital",
        "headquartered_in",
    }
    by_country = load_dataset("world:label=country")
    names = by_country.raw_texts
    for (a, b), rel in zip(
        by_country.edge_index.t().tolist(), by_country.edge_relation.tolist(), strict=True
    ):
        if by_country.relation_names[rel] == "in_country" and by_country.node_kinds[a] == "city":
            assert by_country.label_texts[int(by_country.y[a])] == names[b]


def test_world_graph_keeps_every_relation_of_a_pair():
    from slimkit.data.factworld import WorldConfig, generate_world

    world = generate_world(WorldConfig())
    data = load_dataset("world")
    index = {name: i for i, name in enumerate(data.raw_texts)}
    expected: dict[tuple[int, int], set[str]] = {}
    for f in world.facts:
        if f.object in index:
            for pair in ((index[f.subject], index[f.object]), (index[f.object], index[f.subject])):
                expected.setdefault(pair, set()).add(f.relation)
    got = {
        (a, b): {data.relation_names[r] for r in row.nonzero().flatten().tolist()}
        for (a, b), row in zip(data.edge_index.t().tolist(), data.edge_relations, strict=True)
    }
    assert got == expected
    # the world does link some pairs by two facts (a person living and working in one city, ...)
    assert sum(len(v) > 1 for v in expected.values()) > 0
    first = [
        min(data.relation_names.index(r) for r in got[pair])
        for pair in map(tuple, data.edge_index.t().tolist())
    ]
    assert data.edge_relation.tolist() == first


def test_spec_parsing_and_bad_specs():
    cfg = parse_dataset_spec("csbm:nodes=500,homophily=0.9")
    assert isinstance(cfg, CSBMConfig) and cfg.nodes == 500 and cfg.homophily == 0.9
    assert parse_dataset_spec("planetoid:/data/sets/cora") == PlanetoidConfig(root="/data/sets", name="Cora")
    assert parse_dataset_spec("ogb:/d/ogbn-arxiv") == OGBConfig(path="/d/ogbn-arxiv")
    with pytest.raises(RegistryError, match="unknown graph dataset 'reddit'.*csbm"):
        parse_dataset_spec("reddit")
    with pytest.raises(ConfigError, match="unknown option 'size'"):
        parse_dataset_spec("csbm:size=3")
    with pytest.raises(ConfigError, match="homophily"):
        parse_dataset_spec("csbm:homophily=2")
    with pytest.raises(ConfigError, match="not one of"):
        parse_dataset_spec("planetoid:/data/Reddit")
    with pytest.raises(ConfigError, match="label"):
        parse_dataset_spec("world:label=colour")


def test_planetoid_directory_without_raw_files_is_a_clear_error(tmp_path):
    (tmp_path / "Cora" / "raw").mkdir(parents=True)
    (tmp_path / "Cora" / "raw" / "ind.cora.x").write_bytes(b"")
    with pytest.raises(DataError) as err:
        load_dataset(f"planetoid:{tmp_path}/Cora")
    message = str(err.value)
    assert "ind.cora.graph" in message and "ind.cora.test.index" in message and "--download" in message
    assert "ind.cora.x," not in message.split("lacks")[1].split(";")[0]  # present files are not listed


def _fake_planetoid(raw, n=600, n_train=20, n_test=40, f=8, c=3):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, c, n)
    onehot = np.eye(c)[labels]
    feats = rng.normal(size=(n, f)).astype(np.float32)
    n_all = n - n_test
    items = {
        "x": feats[:n_train],
        "allx": feats[:n_all],
        "tx": feats[n_all:],
        "y": onehot[:n_train],
        "ally": onehot[:n_all],
        "ty": onehot[n_all:],
        "graph": {i: [(i + 1) % n, (i - 1) % n] for i in range(n)},
    }
    raw.mkdir(parents=True)
    for name, value in items.items():
        (raw / f"ind.cora.{name}").write_bytes(pickle.dumps(value))
    (raw / "ind.cora.test.index").write_text("\n".join(str(i) for i in range(n_all, n)) + "\n")
    return labels


def test_planetoid_local_copy_loads_with_public_split(tmp_path):
    labels = _fake_planetoid(tmp_path / "Cora" / "raw")
    data = load_dataset(f"planetoid:{tmp_path}/cora")
    assert data.num_nodes == 600 and data.y.tolist() == labels.tolist()
    assert (
        int(data.train_mask.sum()) == 20
        and int(data.val_mask.sum()) == 500
        and int(data.test_mask.sum()) == 40
    )
    assert data.edge_index.size(1) == 1200  # a ring, both directions


def _write_gz(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")


def test_ogb_directory_is_read_with_split_and_missing_files_are_named(tmp_path):
    root = tmp_path / "ogbn-tiny"
    with pytest.raises(
        DataError, match=r"raw/edge.csv.gz.*split/<type>/train.csv.gz.*ogb/data/nodeproppred/tiny.zip"
    ):
        load_dataset(f"ogb:{root}")
    n = 12
    _write_gz(root / "raw" / "edge.csv.gz", [f"{i},{(i + 1) % n}" for i in range(n)])
    _write_gz(
        root / "raw" / "node-feat.csv.gz", [",".join(str(float(i + j)) for j in range(3)) for i in range(n)]
    )
    _write_gz(root / "raw" / "node-label.csv.gz", [str(i % 2) for i in range(n)])
    for name, idx in (("train", range(0, 6)), ("valid", range(6, 9)), ("test", range(9, 12))):
        _write_gz(root / "split" / "time" / f"{name}.csv.gz", [str(i) for i in idx])
    data = load_dataset(f"ogb:{root}")
    assert data.x.shape == (12, 3) and data.y.tolist() == [i % 2 for i in range(n)]
    assert data.edge_index.size(1) == 2 * n  # made undirected
    assert data.train_mask[:6].all() and data.val_mask[6:9].all() and data.test_mask[9:].all()


def _tiny_ogb(root, n: int = 6) -> None:
    _write_gz(root / "raw" / "edge.csv.gz", [f"{i},{(i + 1) % n}" for i in range(n)])
    _write_gz(root / "raw" / "node-feat.csv.gz", [f"{i}.0,{i}.5" for i in range(n)])
    _write_gz(root / "raw" / "node-label.csv.gz", [str(i % 2) for i in range(n)])
    for name, idx in (("train", "0"), ("valid", "1"), ("test", "2")):
        _write_gz(root / "split" / "time" / f"{name}.csv.gz", [idx])


@pytest.mark.parametrize("folder", ["ogbn-arxiv", "ogbn_arxiv", "arxiv"])
def test_ogb_directory_spellings_name_the_real_archive(tmp_path, folder):
    # OGB's own package writes ogbn_arxiv/, its zip is arxiv.zip and unpacks to arxiv/
    with pytest.raises(DataError, match=r"nodeproppred/arxiv\.zip.*supported: ogbn-arxiv, ogbn-products"):
        load_dataset(f"ogb:{tmp_path / folder}")
    _tiny_ogb(tmp_path / folder)
    assert load_dataset(f"ogb:{tmp_path / folder}").num_nodes == 6


@pytest.mark.parametrize(
    "folder, needle",
    [("ogbn-mag", "heterogeneous"), ("ogbn_proteins", "112 binary labels"), ("ogbn-papers100M", "npz")],
)
def test_ogb_datasets_of_other_formats_are_refused_by_name(tmp_path, folder, needle):
    _tiny_ogb(tmp_path / folder)  # even laid out as CSV, they are not what the reader expects
    with pytest.raises(DataError, match=rf"{needle}.*supports the homogeneous CSV datasets ogbn-arxiv"):
        load_dataset(f"ogb:{tmp_path / folder}")


def test_ogb_download_keeps_mapping(tmp_path, monkeypatch):
    import zipfile

    import torch_geometric.data as pyg_data

    staged = tmp_path / "staged" / "arxiv"
    _tiny_ogb(staged)
    _write_gz(staged / "mapping" / "nodeidx2paperid.csv.gz", ["node idx,paper id", "0,9"])
    archive = tmp_path / "arxiv.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in staged.rglob("*"):
            if f.is_file():
                z.write(f, f.relative_to(staged.parent))
    urls = []

    def fake_download(url, folder, *a, **k):
        urls.append(url)
        target = Path(folder) / "arxiv.zip"
        target.write_bytes(archive.read_bytes())
        return str(target)

    monkeypatch.setattr(pyg_data, "download_url", fake_download)
    root = tmp_path / "data" / "ogbn_arxiv"
    data = load_dataset(f"ogb:{root}", download=True)
    assert urls == ["http://snap.stanford.edu/ogb/data/nodeproppred/arxiv.zip"]
    assert data.num_nodes == 6
    assert (root / "mapping" / "nodeidx2paperid.csv.gz").is_file()


def test_ogb_csv_without_pandas_reads_the_same_and_errors_are_data_errors(tmp_path, monkeypatch):
    import sys

    _tiny_ogb(tmp_path / "ogbn-arxiv")
    with_pandas = load_dataset(f"ogb:{tmp_path / 'ogbn-arxiv'}")
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    without = load_dataset(f"ogb:{tmp_path / 'ogbn-arxiv'}")
    assert torch.equal(with_pandas.x, without.x) and torch.equal(with_pandas.edge_index, without.edge_index)
    for bad in (["1.0,2.0", "3.0"], ["x,y"] * 6):
        _write_gz(tmp_path / "ogbn-arxiv" / "raw" / "node-feat.csv.gz", bad)
        with pytest.raises(DataError, match="not a readable gzip CSV"):
            load_dataset(f"ogb:{tmp_path / 'ogbn-arxiv'}")
    _tiny_ogb(tmp_path / "ogbn-arxiv")
    (tmp_path / "ogbn-arxiv" / "raw" / "edge.csv.gz").write_bytes(gzip.compress(b"0,1\n1,2\n")[:-6])
    with pytest.raises(DataError, match="edge.csv.gz is not a readable gzip CSV"):
        load_dataset(f"ogb:{tmp_path / 'ogbn-arxiv'}")


# -- models ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["gcn", "sage", "gat"])
@pytest.mark.parametrize("norm", ["none", "batch", "layer"])
def test_models_shapes(small, arch, norm):
    model = build_model(GNNConfig(arch=arch, layers=3, hidden=16, norm=norm), 8, 4, seed=0)
    assert model(small.x, small.edge_index).shape == (300, 4)
    assert len(model.convs) == 3


@pytest.mark.parametrize("arch", ["gcn", "sage", "gat"])
@pytest.mark.parametrize("norm", ["none", "batch", "layer"])
def test_layerwise_forward_equals_the_full_graph_forward(small, arch, norm):
    from slimkit.graph.models import layerwise_forward

    model = build_model(GNNConfig(arch=arch, layers=3, hidden=16, norm=norm), 8, 4, seed=0)
    model.train()
    model(small.x, small.edge_index)  # BatchNorm running statistics that are not the identity
    model.eval()
    with torch.no_grad():
        full = model(small.x, small.edge_index)
    for chunk in (37, 300, 10_000):  # chunks that cut the graph, one chunk, more than the graph
        torch.testing.assert_close(layerwise_forward(model, small.x, small.edge_index, chunk=chunk), full)
    assert not model.training  # the caller's mode is kept


def test_model_seed_fixes_init_and_bad_configs():
    a = build_model(GNNConfig(), 8, 4, seed=3).state_dict()
    b = build_model(GNNConfig(), 8, 4, seed=3).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="divisible"):
        GNNConfig(arch="gat", hidden=10, heads=4)
    with pytest.raises(ConfigError, match="arch"):
        GNNConfig(arch="gin")


def test_batchnorm_statistics_are_recomputed_from_the_full_graph(small):
    model = build_model(GNNConfig(arch="sage", norm="batch", hidden=16), 8, 4, seed=0)
    bn = model.norms[0]
    bn.running_mean.fill_(100.0)
    assert recompute_norm_stats_(model, small.x, small.edge_index)
    pre = model.convs[0](small.x, small.edge_index)
    assert torch.allclose(bn.running_mean, pre.mean(0), atol=1e-5)
    assert bn.momentum == 0.1 and model.training  # restored


# -- partitions and samplers ----------------------------------------------------------------------------
def test_metis_partition_covers_every_node_once(small):
    part = metis_partition(small.edge_index, small.num_nodes, 6, seed=0)
    assert part.shape == (300,) and part.min() == 0 and part.max() == 5
    sizes = torch.bincount(part, minlength=6)
    assert sizes.sum() == 300 and (sizes > 0).all()
    assert torch.equal(part, metis_partition(small.edge_index, small.num_nodes, 6, seed=0))
    # METIS cuts far fewer edges than a random partition
    src, dst = small.edge_index
    rnd = random_partition(300, 6, seed=0)
    assert (part[src] != part[dst]).sum() < 0.7 * (rnd[src] != rnd[dst]).sum()


def test_random_partition_is_balanced_and_too_many_parts_is_an_error(small):
    part = random_partition(301, 4, seed=0)
    assert sorted(torch.bincount(part).tolist()) == [75, 75, 75, 76]
    with pytest.raises(DataError, match="more parts than nodes"):
        metis_partition(small.edge_index, 300, 301)
    with pytest.raises(DataError, match="301 partitions"):
        make_views(ViewConfig(kind="random", num_parts=301), small, 2)


def test_neighbor_sampling_respects_fanout_and_graph(small):
    csr = CSR.from_edge_index(small.edge_index, small.num_nodes)
    seeds = torch.tensor([0, 5, 9])
    g = torch.Generator().manual_seed(0)
    batch = neighbor_batch(csr, seeds, (3, 2), small.num_nodes, g)
    assert batch.nodes[:3].tolist() == [0, 5, 9] and batch.loss_nodes.tolist() == [0, 1, 2]
    assert batch.nodes.unique().numel() == batch.nodes.numel()
    global_edges = batch.nodes[batch.edge_index]
    assert edge_set(global_edges) <= edge_set(small.edge_index)
    hop1 = global_edges[:, torch.isin(global_edges[1], seeds)]
    counts = torch.bincount(hop1[1], minlength=small.num_nodes)[seeds]
    degrees = csr.degree[seeds]
    assert torch.equal(counts, torch.minimum(degrees, torch.tensor(3)))
    everything = neighbor_batch(csr, seeds, (-1,), small.num_nodes, g)
    assert everything.edge_index.size(1) == int(degrees.sum())


def test_random_walks_follow_edges_and_induced_subgraph(small):
    csr = CSR.from_edge_index(small.edge_index, small.num_nodes)
    walks = random_walks(csr, torch.arange(10), 3, torch.Generator().manual_seed(0))
    edges = edge_set(small.edge_index)
    for walk in walks.tolist():
        assert all((a, b) in edges or a == b for a, b in itertools.pairwise(walk))
    nodes = torch.tensor([3, 1, 7, 20])
    local = induced_subgraph(nodes, small.edge_index, small.num_nodes)
    expected = {(a, b) for a, b in edges if a in {3, 1, 7, 20} and b in {3, 1, 7, 20}}
    assert edge_set(nodes[local]) == expected


@pytest.mark.parametrize("kind", ["full", "metis", "random", "neighbor", "saint-rw"])
def test_every_view_trains_only_on_training_nodes(small, kind):
    views = make_views(ViewConfig(kind=kind, num_parts=6, batch_size=32, roots=32), small, 3, seed=0)
    assert len(views) == 3
    batches = list(views[0].epoch(torch.Generator().manual_seed(0)))
    assert batches
    for b in batches:
        assert small.train_mask[b.nodes[b.loss_nodes]].all()
        assert edge_set(b.nodes[b.edge_index]) <= edge_set(small.edge_index)
    seen = torch.cat([b.nodes[b.loss_nodes] for b in batches]).unique()
    if kind in ("full", "metis", "random", "neighbor"):  # one epoch covers every training node
        assert seen.numel() == int(small.train_mask.sum())


def test_disjoint_views_never_share_nodes(small):
    views = make_views(ViewConfig(kind="metis", num_parts=6, disjoint=True), small, 3, seed=0)
    reached = [torch.cat([b.nodes for b in v.epoch(torch.Generator().manual_seed(1))]) for v in views]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not torch.isin(reached[i], reached[j]).any()
    assert sum(v.train_nodes for v in views) == int(small.train_mask.sum())
    with pytest.raises(ConfigError, match="num_parts >= ingredients"):
        make_views(ViewConfig(kind="metis", num_parts=2, disjoint=True), small, 3)


@pytest.mark.parametrize("parts", [12, 16, 20])
def test_disjoint_metis_on_karate_gives_every_ingredient_training_nodes(parts):
    # pymetis leaves 3 / 7 / 14 of these parts empty; "part j -> ingredient j mod K" then gave some
    # ingredients no training node (zero steps, souped as if trained)
    karate = load_dataset("karate")
    part = metis_partition(karate.edge_index, karate.num_nodes, parts, seed=0)
    assert (torch.bincount(part, minlength=parts) == 0).any()  # the case this test is about
    views = make_views(ViewConfig(kind="metis", num_parts=parts, disjoint=True), karate, 4, seed=0)
    counts = [v.train_nodes for v in views]
    assert sum(counts) == int(karate.train_mask.sum())
    assert min(counts) > 0 and max(counts) - min(counts) <= 2  # balanced by training nodes
    for v in views:
        steps = list(v.epoch(torch.Generator().manual_seed(0)))
        assert steps and all(b.loss_nodes.numel() for b in steps)


def test_a_view_with_no_training_node_is_refused():
    karate = load_dataset("karate")  # 16 training nodes: 20 disjoint shares cannot all have one
    with pytest.raises(DataError, match="reaches 0 training nodes"):
        make_views(ViewConfig(kind="metis", num_parts=20, disjoint=True), karate, 20, seed=0)


@pytest.mark.parametrize("kind", ["full", "neighbor", "saint-rw"])
def test_disjoint_is_refused_for_views_that_ignore_it(kind):
    with pytest.raises(ConfigError, match="disjoint applies to the metis and random views only"):
        ViewConfig(kind=kind, disjoint=True)
