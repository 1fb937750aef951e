"""Hostile and careless input to the graph and debias subsystems: no code runs, no user data is lost,
every bad input is one SlimkitError (through the CLI: one line on stderr and exit code 2)."""

from __future__ import annotations

import builtins
import collections
import csv
import gzip
import os
import pickle
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("torch_geometric")
scipy_sparse = pytest.importorskip("scipy.sparse")

from cli_helpers import assert_one_line_error as one_line_error  # noqa: E402
from cli_helpers import read_only_dir  # noqa: E402
from cli_helpers import run as cli  # noqa: E402

from slimkit.core.errors import ConfigError, DataError, SlimkitError  # noqa: E402
from slimkit.debias import read_metadata_csv  # noqa: E402
from slimkit.graph import load_dataset, parse_dataset_spec  # noqa: E402
from slimkit.graph.planetoid import MAX_DENSE_ENTRIES, read_planetoid  # noqa: E402

# -- helpers -------------------------------------------------------------------------------------------


def nothing_written(out: Path) -> None:
    """Neither ``out`` nor a temporary sibling of it exists."""
    assert not out.exists()
    if out.parent.exists():
        leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
        assert leftovers == []


class Payload:
    """Unpickling this calls ``open(marker, "w")`` (pickled as ``io.open``): the file appears iff code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


class SystemPayload(Payload):
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def write_planetoid(
    raw: Path,
    name: str = "cora",
    *,
    n: int = 600,
    n_train: int = 20,
    n_test: int = 40,
    f: int = 12,
    c: int = 3,
    missing: int = 0,
    protocol: int = 2,
) -> dict:
    """A Planetoid raw directory in the real format: csr features, int one-hot labels, a defaultdict graph,
    a permuted test.index (with ``missing`` test nodes absent, as in CiteSeer)."""
    rng = np.random.default_rng(0)
    n_all = n - n_test
    labels = rng.integers(0, c, n)
    onehot = np.eye(c, dtype=np.int64)[labels]
    feats = (rng.random((n, f)) < 0.3).astype(np.float32)
    test_ids = np.arange(n_all, n)
    if missing:  # keep the first and last ids: CiteSeer's gaps are inside the range
        keep = np.r_[0, n_test - 1, rng.choice(np.arange(1, n_test - 1), n_test - missing - 2, replace=False)]
        test_ids = test_ids[np.sort(keep)]
    test_ids = rng.permutation(test_ids)  # tx / ty row i is node test_ids[i], listed in that order
    items = {
        "x": scipy_sparse.csr_matrix(feats[:n_train]),
        "allx": scipy_sparse.csr_matrix(feats[:n_all]),
        "tx": scipy_sparse.csr_matrix(feats[test_ids]),
        "y": onehot[:n_train],
        "ally": onehot[:n_all],
        "ty": onehot[test_ids],
        "graph": collections.defaultdict(list, {i: [(i + 1) % n, (i - 1) % n, i] for i in range(n)}),
    }
    raw.mkdir(parents=True, exist_ok=True)
    for key, value in items.items():
        (raw / f"ind.{name}.{key}").write_bytes(pickle.dumps(value, protocol=protocol))
    (raw / f"ind.{name}.test.index").write_text("\n".join(map(str, test_ids)) + "\n")
    return {"labels": labels, "feats": feats, "test_ids": test_ids}


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# -- 1. code execution through graph data --------------------------------------------------------------
def test_payload_pickle_really_runs_code_with_plain_pickle(tmp_path):
    """Sanity check of the payload used below: plain ``pickle.loads`` creates the marker."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


