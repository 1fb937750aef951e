"""Text sources: every format, the column suffix, the world scheme, and every bad input."""

from __future__ import annotations

import builtins
import json
import sys
import types

import pytest

from slimkit.core.errors import DataError
from slimkit.data import sources
from slimkit.data.sources import read_documents, register_source_scheme


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_txt_documents_are_blank_line_separated(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("first doc\nsecond line\n\n\n  second doc  \n \t \nthird\n")
    assert read_documents(p) == ["first doc\nsecond line", "second doc", "third"]
    assert read_documents(str(p)) == read_documents(p)


def test_jsonl_default_column_keeps_rows_as_they_are(tmp_path):
    p = _write_jsonl(tmp_path / "rows.jsonl", [{"text": "a b"}, {"text": ""}, {"text": "c"}])
    # empty rows stay: "\n\n".join(rows) must reproduce the WikiText protocol exactly
    assert read_documents(p) == ["a b", "", "c"]


def test_jsonl_column_by_keyword_and_by_suffix(tmp_path):
    p = _write_jsonl(tmp_path / "rows.jsonl", [{"body": "x", "text": "t"}, {"body": "y", "text": "u"}])
    assert read_documents(p, column="body") == ["x", "y"]
    assert read_documents(f"{p}:body") == ["x", "y"]
    with pytest.raises(DataError, match="also given"):
        read_documents(f"{p}:body", column="text")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found: .*nope.jsonl"):
        read_documents(tmp_path / "nope.jsonl")


def test_unknown_extension(tmp_path):
    p = tmp_path / "data.csv"
    p.write_text("text\nhello\n")
    with pytest.raises(DataError, match=r"data.csv: unknown text source extension '.csv'"):
        read_documents(p)


def test_missing_column_lists_available(tmp_path):
    p = _write_jsonl(tmp_path / "rows.jsonl", [{"body": "x", "title": "t"}])
    with pytest.raises(DataError, match=r"no column 'text'; available: \['body', 'title'\]"):
        read_documents(p)


@pytest.mark.parametrize("content", ["", "\n\n  \n", '{"text": "  "}\n{"text": ""}\n'])
def test_empty_source(tmp_path, content):
    p = tmp_path / ("e.jsonl" if content.startswith("{") else "e.txt")
    p.write_text(content)
    with pytest.raises(DataError, match="empty"):
        read_documents(p)


def test_malformed_jsonl_and_non_string_values(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{oops\n')
    with pytest.raises(DataError, match="bad.jsonl:2: not valid JSON"):
        read_documents(bad)
    num = _write_jsonl(tmp_path / "num.jsonl", [{"text": 3}])
    with pytest.raises(DataError, match="expected a string, got int"):
        read_documents(num)


def test_split_and_column_rejected_where_meaningless(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("hello")
    with pytest.raises(DataError, match="split"):
        read_documents(p, split="test")
    with pytest.raises(DataError, match="no columns"):
        read_documents(p, column="text")


def test_directory_that_is_not_a_saved_dataset(tmp_path):
    with pytest.raises(DataError, match="save_to_disk"):
        read_documents(tmp_path)


def _hide_module(monkeypatch, name):
    real_import = builtins.__import__

    def fake_import(mod, *args, **kwargs):
        if mod == name or mod.startswith(name + "."):
            raise ImportError(f"No module named {mod!r}")
        return real_import(mod, *args, **kwargs)

    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        monkeypatch.delitem(sys.modules, key)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.setattr(sources.importlib, "import_module", lambda mod: fake_import(mod))


def test_optional_packages_missing_say_how_to_install(tmp_path, monkeypatch):
    pq = tmp_path / "t.parquet"
    pq.write_bytes(b"PAR1")
    ds = tmp_path / "saved"
    ds.mkdir()
    (ds / "dataset_info.json").write_text("{}")
    _hide_module(monkeypatch, "pyarrow")
    _hide_module(monkeypatch, "datasets")
    with pytest.raises(DataError, match="pip install pyarrow"):
        read_documents(pq)
    with pytest.raises(DataError, match="pip install datasets"):
        read_documents(ds)


def test_parquet_roundtrip(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    p = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": ["a", "b"], "body": ["x", "y"]}), p)
    assert read_documents(p) == ["a", "b"]
    assert read_documents(f"{p}:body") == ["x", "y"]
    with pytest.raises(DataError, match=r"no column 'nope'; available: \['text', 'body'\]"):
        read_documents(p, column="nope")


def test_hf_saved_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    pa = pytest.importorskip("pyarrow")

    def dataset(texts, fingerprint):
        # an explicit fingerprint skips datasets' dill hashing, which breaks on some pyarrow versions
        return datasets.Dataset(pa.table({"text": texts}), fingerprint=fingerprint)

    d = tmp_path / "ds"
    datasets.DatasetDict({"train": dataset(["t1"], "a"), "test": dataset(["e1", "e2"], "b")}).save_to_disk(
        str(d)
    )
    assert read_documents(d, split="test") == ["e1", "e2"]
    with pytest.raises(DataError, match="choose one with split="):
        read_documents(d)
    with pytest.raises(DataError, match=r"no split 'valid'; available: \['train', 'test'\]"):
        read_documents(d, split="valid")
    single = tmp_path / "single"
    dataset(["s1", "s2"], "c").save_to_disk(str(single))
    assert read_documents(f"{single}:text") == ["s1", "s2"]
    with pytest.raises(DataError, match=r"no column 'body'; available: \['text'\]"):
        read_documents(single, column="body")


def test_world_scheme_resolves_lazily(monkeypatch):
    fake = types.ModuleType("slimkit.data.factworld")

    class World:
        def heldout_documents(self):
            return ["held out text"]

        def corpus_documents(self):
            return ["corpus text 1", "corpus text 2"]

    fake.WorldConfig = lambda: None
    fake.generate_world = lambda cfg: World()
    monkeypatch.setitem(sys.modules, "slimkit.data.factworld", fake)
    sources._default_world.cache_clear()
    try:
        assert read_documents("world:heldout") == ["held out text"]
        assert read_documents("world:corpus") == ["corpus text 1", "corpus text 2"]
        with pytest.raises(DataError, match="unknown part 'nope'"):
            read_documents("world:nope")
    finally:
        sources._default_world.cache_clear()


def test_registered_scheme(monkeypatch):
    monkeypatch.setattr(sources, "_SCHEMES", dict(sources._SCHEMES))
    register_source_scheme("mem", lambda rest: [f"doc {rest}"])
    assert read_documents("mem:7") == ["doc 7"]
    with pytest.raises(ValueError, match="already registered"):
        register_source_scheme("mem", lambda rest: [])
    register_source_scheme("blank", lambda rest: ["  "])
    with pytest.raises(DataError, match="blank:x: the text source is empty"):
        read_documents("blank:x")


# -- python-docs: -------------------------------------------------------------------------------------
def test_python_docs_parts_are_real_prose_and_disjoint():
    from pydoc_data.topics import topics

    calib, held_out = read_documents("python-docs:calib"), read_documents("python-docs:eval")
    everything = read_documents("python-docs:all")
    assert not set(calib) & set(held_out)  # calibration text is never perplexity text
    assert sorted(calib + held_out) == sorted(everything)
    assert len(everything) == len(set(topics.values()))  # a text two topics share is kept once
    assert len(held_out) >= 5 and len(calib) >= 3 * len(held_out)
    assert sum(map(len, held_out)) > 50_000 and sum(map(len, calib)) > 200_000  # characters
    assert any("assert" in d and "statement" in d for d in everything)
    # the split is by topic name alone (pinned here), so it does not move when a Python adds topics
    assert [sources.python_docs_split(n) for n in ("import", "lists", "assert", "class")] == [
        "eval",
        "eval",
        "calib",
        "calib",
    ]
    assert all(topics[n] in held_out for n in topics if sources.python_docs_split(n) == "eval")


def test_python_docs_errors(monkeypatch):
    with pytest.raises(DataError, match=r"python-docs:train: unknown part .*python-docs:calib"):
        read_documents("python-docs:train")
    with pytest.raises(DataError, match="do not apply"):
        read_documents("python-docs:eval", column="text")
    monkeypatch.setitem(sys.modules, "pydoc_data.topics", None)  # a stripped Python build
    with pytest.raises(DataError, match="no pydoc_data.topics"):
        read_documents("python-docs:calib")


# -- read_text: the text perplexity scores --------------------------------------------------------------
def test_read_text_keeps_a_txt_file_as_written(tmp_path):
    written = "  Title  \n\n\n  first para\nline two  \n \t \nsecond\n"
    p = tmp_path / "notes.txt"
    p.write_bytes(written.encode())
    assert sources.read_text(p) == sources.read_text(str(p)) == written
    assert "\n\n".join(read_documents(p)) != written  # documents are re-split and stripped


def test_read_text_joins_documents_of_other_sources(tmp_path):
    p = _write_jsonl(tmp_path / "rows.jsonl", [{"text": " = A = \n"}, {"text": ""}, {"text": "b\n"}])
    assert sources.read_text(p) == " = A = \n\n\n\n\nb\n"  # the WikiText "\n\n" join of the rows
    assert sources.read_text("python-docs:eval") == "\n\n".join(read_documents("python-docs:eval"))
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(DataError, match="no columns"):
        sources.read_text(tmp_path / "x.txt", column="text")
    (tmp_path / "blank.txt").write_text(" \n\n\t")
    with pytest.raises(DataError, match="empty"):
        sources.read_text(tmp_path / "blank.txt")
