"""Node-classification graphs: offline generators and local Planetoid / OGB directories.

A dataset is named by a *spec* string, parsed into a validated config and loaded by the loader
registered for that config type::

    csbm                          contextual stochastic block model (defaults of CSBMConfig)
    csbm:nodes=600,classes=3      ... with options (any CSBMConfig field, key=value, comma separated)
    karate                        Zachary's karate club (PyG's 4-class version), seeded splits
    world:label=country           the factworld as a text-attributed graph (see WorldGraphConfig)
    planetoid:DIR/Cora            Planetoid raw files in DIR/Cora/raw/ind.cora.* (Cora, CiteSeer, PubMed)
    ogb:DIR/ogbn-arxiv            an OGB node-property directory (raw/*.csv.gz, split/<type>/*.csv.gz)

Nothing is downloaded unless ``download=True`` (``--download``): a missing file is a
:class:`~slimkit.core.errors.DataError` saying what to put where.

Every loader returns a :class:`torch_geometric.data.Data` with ``x [N, F]`` float32, ``edge_index
[2, E]`` int64 (undirected: both directions, no self-loops, coalesced), ``y [N]`` int64 and boolean
``train_mask`` / ``val_mask`` / ``test_mask [N]`` that are disjoint.
"""

from __future__ import annotations

import dataclasses
import gzip
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data
from torch_geometric.utils import coalesce, remove_self_loops, to_undirected

from slimkit.core.config import Config, check_choice, check_range
from slimkit.core.errors import ConfigError, DataError
from slimkit.core.registry import Registry

Loader = Callable[[Any, bool], Data]
DATASETS: Registry[Loader] = Registry("graph dataset")

PLANETOID_NAMES = ("Cora", "CiteSeer", "PubMed")
PLANETOID_RAW = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")
OGB_RAW = ("edge.csv.gz", "node-feat.csv.gz", "node-label.csv.gz")
OGB_SPLIT = ("train.csv.gz", "valid.csv.gz", "test.csv.gz")
OGB_URL = "http://snap.stanford.edu/ogb/data/nodeproppred/{short}.zip"
#: the OGB node-property datasets this CSV reader handles: homogeneous graphs with one integer label per
#: node in raw/*.csv.gz. ``ogbn-proteins`` (112 binary tasks, edge features), ``ogbn-mag`` (heterogeneous)
#: and ``ogbn-papers100M`` (raw/*.npz) are other formats.
OGB_SUPPORTED = ("arxiv", "products")
OGB_OTHER_FORMATS = {
    "proteins": "has 112 binary labels per node and edge features",
    "mag": "is a heterogeneous graph",
    "papers100m": "ships raw/data.npz, not CSV files",
}
PLANETOID_URL = "https://github.com/kimiyoung/planetoid/raw/master/data"

# Caps of the offline generators, checked before anything is allocated: a typo such as
# ``csbm:nodes=1000000000`` would otherwise try to allocate tens of GB or run for hours.
MAX_NODES = 1_000_000
MAX_CLASSES = 1_000
MAX_FEATURE_DIM = 65_536
MAX_FEATURE_ENTRIES = 2**28  # N·F of a generated feature matrix: 1 GiB of float32
MAX_EDGES = 20_000_000  # N·d, the expected number of directed edges of a generated graph
MAX_SEED = 2**32 - 1