@pytest.mark.parametrize("suffix", ["x", "allx", "tx", "y", "ally", "ty", "graph"])
@pytest.mark.parametrize("payload", [Payload, SystemPayload])
def test_booby_trapped_planetoid_raw_file_runs_no_code(tmp_path, suffix, payload):
    root = tmp_path / "data"
    write_planetoid(root / "Cora" / "raw")
    bad = root / "Cora" / "raw" / f"ind.cora.{suffix}"
    marker = tmp_path / "MARKER"
    bad.write_bytes(pickle.dumps(payload(marker), protocol=2))
    with pytest.raises(DataError) as err:
        load_dataset(f"planetoid:{root}/Cora")
    assert not marker.exists()
    message = str(err.value)
    assert str(bad) in message and "refusing to unpickle" in message
    assert ("io.open" if payload is Payload else "posix.system") in message
    assert "\n" not in message


def test_payload_hidden_inside_allowed_containers_runs_no_code(tmp_path):
    marker = tmp_path / "MARKER"
    raw = tmp_path / "Cora" / "raw"
    hidden = [
        ("graph", {0: [1, Payload(marker)], 1: [0]}),  # a neighbour list
        ("graph", collections.defaultdict(Payload(marker).__reduce__()[0], {0: [1]})),  # the factory
        ("y", np.array([Payload(marker), 1], dtype=object)),  # an object array's element
        ("x", {"_shape": (2, 2), "data": Payload(marker)}),
    ]
    for suffix, value in hidden:
        write_planetoid(raw)
        (raw / f"ind.cora.{suffix}").write_bytes(pickle.dumps(value, protocol=2))
        with pytest.raises(DataError, match=r"refusing to unpickle io\.open"):
            load_dataset(f"planetoid:{tmp_path}/Cora")
        assert not marker.exists()


def test_python2_protocol0_eval_payload_is_refused(tmp_path):
    marker = tmp_path / "MARKER"
    raw = tmp_path / "Cora" / "raw"
    write_planetoid(raw)
    # what a Python 2 attacker would write: __builtin__.eval("open(...)")
    payload = f"c__builtin__\neval\n(S'open({str(marker)!r}, \"w\")'\ntR.".encode()
    (raw / "ind.cora.graph").write_bytes(payload)
    with pytest.raises(DataError, match=r"ind\.cora\.graph.*__builtin__\.eval"):
        load_dataset(f"planetoid:{tmp_path}/Cora")
    assert not marker.exists()


@pytest.mark.parametrize("processed", ["pre_transform.pt", "pre_filter.pt", "data.pt"])
def test_booby_trapped_processed_file_is_never_loaded(tmp_path, processed):
    marker = tmp_path / "MARKER"
    root = tmp_path / "data"
    write_planetoid(root / "Cora" / "raw")
    (root / "Cora" / "processed").mkdir()
    torch.save(Payload(marker), root / "Cora" / "processed" / processed)
    before = listing(root)
    data = load_dataset(f"planetoid:{root}/Cora")
    assert data.num_nodes == 600
    assert not marker.exists()
    assert listing(root) == before  # nothing read from or written to processed/


def test_cli_planetoid_payload_is_one_line_and_writes_nothing(tmp_path, capsys):
    marker = tmp_path / "MARKER"
    root = tmp_path / "data"
    write_planetoid(root / "Cora" / "raw")
    (root / "Cora" / "raw" / "ind.cora.allx").write_bytes(pickle.dumps(Payload(marker)))
    out = tmp_path / "out"
    code, _, err = cli(["graph", "ladling", "--dataset", f"planetoid:{root}/Cora", "--out", out], capsys)
    one_line_error(code, err, "ind.cora.allx", "refusing to unpickle")
    assert not marker.exists()
    nothing_written(out)


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_legit_planetoid_raw_directory_loads_like_torch_geometric(tmp_path, protocol):
    from torch_geometric.io.planetoid import read_planetoid_data

    raw = tmp_path / "Cora" / "raw"
    made = write_planetoid(raw, protocol=protocol)
    data = load_dataset(f"planetoid:{tmp_path}/Cora")
    assert data.x.shape == (600, 12) and data.x.dtype == torch.float32
    assert data.y.tolist() == made["labels"].tolist()
    assert torch.equal(data.x, torch.from_numpy(made["feats"]))
    assert (int(data.train_mask.sum()), int(data.val_mask.sum()), int(data.test_mask.sum())) == (20, 500, 40)
    assert data.edge_index.size(1) == 1200  # a ring, both directions, the self-loops dropped
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = read_planetoid_data(str(raw), "cora")  # trusted: this test wrote the files
    for key in ("x", "y", "train_mask", "val_mask", "test_mask"):
        assert torch.equal(getattr(data, key), getattr(reference, key)), key


