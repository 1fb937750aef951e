"""Readers for real text-attributed graphs kept in a local directory (nothing is downloaded).

LLaGA — "LLaGA: Large Language and Graph Assistant" (arXiv 2402.08170) trains on Cora, PubMed,
ogbn-arxiv and ogbn-products with each node's text. Three local layouts are read:

**LLaGA's processed datasets** (``tag:DIR/cora``; the layout of LLaGA's ``dataset/`` folder)::

    DIR/cora/processed_data.pt      a PyG ``Data``: edge_index [2, E], y [N], raw_texts (N strings),
                                    label_texts (C class names; optional, else --classes)
    DIR/cora/sbert_x.pt             optional precomputed features [N, F] (``tag:DIR/cora,features=sbert``;
                                    ``roberta``, ``simteg_sbert``, …; ``simteg`` concatenates
                                    simteg_sbert, simteg_roberta and simteg_e5 as LLaGA does: 2432-d)

**TAPE-style files** (``tag:FILE.pt``): one ``Data`` file with the same fields (``raw_texts``, and
``label_texts`` or ``label_names``), the format LLaGA's issue #19 points to for new datasets.

Both are torch pickles; they are read with ``torch.load(weights_only=True)`` with only PyG's
``Data`` container classes allowed, so a file that carries any other object is refused instead of
executed. The file's own masks are not used: LLaGA splits Cora and PubMed 6:2:2 at random, and
slimkit draws that split with ``--split-seed`` for every graph.

**ogbn-arxiv's paper texts** (``ogb:DIR/ogbn-arxiv``: the OGB raw layout slimkit reads, plus)::

    DIR/ogbn-arxiv/mapping/nodeidx2paperid.csv.gz       header "node idx,paper id"; node i -> MAG id
    DIR/ogbn-arxiv/mapping/labelidx2arxivcategeory.csv.gz   header "label idx,arxiv category"
                                                        ("arxiv cs na" -> class name "cs.NA")
    titleabs.tsv[.gz]   "paper id<TAB>title<TAB>abstract" per line (OGB's misc download), in
                        DIR/ogbn-arxiv, its mapping/ or raw/, or DIR (the first found); lines whose
                        first field is not an integer id are skipped

A node's text is ``"{title}: {abstract}"``. A node whose paper id has no line is an error naming it.
"""

from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from slimkit.core.errors import ConfigError, DataError

TAG_PREFIX = "tag:"
LLAGA_DATA_FILE = "processed_data.pt"
#: LLaGA's ``simteg`` features are these three files concatenated (384 + 1024 + 1024 = 2432)
SIMTEG_PARTS = ("simteg_sbert", "simteg_roberta", "simteg_e5")
ARXIV_NODE_MAP = "nodeidx2paperid.csv.gz"
ARXIV_LABEL_MAP = "labelidx2arxivcategeory.csv.gz"  # OGB's spelling
TITLEABS = ("titleabs.tsv", "titleabs.tsv.gz")


@dataclass
class TagGraph:
    """What a text-attributed graph file holds: ``edge_index [2, E]`` (as stored), ``y [N]``, one text
    per node, the class names (None when the file has none) and precomputed features (or None)."""

    edge_index: Tensor
    y: Tensor
    texts: list[str]
    class_names: list[str] | None
    x: Tensor | None
    path: Path


def parse_tag_spec(spec: str) -> tuple[Path, str | None]:
    """``tag:PATH[,features=NAME]`` -> ``(PATH, NAME or None)``."""
    body = spec[len(TAG_PREFIX) :]
    path, _, opts = body.partition(",")
    if not path:
        raise ConfigError(f"tag spec needs a path: tag:DIR/cora or tag:FILE.pt, got {spec!r}")
    features = None
    for opt in filter(None, opts.split(",")):
        key, eq, value = opt.partition("=")
        if key.strip() != "features" or not eq or not value.strip():
            raise ConfigError(f"tag spec option {opt!r} is not features=NAME (e.g. features=sbert)")
        features = value.strip()
    return Path(path).expanduser(), features


def _safe_torch_load(path: Path):
    from torch_geometric.data import Data
    from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
    from torch_geometric.data.storage import GlobalStorage

    if not path.is_file():
        raise DataError(f"file not found: {path}")
    try:
        with torch.serialization.safe_globals([Data, DataEdgeAttr, DataTensorAttr, GlobalStorage]):
            return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # an unpickling error says which global it refused
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{path} is not a tensor / PyG Data file slimkit can read safely: {first}") from None


def _field(obj, *names):
    for name in names:
        value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        if value is not None:
            return value
    return None