# -- configs -------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class CSBMConfig(Config):
    """A contextual stochastic block model (Deshpande et al., "Contextual Stochastic Block Models",
    arXiv 1807.09596): community structure plus Gaussian features whose mean depends on the class.

    ``classes`` balanced blocks. Each node has on average ``avg_degree`` neighbours, a fraction
    ``homophily`` of them in its own block (SBM with p_in·N/C = h·d and p_out·N(C−1)/C = (1−h)·d;
    edges are drawn as ``Poisson(N·d/2)`` endpoint pairs, duplicates merged). Features
    ``x_i = μ_{y_i} + ε_i`` with ``ε ~ N(0, I_F)`` and class means drawn ``N(0, I_F)`` then scaled to
    norm ``feature_signal``: features alone classify poorly, neighbourhood averaging helps.
    Splits are stratified by class with fractions ``train`` / ``val``; the rest is test.

    Attributes:
        nodes (int): N. Default: 2000.
        classes (int): C. Default: 4.
        avg_degree (float): d, expected degree. Default: 8.0.
        homophily (float): h, expected share of same-class neighbours, in [0, 1]. Default: 0.7.
        feature_dim (int): F. Default: 32.
        feature_signal (float): norm of each class mean. Default: 1.0.
        train (float): share of each class in the training split. Default: 0.1.
        val (float): share of each class in the validation split. Default: 0.2.
        seed (int): graph, features and split. Default: 0.
    """

    nodes: int = 2000
    classes: int = 4
    avg_degree: float = 8.0
    homophily: float = 0.7
    feature_dim: int = 32
    feature_signal: float = 1.0
    train: float = 0.1
    val: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("classes", self.classes, 2, MAX_CLASSES)
        check_range("nodes", self.nodes, 2 * self.classes, MAX_NODES)
        check_range("avg_degree", self.avg_degree, 0.0, self.nodes - 1, lo_inclusive=False)
        check_range("homophily", self.homophily, 0.0, 1.0)
        check_range("feature_dim", self.feature_dim, 1, MAX_FEATURE_DIM)
        _check_product("nodes·feature_dim", self.nodes, self.feature_dim, MAX_FEATURE_ENTRIES)
        _check_product("nodes·avg_degree", self.nodes, self.avg_degree, MAX_EDGES)
        check_range("feature_signal", self.feature_signal, 0.0, 1e6)
        _check_split(self.train, self.val)
        check_range("seed", self.seed, 0, MAX_SEED)


@dataclass(frozen=True, kw_only=True)
class KarateConfig(Config):
    """Zachary's karate club as in PyG's ``KarateClub`` (34 nodes, 4 communities, one-hot features).

    Attributes:
        train (float): share of each class for training. Default: 0.5.
        val (float): share of each class for validation. Default: 0.25.
        seed (int): split seed. Default: 0.
    """

    train: float = 0.5
    val: float = 0.25
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_split(self.train, self.val)
        check_range("seed", self.seed, 0, MAX_SEED)


@dataclass(frozen=True, kw_only=True)
class WorldGraphConfig(Config):
    """The built-in factworld as a text-attributed graph.

    Nodes are the world's entities (people, cities, countries, companies); every fact whose object
    is an entity is an undirected edge (born_in, lives_in, works_for, in_country, capital,
    headquartered_in; the year facts are not edges). Node text is the entity's name; features are
    hashed character-trigram counts of it (L2-normalised). Labels:

    - ``type``: the entity kind (4 classes);
    - ``country``: a city's country, a country itself, a person's country of residence, a
      company's headquarters country (``n_countries`` classes).

    Attributes:
        label (str): ``"type"`` or ``"country"``. Default: ``"type"``.
        people (int): ``WorldConfig.n_people``. Default: 80 (the default world).
        world_seed (int): ``WorldConfig.seed``. Default: 0.
        feature_dim (int): hashed trigram buckets. Default: 64.
        train (float): share of each class for training. Default: 0.3.
        val (float): share of each class for validation. Default: 0.2.
        seed (int): split seed. Default: 0.
    """

    label: str = "type"
    people: int = 80
    world_seed: int = 0
    feature_dim: int = 64
    train: float = 0.3
    val: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        from slimkit.data.factworld.config import MAX_COUNTS

        check_choice("label", self.label, ("type", "country"))
        check_range("people", self.people, 8, MAX_COUNTS["n_people"])
        check_range("world_seed", self.world_seed, 0, MAX_SEED)
        check_range("feature_dim", self.feature_dim, 1, MAX_FEATURE_DIM)
        _check_split(self.train, self.val)
        check_range("seed", self.seed, 0, MAX_SEED)


@dataclass(frozen=True, kw_only=True)
class PlanetoidConfig(Config):
    """Cora / CiteSeer / PubMed from local Planetoid raw files, with the public split.

    Reads ``root/<name>/raw/ind.<name>.{x,tx,allx,y,ty,ally,graph,test.index}`` into the graph
    ``torch_geometric.datasets.Planetoid(split="public")`` builds. The raw files are Python pickles
    (that is the format); they are read with a restricted unpickler that resolves only numpy / scipy
    sparse / container classes, so a booby-trapped file is refused instead of running code
    (:mod:`slimkit.graph.planetoid`). ``processed/`` (PyG's ``torch.save`` cache) is never read.

    Attributes:
        root (str): the directory that holds ``<name>/raw/``.
        name (str): ``Cora``, ``CiteSeer`` or ``PubMed`` (any case).
    """

    root: str
    name: str

    def __post_init__(self) -> None:
        super().__post_init__()
        canonical = {n.lower(): n for n in PLANETOID_NAMES}
        if self.name.lower() not in canonical:
            raise ConfigError(f"planetoid name {self.name!r} is not one of {list(PLANETOID_NAMES)}")
        object.__setattr__(self, "name", canonical[self.name.lower()])