def test_legit_citeseer_with_missing_test_nodes_matches_torch_geometric(tmp_path):
    from torch_geometric.io.planetoid import read_planetoid_data

    raw = tmp_path / "CiteSeer" / "raw"
    made = write_planetoid(raw, "citeseer", n_test=60, missing=5)
    ours = read_planetoid(raw, "CiteSeer")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = read_planetoid_data(str(raw), "citeseer")
    assert ours["x"].shape == (600, 12) and int(ours["test_mask"].sum()) == len(made["test_ids"]) == 55
    for key in ("x", "y", "train_mask", "val_mask", "test_mask"):
        assert torch.equal(ours[key], getattr(reference, key)), key


def test_sparse_matrix_claiming_a_huge_shape_is_refused_before_allocation(tmp_path):
    raw = tmp_path / "Cora" / "raw"
    write_planetoid(raw)
    huge = scipy_sparse.csr_matrix((10**6, 10**6), dtype=np.float32)  # no entries: a few bytes on disk
    (raw / "ind.cora.tx").write_bytes(pickle.dumps(huge))
    with pytest.raises(DataError, match=rf"ind\.cora\.tx.*1000000 x 1000000.*{MAX_DENSE_ENTRIES:,}"):
        load_dataset(f"planetoid:{tmp_path}/Cora")


@pytest.mark.parametrize(
    "suffix, content, needle",
    [
        ("x", b"\x80\x02}q\x00(", "not a readable Planetoid pickle"),  # truncated
        ("x", pickle.dumps("a string"), "not a numeric array"),
        ("graph", pickle.dumps({0: [10**6]}), "outside 0..599"),
        ("graph", pickle.dumps([1, 2]), "dict of adjacency lists"),
        ("test.index", b"12\nabc\n", "not one integer per line"),
        ("test.index", b"\xff\xfe", "not ASCII"),
        ("test.index", b"5\n", "lists 1 nodes but tx has 40 rows"),
    ],
)
def test_malformed_planetoid_files_are_one_data_error(tmp_path, suffix, content, needle):
    raw = tmp_path / "Cora" / "raw"
    write_planetoid(raw)
    (raw / f"ind.cora.{suffix}").write_bytes(content)
    with pytest.raises(DataError, match=needle) as err:
        load_dataset(f"planetoid:{tmp_path}/Cora")
    assert "\n" not in str(err.value)


def test_csr_with_out_of_bounds_indices_is_refused(tmp_path):
    raw = tmp_path / "Cora" / "raw"
    write_planetoid(raw)
    bad = scipy_sparse.csr_matrix(np.eye(40, 12, dtype=np.float32))
    bad.indices[3] = 10**6  # compiled todense code would write out of bounds
    (raw / "ind.cora.tx").write_bytes(pickle.dumps(bad))
    with pytest.raises(DataError, match="outside its 40 x 12 shape"):
        load_dataset(f"planetoid:{tmp_path}/Cora")


def test_planetoid_root_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "Cora").write_text("not a directory")
    code, _, err = cli(
        ["graph", "ladling", "--dataset", f"planetoid:{tmp_path}/Cora", "--out", tmp_path / "o"], capsys
    )
    one_line_error(code, err, "is a file")
    nothing_written(tmp_path / "o")