def read_tag(spec: str) -> TagGraph:
    """Read ``tag:DIR`` (LLaGA: ``DIR/processed_data.pt``) or ``tag:FILE.pt`` (TAPE-style)."""
    path, features = parse_tag_spec(spec)
    file = path / LLAGA_DATA_FILE if path.is_dir() else path
    if path.is_dir() and not file.is_file():
        raise DataError(
            f"{path} has no {LLAGA_DATA_FILE} (LLaGA's dataset layout: DIR/cora/{LLAGA_DATA_FILE})"
        )
    data = _safe_torch_load(file)
    edge_index = _field(data, "edge_index")
    y = _field(data, "y")
    texts = _field(data, "raw_texts", "raw_text")
    names = _field(data, "label_texts", "label_names")
    if not isinstance(edge_index, Tensor) or edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise DataError(f"{file}: edge_index must be a [2, E] tensor")
    if not isinstance(y, Tensor):
        raise DataError(f"{file}: has no label tensor y")
    y = y.reshape(-1).long()
    if not isinstance(texts, list | tuple) or any(not isinstance(t, str) for t in texts):
        raise DataError(f"{file}: raw_texts must be a list of strings (one per node)")
    n = len(texts)
    if y.numel() != n:
        raise DataError(f"{file}: {y.numel()} labels but {n} node texts")
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= n):
        raise DataError(f"{file}: edge_index has node ids outside 0..{n - 1}")
    if names is not None:
        if not isinstance(names, list | tuple) or any(not isinstance(c, str) for c in names):
            raise DataError(f"{file}: label_texts must be a list of strings")
        names = list(names)
    x = None
    if features is not None:
        folder = path if path.is_dir() else path.parent
        parts = SIMTEG_PARTS if features == "simteg" else (features,)
        tensors = [_read_feature_file(folder / f"{p}_x.pt", n) for p in parts]
        x = torch.cat(tensors, dim=1)
    return TagGraph(edge_index.long(), y, list(texts), names, x, file)


def _read_feature_file(path: Path, n: int) -> Tensor:
    x = _safe_torch_load(path)
    if not isinstance(x, Tensor) or x.dim() != 2 or x.size(0) != n:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise DataError(f"{path}: features must be a [{n}, F] tensor, got {shape}")
    return x.float()


# -- ogbn-arxiv ------------------------------------------------------------------------------------------
def _open_text(path: Path):
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path), encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


def _read_mapping(path: Path, what: str) -> list[str]:
    """Column 2 of an OGB mapping CSV (header row, then ``index,value`` in index order)."""
    if not path.is_file():
        raise DataError(f"{what} not found: {path} (OGB's mapping/ folder of the dataset)")
    with _open_text(path) as f:
        rows = list(csv.reader(f))
    if len(rows) < 2 or len(rows[0]) < 2:
        raise DataError(f"{path}: expected a header and 'index,value' rows")
    out: list[str] = []
    for k, row in enumerate(rows[1:], 2):
        if len(row) < 2 or not row[0].strip().isdigit() or int(row[0]) != len(out):
            raise DataError(f"{path}:{k}: expected '{len(out)},<value>', got {','.join(row)[:60]!r}")
        out.append(row[1].strip())
    return out


def arxiv_class_name(category: str) -> str:
    """OGB's ``"arxiv cs na"`` -> ``"cs.NA"`` (the name LLaGA's arxiv prompts use)."""
    parts = category.split()
    if len(parts) == 3 and parts[0] == "arxiv":
        return f"{parts[1]}.{parts[2].upper()}"
    return category


def find_titleabs(root: Path) -> Path | None:
    for folder in (root, root / "mapping", root / "raw", root.parent):
        for name in TITLEABS:
            if (folder / name).is_file():
                return folder / name
    return None


def arxiv_texts(root: str | Path) -> tuple[list[str], list[str]]:
    """``(texts, class names)`` of an ogbn-arxiv directory (see the module docstring)."""
    root = Path(root)
    paper_ids = _read_mapping(root / "mapping" / ARXIV_NODE_MAP, "node-to-paper mapping")
    names = [arxiv_class_name(c) for c in _read_mapping(root / "mapping" / ARXIV_LABEL_MAP, "label mapping")]
    tsv = find_titleabs(root)
    if tsv is None:
        raise DataError(
            f"no titleabs.tsv(.gz) in {root}, {root}/mapping, {root}/raw or {root.parent} "
            "(OGB's misc/ogbn_arxiv/titleabs.tsv.gz: paper id, title, abstract per line)"
        )
    wanted = set(paper_ids)
    found: dict[str, str] = {}
    with _open_text(tsv) as f:
        for line in f:
            pid, _, rest = line.rstrip("\r\n").partition("\t")
            pid = pid.strip()
            if pid in wanted and pid.isdigit():
                title, _, abstract = rest.partition("\t")
                found[pid] = f"{title.strip()}: {abstract.strip()}"
    missing = [p for p in paper_ids if p not in found]
    if missing:
        raise DataError(
            f"{tsv} has no line for {len(missing)} of the graph's papers (e.g. paper id {missing[0]})"
        )
    return [found[p] for p in paper_ids], names


def is_arxiv_dir(root: Path) -> bool:
    from slimkit.graph.datasets import ogb_short_name

    return ogb_short_name(root.name) == "arxiv" and (root / "mapping" / ARXIV_NODE_MAP).is_file()