@dataclass(frozen=True, kw_only=True)
class OGBConfig(Config):
    """An OGB node-property-prediction directory in the standard raw layout (no ``ogb`` package).

    ``path/raw/edge.csv.gz`` (one ``src,dst`` per line), ``path/raw/node-feat.csv.gz`` (one feature row
    per node), ``path/raw/node-label.csv.gz`` (one label per node) and
    ``path/split/<type>/{train,valid,test}.csv.gz`` (node indices). Edges are made undirected.

    Attributes:
        path (str): the dataset directory, e.g. ``data/ogbn-arxiv``.
    """

    path: str


def _check_product(name: str, a: float, b: float, cap: int) -> None:
    """Raise :class:`ConfigError` when ``a·b`` (a memory or work estimate) exceeds ``cap``."""
    if a * b > cap:
        raise ConfigError(f"{name} = {a:g}·{b:g} = {a * b:.3g} exceeds the cap {cap:,}; use smaller values")


def _check_split(train: float, val: float) -> None:
    check_range("train", train, 0.0, 1.0, lo_inclusive=False, hi_inclusive=False)
    check_range("val", val, 0.0, 1.0, lo_inclusive=False, hi_inclusive=False)
    if train + val >= 1.0:
        raise ConfigError(f"train + val = {train + val:g} leaves no test nodes; need train + val < 1")


# -- spec parsing --------------------------------------------------------------------------------------
def parse_dataset_spec(spec: str) -> Config:
    """The config a spec string names (see the module docstring for the grammar).

    Raises:
        RegistryError: unknown scheme (the message lists the known ones).
        ConfigError: an unknown option or a bad value.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"dataset spec must be a non-empty string, got {spec!r}")
    scheme, _, rest = spec.strip().partition(":")
    cls = DATASETS.config_for(scheme.lower())
    if cls is PlanetoidConfig:
        path = Path(rest)
        if not rest or not path.name:
            raise ConfigError(f"planetoid spec needs a path: planetoid:DIR/Cora, got {spec!r}")
        return PlanetoidConfig(root=str(path.parent), name=path.name)
    if cls is OGBConfig:
        if not rest:
            raise ConfigError(f"ogb spec needs a directory: ogb:DIR/ogbn-arxiv, got {spec!r}")
        return OGBConfig(path=rest)
    return cls.from_dict(_parse_options(rest, cls, spec))


def _parse_options(text: str, cls: type[Config], spec: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise ConfigError(f"dataset option {item!r} in {spec!r} is not key=value")
        key = key.strip()
        if key not in fields or key == "version":
            known = sorted(k for k in fields if k != "version")
            raise ConfigError(f"unknown option {key!r} for {spec.partition(':')[0]!r}; known: {known}")
        options[key] = _number_or_text(value.strip())
        if fields[key].type in ("int", int) and isinstance(options[key], float) and options[key].is_integer():
            options[key] = int(options[key])  # nodes=1e5 means 100000
    return options


def _number_or_text(value: str) -> Any:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def load_dataset(spec: str | Config, *, download: bool = False) -> Data:
    """Load the graph a spec (or config) names. ``download`` allows fetching missing public files."""
    cfg = parse_dataset_spec(spec) if isinstance(spec, str) else spec
    data = DATASETS.lookup(cfg)(cfg, download)
    check_node_data(data)
    return data


def dataset_name(cfg: Config) -> str:
    """A short display name of a dataset config (``csbm``, ``Cora``, ``ogbn-arxiv``, ...)."""
    if isinstance(cfg, PlanetoidConfig):
        return cfg.name
    if isinstance(cfg, OGBConfig):
        return Path(cfg.path).name
    return next(n for n in DATASETS.names() if DATASETS.config_for(n) is type(cfg))


def check_node_data(data: Data) -> None:
    """Raise :class:`DataError` unless ``data`` has the fields and shapes every loader promises."""
    for key in ("x", "edge_index", "y", "train_mask", "val_mask", "test_mask"):
        if getattr(data, key, None) is None:
            raise DataError(f"graph has no {key!r}")
    n = data.num_nodes
    if data.x.dim() != 2 or data.x.size(0) != n or data.y.shape != (n,):
        raise DataError(f"graph shapes disagree: x {tuple(data.x.shape)}, y {tuple(data.y.shape)}, N={n}")
    if data.edge_index.numel() and (data.edge_index.min() < 0 or data.edge_index.max() >= n):
        raise DataError(f"edge_index refers to nodes outside 0..{n - 1}")
    masks = torch.stack([data.train_mask, data.val_mask, data.test_mask])
    if masks.dtype != torch.bool or masks.shape[1] != n:
        raise DataError("train/val/test masks must be boolean vectors of length N")
    if (masks.sum(0) > 1).any():
        raise DataError("train/val/test masks overlap")
    for name, mask in zip(("train", "val", "test"), masks, strict=True):
        if not mask.any():
            raise DataError(f"the {name} split is empty")


# -- shared helpers ------------------------------------------------------------------------------------
def undirected(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Both directions of every edge, self-loops removed, duplicates merged, sorted by (src, dst)."""
    edge_index, _ = remove_self_loops(edge_index.long())
    return coalesce(to_undirected(edge_index, num_nodes=num_nodes), num_nodes=num_nodes)