def _write_gz(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "file, lines, needle",
    [
        ("raw/node-label.csv.gz", ["1000000000000"] * 6, "labels must be integers"),
        ("raw/node-label.csv.gz", ["0.5"] * 6, "labels must be integers"),
        ("raw/edge.csv.gz", ["0,99"], "node ids outside 0..5"),
        ("raw/node-feat.csv.gz", ["a,b"] * 6, "not a readable gzip CSV"),
    ],
)
def test_malformed_ogb_directory_is_one_data_error(tmp_path, file, lines, needle):
    root = tmp_path / "ogbn-tiny"
    _write_gz(root / "raw" / "edge.csv.gz", ["0,1", "1,2"])
    _write_gz(root / "raw" / "node-feat.csv.gz", ["1.0,2.0"] * 6)
    _write_gz(root / "raw" / "node-label.csv.gz", ["0", "1"] * 3)
    for name, idx in (("train", "0"), ("valid", "1"), ("test", "2")):
        _write_gz(root / "split" / "s" / f"{name}.csv.gz", [idx])
    load_dataset(f"ogb:{root}")  # the valid directory loads
    _write_gz(root / file, lines)
    with pytest.raises(DataError, match=needle):
        load_dataset(f"ogb:{root}")


# -- 2. unbounded work before validation ---------------------------------------------------------------
@pytest.mark.parametrize(
    "spec, needles",
    [
        ("csbm:nodes=1e9", ["nodes=1000000000", "1000000"]),
        ("csbm:nodes=1000000000", ["nodes=1000000000", "1000000"]),
        ("csbm:feature_dim=100000000", ["feature_dim=100000000", "65536"]),
        ("csbm:nodes=1000000,feature_dim=60000", ["nodes·feature_dim", "268,435,456"]),
        ("csbm:nodes=1000000,avg_degree=500", ["nodes·avg_degree", "20,000,000"]),
        ("csbm:classes=100000,nodes=1000000", ["classes=100000", "1000"]),
        ("csbm:seed=1e30", ["seed"]),
        ("world:people=100000000", ["people=100000000", "50000"]),
        ("world:feature_dim=1e9", ["feature_dim=1000000000"]),
    ],
)
def test_generator_sizes_are_capped_before_allocation(spec, needles):
    with pytest.raises(ConfigError) as err:
        load_dataset(spec)
    for needle in needles:
        assert needle in str(err.value), (needle, str(err.value))


def test_integral_float_options_mean_integers():
    assert parse_dataset_spec("csbm:nodes=1e3").nodes == 1000


def test_cli_huge_generator_size_is_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = cli(["graph", "ladling", "--dataset", "csbm:nodes=1e9", "--out", out], capsys)
    one_line_error(code, err, "nodes=1000000000", "1000000")
    nothing_written(out)


@pytest.mark.parametrize(
    "extra, needles",
    [
        (["--ingredients", "1000000000"], ["ingredients=1000000000"]),
        (["--layers", "1000000000000"], ["layers=1000000000000"]),  # before the default fan-outs list
        (["--hidden", "10000000"], ["hidden=10000000"]),
        (["--epochs", "1000000000"], ["epochs=1000000000"]),
        (["--grid", "1000000000"], ["interp_grid=1000000000"]),
        (["--fanouts", ",".join(["5"] * 1000)], ["--fanouts has 1000 entries"]),
        (["--fanouts", "5,x"], ["--fanouts must be comma-separated integers"]),
        (["--seed", str(2**70)], ["seed="]),
        (["--device", "cuda:99"], ["cuda:99"]),
        (["--device", "nonsense"], ["nonsense"]),
        (["--dataset", "ogb:"], ["ogb spec needs a directory"]),
        (["--dataset", "csbm:nodes"], ["not key=value"]),
    ],
)
def test_cli_ladling_nonsense_options_are_one_line(tmp_path, capsys, monkeypatch, extra, needles):
    import slimkit.graph

    def no_loading(*a, **k):
        raise AssertionError("the dataset was loaded before the options were checked")

    monkeypatch.setattr(slimkit.graph, "load_dataset", no_loading)
    out = tmp_path / "out"
    code, _, err = cli(["graph", "ladling", "--dataset", "karate", *extra, "--out", out], capsys)
    one_line_error(code, err, *needles)
    nothing_written(out)


# -- 3. the debias reader (ImageFolder + metadata CSV) -------------------------------------------------
def write_folder(root: Path, n: int = 8, size: tuple[int, int] = (12, 10)) -> Path:
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        name = f"img/{i}.png"
        (root / name).parent.mkdir(exist_ok=True)
        Image.new("RGB", size, color=(30 * i, 100, 200)).save(root / name)
        rows.append(
            {
                "path": name,
                "label": i % 2,
                "bias": i % 2 if i != 3 else 0,
                "split": "train" if i < 6 else "test",
            }
        )
    with (root / "metadata.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["path", "label", "bias", "split"])
        w.writeheader()
        w.writerows(rows)
    return root / "metadata.csv"


def replace_path(csv_path: Path, row: int, new: str) -> None:
    lines = csv_path.read_text(encoding="utf-8").splitlines()
    fields = lines[row + 1].split(",")
    fields[0] = new
    lines[row + 1] = ",".join(fields)
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_legit_folder_and_utf8_bom_still_read(tmp_path):
    path = write_folder(tmp_path / "ds")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # Excel's UTF-8 with BOM
    splits = read_metadata_csv(path, image_size=8)
    assert len(splits.train) == 6 and splits.train.batch(torch.tensor([0, 1])).shape == (2, 3, 8, 8)


def test_non_utf8_csv_is_one_data_error_naming_file_and_encoding(tmp_path):
    path = write_folder(tmp_path / "ds")
    path.write_bytes(path.read_bytes().replace(b"train", "tr\xe4in".encode("latin-1"), 1))
    with pytest.raises(DataError) as err:
        read_metadata_csv(path)
    message = str(err.value)
    assert str(path) in message and "UTF-8" in message and "0xe4" in message and "\n" not in message


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"path,label,bias,split\nimg/0.png,0\n", "fewer fields than the header"),
        (b"path,label,bias,split\nimg/0.png,0,0," + b"x" * 200_000 + b"\n", "not a readable CSV"),
        (b"path,label,bias,split\nimg/0.png,0,0,tr\x00ain\n", r"unknown split 'tr\\x00ain'"),
        (b"path,label,bias,split\nimg/0.png,99999999999,0,train\n", r"below 2\^31"),
    ],
)
def test_malformed_csv_rows_are_one_data_error(tmp_path, content, needle):
    write_folder(tmp_path / "ds")
    path = tmp_path / "ds" / "metadata.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=needle):
        read_metadata_csv(path)


def test_huge_class_id_is_refused_before_allocation(tmp_path):
    path = write_folder(tmp_path / "ds")
    path.write_text(path.read_text().replace("\nimg/1.png,1,", "\nimg/1.png,2000000000,"))
    with pytest.raises(DataError, match="class id 2000000000"):
        read_metadata_csv(path)