def stratified_split(
    y: torch.Tensor, train: float, val: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Disjoint boolean masks: per class ``max(1, round(train·n_c))`` training nodes, then
    ``max(1, round(val·n_c))`` validation nodes (when the class has room), the rest test.
    """
    g = torch.Generator().manual_seed(seed)
    n = y.numel()
    masks = [torch.zeros(n, dtype=torch.bool) for _ in range(3)]
    for c in y.unique().tolist():
        idx = (y == c).nonzero().view(-1)
        idx = idx[torch.randperm(idx.numel(), generator=g)]
        n_train = max(1, round(train * idx.numel()))
        n_val = min(max(1, round(val * idx.numel())), idx.numel() - n_train)
        masks[0][idx[:n_train]] = True
        masks[1][idx[n_train : n_train + n_val]] = True
        masks[2][idx[n_train + n_val :]] = True
    return masks[0], masks[1], masks[2]


# -- generators ----------------------------------------------------------------------------------------
def csbm_graph(cfg: CSBMConfig) -> Data:
    """Sample the contextual SBM of ``cfg`` (deterministic in ``cfg.seed``)."""
    g = torch.Generator().manual_seed(cfg.seed)
    n, c = cfg.nodes, cfg.classes
    y = torch.arange(n) % c
    y = y[torch.randperm(n, generator=g)]
    members = [(y == k).nonzero().view(-1) for k in range(c)]

    n_pairs = int(torch.poisson(torch.tensor(n * cfg.avg_degree / 2.0), generator=g).item())
    src = torch.randint(0, n, (n_pairs,), generator=g)
    same = torch.rand(n_pairs, generator=g) < cfg.homophily
    # the partner's class: the source's own with probability h, else uniform over the other classes
    shift = torch.randint(1, c, (n_pairs,), generator=g)
    partner_class = torch.where(same, y[src], (y[src] + shift) % c)
    dst = torch.empty_like(src)
    for k in range(c):
        sel = (partner_class == k).nonzero().view(-1)
        dst[sel] = members[k][torch.randint(0, members[k].numel(), (sel.numel(),), generator=g)]
    edge_index = undirected(torch.stack([src, dst]), n)

    means = torch.randn(c, cfg.feature_dim, generator=g)
    means = cfg.feature_signal * means / means.norm(dim=1, keepdim=True)
    x = means[y] + torch.randn(n, cfg.feature_dim, generator=g)
    train, val, test = stratified_split(y, cfg.train, cfg.val, cfg.seed)
    return Data(x=x, edge_index=edge_index, y=y, train_mask=train, val_mask=val, test_mask=test)


def karate_graph(cfg: KarateConfig) -> Data:
    """PyG's KarateClub (no download: it is built into the package) with seeded stratified splits."""
    from torch_geometric.datasets import KarateClub

    base = KarateClub()[0]
    train, val, test = stratified_split(base.y, cfg.train, cfg.val, cfg.seed)
    return Data(
        x=base.x.float(),
        edge_index=undirected(base.edge_index, base.num_nodes),
        y=base.y.long(),
        train_mask=train,
        val_mask=val,
        test_mask=test,
    )


WORLD_ENTITY_KINDS = ("person", "city", "country", "company")


def world_graph(cfg: WorldGraphConfig) -> Data:
    """The factworld as a text-attributed graph (see :class:`WorldGraphConfig`).

    Besides the standard fields the result carries, for text-aware models (LLaGA):
    ``raw_texts`` (list[str], the node names), ``node_kinds`` (list[str]), ``label_texts``
    (list[str], one per class), ``edge_relations [E, R]`` (bool, multi-hot: every relation that links
    the pair, in either direction — a person can live and work in the same city), ``edge_relation [E]``
    (the lowest-numbered of them, for code that wants one label per edge) and ``relation_names``
    (list[str], R of them).
    """
    from slimkit.data.factworld import WorldConfig, generate_world

    world = generate_world(WorldConfig(seed=cfg.world_seed, n_people=cfg.people))
    names: list[str] = []
    kinds: list[str] = []
    for kind in WORLD_ENTITY_KINDS:
        names += world.entities[kind]
        kinds += [kind] * len(world.entities[kind])
    index = {name: i for i, name in enumerate(names)}
    if len(index) != len(names):
        raise DataError("factworld entity names are not unique; cannot build a graph")

    relations = sorted({f.relation for f in world.facts if f.object in index})
    rel_id = {r: i for i, r in enumerate(relations)}
    edges = [
        (index[f.subject], index[f.object], rel_id[f.relation]) for f in world.facts if f.object in index
    ]
    triples = torch.tensor(edges, dtype=torch.long)
    # both directions, each carrying the relation of its fact
    edge_index = torch.cat([triples[:, :2].t(), triples[:, [1, 0]].t()], dim=1)
    one_hot = torch.nn.functional.one_hot(triples[:, 2], len(relations))
    n = len(names)
    # a pair linked by several facts becomes one edge carrying all their relations
    edge_index, multi_hot = coalesce(edge_index, torch.cat([one_hot, one_hot]), num_nodes=n, reduce="max")
    edge_relations = multi_hot.bool()
    edge_relation = edge_relations.int().argmax(dim=1)  # argmax returns the first maximal index

    if cfg.label == "type":
        label_texts = list(WORLD_ENTITY_KINDS)
        y = torch.tensor([WORLD_ENTITY_KINDS.index(k) for k in kinds])
    else:
        label_texts = list(world.entities["country"])
        country_of = {f.subject: f.object for f in world.facts if f.relation == "in_country"}
        home = {f.subject: f.object for f in world.facts if f.relation in ("lives_in", "headquartered_in")}
        countries = []
        for name, kind in zip(names, kinds, strict=True):
            if kind == "country":
                countries.append(name)
            elif kind == "city":
                countries.append(country_of[name])
            else:
                countries.append(country_of[home[name]])
        y = torch.tensor([label_texts.index(c) for c in countries])

    train, val, test = stratified_split(y, cfg.train, cfg.val, cfg.seed)
    return Data(
        x=hashed_trigrams(names, cfg.feature_dim),
        edge_index=edge_index,
        y=y,
        train_mask=train,
        val_mask=val,
        test_mask=test,
        raw_texts=names,
        node_kinds=kinds,
        label_texts=label_texts,
        edge_relations=edge_relations,
        edge_relation=edge_relation,
        relation_names=relations,
    )


def hashed_trigrams(texts: list[str], dim: int) -> torch.Tensor:
    """[len(texts), dim] L2-normalised counts of character trigrams (of ``" text "``, lower-cased)
    hashed with CRC-32 (stable across processes, unlike ``hash``)."""
    x = torch.zeros(len(texts), dim)
    for i, text in enumerate(texts):
        padded = f" {text.lower()} "
        for j in range(len(padded) - 2):
            x[i, zlib.crc32(padded[j : j + 3].encode()) % dim] += 1.0
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


# -- local directories ---------------------------------------------------------------------------------
def planetoid_graph(cfg: PlanetoidConfig, download: bool) -> Data:
    """Read a local Planetoid copy (public split); with ``download`` fetch missing raw files.

    The raw files are read by :mod:`slimkit.graph.planetoid` with a restricted unpickler (no code in
    them runs); ``processed/`` is neither read nor written.
    """
    from slimkit.graph.planetoid import read_planetoid

    root = Path(cfg.root) / cfg.name
    raw = root / "raw"
    if root.exists() and not root.is_dir():
        raise DataError(f"Planetoid {cfg.name}: {root} is a file, not a directory holding raw/")
    files = [f"ind.{cfg.name.lower()}.{suffix}" for suffix in PLANETOID_RAW]
    missing = [f for f in files if not (raw / f).is_file()]
    if missing and download:
        _download_planetoid(raw, missing)
        missing = [f for f in files if not (raw / f).is_file()]
    if missing:
        raise DataError(
            f"Planetoid {cfg.name}: {raw} lacks {', '.join(missing)}; put the raw files "
            f"{', '.join(files)} (from github.com/kimiyoung/planetoid, data/) there, or pass --download"
        )
    base = read_planetoid(raw, cfg.name)
    n = base["x"].size(0)
    return Data(
        x=base["x"],
        edge_index=undirected(base["edge_index"], n),
        y=base["y"],
        train_mask=base["train_mask"],
        val_mask=base["val_mask"],
        test_mask=base["test_mask"],
    )


def _download_planetoid(raw: Path, names: list[str]) -> None:
    """Fetch missing raw files from the Planetoid repository (opt-in only); each lands whole or not at all."""
    import os
    import tempfile

    from torch_geometric.data import download_url

    try:
        raw.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".download-", dir=raw) as tmp:
            for name in names:
                try:
                    fetched = download_url(f"{PLANETOID_URL}/{name}", tmp, log=False)
                except Exception as e:  # urllib raises several unrelated types for network problems
                    raise DataError(f"could not download {PLANETOID_URL}/{name}: {e}") from None
                os.replace(fetched, raw / name)
    except OSError as e:
        raise DataError(f"cannot write downloaded Planetoid files into {raw}: {e.strerror or e}") from None


def ogb_short_name(directory: str) -> str:
    """The dataset a directory name means: ``ogbn-arxiv`` (our spelling), ``ogbn_arxiv`` (what the ``ogb``
    package writes) and ``arxiv`` (the folder inside OGB's ``arxiv.zip``) all give ``arxiv``."""
    name = directory.lower()
    for prefix in ("ogbn-", "ogbn_"):
        name = name.removeprefix(prefix)
    return name.replace("_", "-")


def _check_ogb_supported(root: Path) -> str:
    short = ogb_short_name(root.name)
    if short in OGB_OTHER_FORMATS:
        raise DataError(
            f"ogbn-{short} {OGB_OTHER_FORMATS[short]}; this reader supports the homogeneous CSV datasets "
            f"{', '.join('ogbn-' + s for s in OGB_SUPPORTED)}"
        )
    return short


def ogb_graph(cfg: OGBConfig, download: bool) -> Data:
    """Read an OGB node-property directory with gzip + numpy (see :class:`OGBConfig`)."""
    root = Path(cfg.path)
    short = _check_ogb_supported(root)
    if not _ogb_missing(root):
        return _read_ogb(root)
    if download:
        _download_ogb(root)
    missing = _ogb_missing(root)
    if missing:
        raise DataError(
            f"OGB directory {root} lacks {', '.join(missing)}; unzip {OGB_URL.format(short=short)} so that "
            f"{root}/raw/ and {root}/split/<type>/ exist, or pass --download "
            f"(supported: {', '.join('ogbn-' + s for s in OGB_SUPPORTED)})"
        )
    return _read_ogb(root)