def _png_claiming(path: Path, width: int, height: int) -> None:
    """A valid small PNG whose header is rewritten to claim ``width x height`` pixels."""
    from PIL import Image

    Image.new("RGB", (2, 2)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


def test_decompression_bomb_image_is_one_data_error_before_training(tmp_path):
    path = write_folder(tmp_path / "ds")
    bomb = tmp_path / "ds" / "img" / "2.png"
    _png_claiming(bomb, 50_000, 50_000)
    with pytest.raises(DataError) as err:
        read_metadata_csv(path)  # checked up front, not in the middle of training
    assert str(bomb) in str(err.value) and "decompression bomb" in str(err.value)


def test_decompression_bomb_warning_is_an_error_too(tmp_path, monkeypatch):
    from PIL import Image

    from slimkit.debias import datasets

    path = write_folder(tmp_path / "ds")
    splits = read_metadata_csv(path, image_size=8)
    # 12 x 10 = 120 pixels: above Pillow's warning threshold (100), below its error threshold (200)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    monkeypatch.setattr(datasets, "MAX_IMAGE_PIXELS", 10**9)
    with pytest.raises(DataError, match=r"img/\d\.png is refused as a decompression bomb"):
        splits.train.batch(torch.tensor([0]))
    with pytest.raises(DataError, match="decompression bomb"):
        read_metadata_csv(path)


def test_image_over_the_pixel_cap_is_refused_even_if_pillow_limit_is_off(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    path = write_folder(tmp_path / "ds")
    _png_claiming(tmp_path / "ds" / "img" / "5.png", 20_000, 20_000)
    with pytest.raises(DataError, match=r"5\.png claims 20000 x 20000 pixels"):
        read_metadata_csv(path)


def test_formats_that_run_external_programs_are_not_opened(tmp_path):
    path = write_folder(tmp_path / "ds")
    (tmp_path / "ds" / "img" / "1.png").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    with pytest.raises(DataError, match=r"cannot read image .*1\.png"):
        read_metadata_csv(path)


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "symlink-out"])
def test_image_paths_outside_the_dataset_are_refused(tmp_path, kind):
    from PIL import Image

    path = write_folder(tmp_path / "ds")
    secret = tmp_path / "outside.png"
    Image.new("RGB", (4, 4)).save(secret)
    if kind == "absolute":
        bad = str(secret)
    elif kind == "dotdot":
        bad = "../outside.png"
    else:
        (tmp_path / "ds" / "img" / "link.png").symlink_to(secret)
        bad = "img/link.png"
    replace_path(path, 2, bad)
    with pytest.raises(DataError) as err:
        read_metadata_csv(path)
    assert bad in str(err.value) and "refused" in str(err.value)


def test_symlink_inside_the_dataset_is_fine(tmp_path):
    path = write_folder(tmp_path / "ds")
    (tmp_path / "ds" / "img" / "alias.png").symlink_to(tmp_path / "ds" / "img" / "2.png")
    replace_path(path, 2, "img/alias.png")
    assert len(read_metadata_csv(path, image_size=4).train) == 6


def test_cli_debias_non_utf8_csv_is_one_line_and_writes_nothing(tmp_path, capsys):
    path = write_folder(tmp_path / "ds")
    path.write_bytes(path.read_bytes() + b"img/0.png,0,0,\xff\n")
    out = tmp_path / "out"
    code, _, err = cli(["debias", "sebra", "--dataset", "csv", "--data", path, "--out", out], capsys)
    one_line_error(code, err, "metadata.csv", "UTF-8")
    nothing_written(out)


def test_cli_debias_path_escape_is_one_line(tmp_path, capsys):
    path = write_folder(tmp_path / "ds")
    replace_path(path, 0, "../../etc/passwd")
    out = tmp_path / "out"
    code, _, err = cli(
        ["debias", "baseline", "--method", "erm", "--dataset", "csv", "--data", path, "--out", out], capsys
    )
    one_line_error(code, err, "../../etc/passwd", "refused")
    nothing_written(out)


# -- 4. other bad CLI input; outputs checked before work -----------------------------------------------
@pytest.mark.parametrize(
    "extra, needles",
    [
        (["--seeds", "1000000000"], ["--seeds=1000000000"]),
        (["--seed", str(2**40)], ["--seed=1099511627776"]),
        (["--threads", "0"], ["--threads=0"]),
        (["--hidden", "100000000"], ["model.hidden=100000000"]),
        (["--epochs", "10000000000"], ["epochs=10000000000"]),
        (["--image-size", "100000", "--dataset", "csv"], ["image_size=100000"]),
        (["--device", "cuda:42"], ["cuda:42"]),
        (["--model", "resnet18", "--weights", "/nonexistent/r18.safetensors"], []),
        (["--data-seed", "-1"], ["seed=-1"]),
    ],
)
def test_cli_debias_nonsense_options_are_one_line_before_any_work(
    tmp_path, capsys, monkeypatch, extra, needles
):
    import slimkit.debias

    if "--dataset" in extra:
        extra = [*extra, "--data", write_folder(tmp_path / "ds")]
    if "--weights" in extra:
        needles = ["slimkit[vision]"] if _no_torchvision() else ["r18.safetensors"]

    def no_training(*a, **k):
        raise AssertionError("training started before the options were checked")

    monkeypatch.setattr(slimkit.debias, "run_seeds", no_training)
    out = tmp_path / "out"
    code, _, err = cli(["debias", "sebra", *extra, "--out", out], capsys)
    one_line_error(code, err, *needles)
    nothing_written(out)