def _ogb_missing(root: Path) -> list[str]:
    missing = [f"raw/{f}" for f in OGB_RAW if not (root / "raw" / f).is_file()]
    split = _ogb_split_dir(root)
    if split is None:
        missing.append("split/<type>/train.csv.gz")
    else:
        missing += [f"split/{split.name}/{f}" for f in OGB_SPLIT if not (split / f).is_file()]
    return missing


def _ogb_split_dir(root: Path) -> Path | None:
    candidates = (
        sorted(p for p in (root / "split").glob("*") if p.is_dir()) if (root / "split").is_dir() else []
    )
    return candidates[0] if candidates else None


def _read_csv_gz(path: Path, dtype: Any) -> np.ndarray:
    try:
        try:
            import pandas as pd  # much faster than numpy.loadtxt for ogbn-arxiv's 169k x 128 features
        except ImportError:
            with gzip.open(path, "rt", encoding="utf-8") as f:
                return np.loadtxt(f, delimiter=",", dtype=dtype, ndmin=2)
        return pd.read_csv(path, header=None, compression="gzip").to_numpy(dtype=dtype, copy=True)
    except (OSError, ValueError, EOFError, OverflowError) as e:  # UnicodeDecodeError is a ValueError
        raise DataError(f"{path} is not a readable gzip CSV: {_first_line(e)}") from None
    except MemoryError:
        raise DataError(f"{path} is too large to read into memory") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _read_ogb(root: Path) -> Data:
    x = torch.from_numpy(_read_csv_gz(root / "raw" / "node-feat.csv.gz", np.float32))
    labels = _read_csv_gz(root / "raw" / "node-label.csv.gz", np.float64).reshape(-1)
    edges = torch.from_numpy(_read_csv_gz(root / "raw" / "edge.csv.gz", np.int64))
    n = x.size(0)
    if labels.size != n:
        raise DataError(f"{root}: node-label has {labels.size} rows but node-feat has {n}")
    if edges.ndim != 2 or edges.size(1) != 2:
        raise DataError(f"{root}/raw/edge.csv.gz must have two columns (src,dst)")
    if edges.numel() and (edges.min() < 0 or edges.max() >= n):
        raise DataError(f"{root}/raw/edge.csv.gz has node ids outside 0..{n - 1}")
    labelled = ~np.isnan(labels)
    known = labels[labelled]
    if known.size and ((known != np.round(known)).any() or known.min() < 0 or known.max() >= MAX_CLASSES):
        raise DataError(
            f"{root}/raw/node-label.csv.gz: labels must be integers in 0..{MAX_CLASSES - 1} (or empty)"
        )
    y = torch.from_numpy(np.where(labelled, labels, -1).astype(np.int64))
    split = _ogb_split_dir(root)
    assert split is not None  # checked by _ogb_missing
    masks = []
    for f in OGB_SPLIT:
        idx = torch.from_numpy(_read_csv_gz(split / f, np.int64).reshape(-1))
        if idx.numel() and (idx.min() < 0 or idx.max() >= n):
            raise DataError(f"{split / f} has node indices outside 0..{n - 1}")
        mask = torch.zeros(n, dtype=torch.bool)
        mask[idx] = True
        masks.append(mask & (y >= 0))
    return Data(
        x=x,
        edge_index=undirected(edges.t().contiguous(), n),
        y=y.clamp_min(0),
        train_mask=masks[0],
        val_mask=masks[1],
        test_mask=masks[2],
    )


def _download_ogb(root: Path) -> None:
    """Fetch the official OGB zip (``ogbn-<short>``) and unpack it as ``root`` (opt-in only)."""
    import shutil
    import tempfile

    from torch_geometric.data import download_url, extract_zip

    short = ogb_short_name(root.name)
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
        try:
            archive = download_url(OGB_URL.format(short=short), tmp)
        except Exception as e:  # urllib raises several unrelated types for network problems
            raise DataError(f"could not download {OGB_URL.format(short=short)}: {e}") from None
        extract_zip(archive, tmp)
        unpacked = next((p for p in Path(tmp).iterdir() if p.is_dir() and (p / "raw").is_dir()), None)
        if unpacked is None:
            raise DataError(f"{archive} did not contain an OGB directory with raw/")
        root.mkdir(exist_ok=True)
        # mapping/ holds the node-to-paper (arxiv) and node-to-product ids LLaGA's node texts need
        for sub in ("raw", "split", "mapping"):
            if (unpacked / sub).is_dir() and not (root / sub).exists():
                shutil.move(str(unpacked / sub), str(root / sub))


DATASETS.register(CSBMConfig, name="csbm")(lambda cfg, download: csbm_graph(cfg))
DATASETS.register(KarateConfig, name="karate")(lambda cfg, download: karate_graph(cfg))
DATASETS.register(WorldGraphConfig, name="world")(lambda cfg, download: world_graph(cfg))
DATASETS.register(PlanetoidConfig, name="planetoid")(planetoid_graph)
DATASETS.register(OGBConfig, name="ogb")(ogb_graph)