def _no_torchvision() -> bool:
    import importlib.util

    return importlib.util.find_spec("torchvision") is None


def test_colored_digits_train_copies_are_capped():
    from slimkit.debias import ColoredDigitsConfig

    with pytest.raises(ConfigError, match="train_copies=1000000"):
        ColoredDigitsConfig(train_copies=1_000_000)


def test_jtt_upweight_is_capped():
    from slimkit.debias import JTTConfig

    with pytest.raises(ConfigError, match="upweight=1000000000"):
        JTTConfig(upweight=10**9)


def _out_cases(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "a-file").write_text("user data")
    (tmp_path / "user-dir").mkdir()
    (tmp_path / "user-dir" / "thesis.tex").write_text("user data")
    return {
        "a file": tmp_path / "a-file",
        "under a file": tmp_path / "a-file" / "out",
        "a directory slimkit did not write": tmp_path / "user-dir",
        "the current directory": Path("."),
    }


@pytest.mark.parametrize(
    "case, needle",
    [
        ("a file", "not a directory"),
        ("under a file", "is a file"),
        ("a directory slimkit did not write", "--overwrite"),
        ("the current directory", "current directory"),
    ],
)
@pytest.mark.parametrize("command", ["ladling", "sebra"])
def test_unwritable_out_fails_before_any_work_and_loses_no_data(
    tmp_path, capsys, monkeypatch, case, needle, command
):
    import slimkit.debias
    import slimkit.graph

    def no_work(*a, **k):
        raise AssertionError("work started before --out was checked")

    monkeypatch.setattr(slimkit.graph, "load_dataset", no_work)
    monkeypatch.setattr(slimkit.debias, "run_seeds", no_work)
    monkeypatch.setattr(slimkit.debias, "colored_digits", no_work)
    monkeypatch.chdir(tmp_path)
    out = _out_cases(tmp_path)[case]
    args = ["graph", "ladling", "--dataset", "karate"] if command == "ladling" else ["debias", "sebra"]
    code, _, err = cli([*args, "--out", out], capsys)
    one_line_error(code, err, needle)
    assert (tmp_path / "a-file").read_text() == "user data"
    assert (tmp_path / "user-dir" / "thesis.tex").read_text() == "user data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "user-dir"]


def test_out_may_not_be_the_dataset_directory(tmp_path, capsys, monkeypatch):
    import slimkit.graph

    root = tmp_path / "data"
    write_planetoid(root / "Cora" / "raw")
    before = listing(root)
    monkeypatch.setattr(slimkit.graph, "load_dataset", lambda *a, **k: pytest.fail("loaded"))
    for out in (root / "Cora", root):
        code, _, err = cli(["graph", "ladling", "--dataset", f"planetoid:{root}/Cora", "--out", out], capsys)
        one_line_error(code, err, "input")
    path = write_folder(tmp_path / "ds")
    code, _, err = cli(
        ["debias", "sebra", "--dataset", "csv", "--data", path, "--out", tmp_path / "ds"], capsys
    )
    one_line_error(code, err, "input")
    assert listing(root) == before and (tmp_path / "ds" / "metadata.csv").is_file()


def test_read_only_out_parent_fails_before_work(tmp_path, capsys):
    with read_only_dir(tmp_path / "ro") as parent:
        code, _, err = cli(["graph", "ladling", "--dataset", "karate", "--out", parent / "o"], capsys)
        one_line_error(code, err, "not writable")


def test_every_error_here_is_a_slimkit_error():
    for cls in (ConfigError, DataError):
        assert issubclass(cls, SlimkitError)
