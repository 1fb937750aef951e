"""slimkit.core: configs, registry, targeting, atomic io, seeding."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from slimkit.core import (
    Config,
    ConfigError,
    ModelLoadError,
    Registry,
    RegistryError,
    SlimkitError,
    TargetError,
    atomic_dir,
    atomic_write,
    check_choice,
    check_output_file,
    check_positive,
    check_range,
    load_tensors,
    read_json,
    rng_state,
    save_tensors,
    seed_everything,
    select_modules,
    set_rng_state,
    track,
    write_json,
)
from slimkit.core.io import OUTPUT_MARKER


# Config subclasses register by class name process-wide, hence the distinctive names.
@dataclasses.dataclass(frozen=True)
class CoreTestAllocation(Config):
    m: int = 5
    lmbda: float = 0.08

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("m", self.m)
        check_range("lmbda", self.lmbda, 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class CoreTestPrune(Config):
    VERSION = 2
    sparsity: float = 0.5
    pattern: str = "unstructured"
    targets: tuple[str, ...] = ("Linear",)
    allocation: CoreTestAllocation | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("sparsity", self.sparsity, 0.0, 1.0, hi_inclusive=False)
        check_choice("pattern", self.pattern, ["unstructured", "2:4"])


@dataclasses.dataclass(frozen=True)
class CoreTestWanda(CoreTestPrune):
    pass


@dataclasses.dataclass(frozen=True)
class CoreTestOther(Config):
    pass


# -- Config ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "needles"),
    [
        ({"sparsity": 1.0}, ["sparsity=1.0", "[0.0, 1.0)"]),
        ({"sparsity": -0.1}, ["sparsity=-0.1", "[0.0, 1.0)"]),
        ({"sparsity": float("nan")}, ["sparsity", "NaN"]),
        ({"sparsity": "half"}, ["CoreTestPrune.sparsity", "'half'"]),
        ({"sparsity": True}, ["CoreTestPrune.sparsity", "True"]),
        ({"pattern": "3:7"}, ["pattern='3:7'", "unstructured", "2:4"]),
    ],
)
def test_config_validation_names_the_field_and_range(kwargs, needles):
    with pytest.raises(ConfigError) as err:
        CoreTestPrune(**kwargs)
    for needle in needles:
        assert needle in str(err.value)


def test_nested_config_validation():
    with pytest.raises(ConfigError, match=r"m=0 is outside the allowed range \(0, inf\)"):
        CoreTestAllocation(m=0)
    with pytest.raises(ConfigError, match="lmbda=2"):
        CoreTestPrune(allocation=CoreTestAllocation(lmbda=2.0))


def test_config_is_frozen_and_replace_validates():
    cfg = CoreTestPrune()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.sparsity = 0.9  # type: ignore[misc]
    assert cfg.replace(sparsity=0.7).sparsity == 0.7
    with pytest.raises(ConfigError, match="sparsity"):
        cfg.replace(sparsity=3.0)


def test_config_version_defaults_to_class_version():
    assert CoreTestPrune().version == 2
    assert CoreTestAllocation().version == 1


@pytest.mark.parametrize("fmt", ["json", "yaml", "dict"])
def test_config_round_trips_with_nested_config(fmt):
    cfg = CoreTestWanda(
        sparsity=0.25, pattern="2:4", targets=("re:mlp", "Linear"), allocation=CoreTestAllocation(m=3)
    )
    if fmt == "json":
        back = Config.from_json(cfg.to_json())
    elif fmt == "yaml":
        back = Config.from_yaml(cfg.to_yaml())
    else:
        back = Config.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg
    assert type(back) is CoreTestWanda and type(back.allocation) is CoreTestAllocation
    assert isinstance(back.targets, tuple)


def test_config_to_dict_carries_type_and_version():
    data = CoreTestPrune(allocation=CoreTestAllocation()).to_dict()
    assert data["type"] == "CoreTestPrune" and data["version"] == 2
    assert data["allocation"]["type"] == "CoreTestAllocation"


def test_config_load_from_files(tmp_path):
    cfg = CoreTestPrune(sparsity=0.3)
    (tmp_path / "c.yaml").write_text(cfg.to_yaml())
    (tmp_path / "c.json").write_text(cfg.to_json())
    assert Config.load(tmp_path / "c.yaml") == cfg == Config.load(tmp_path / "c.json")
    # hand-written YAML may leave out the type when the class is known
    (tmp_path / "short.yaml").write_text("sparsity: 0.6\n")
    assert CoreTestPrune.load(tmp_path / "short.yaml") == CoreTestPrune(sparsity=0.6)
    with pytest.raises(ConfigError, match="not found"):
        Config.load(tmp_path / "missing.yaml")


def test_unknown_key_lists_the_known_ones():
    with pytest.raises(ConfigError) as err:
        CoreTestPrune.from_dict({"sparsity": 0.5, "sparsty": 0.5})
    message = str(err.value)
    assert "sparsty" in message and "sparsity" in message and "pattern" in message


def test_unknown_and_wrong_types_are_refused():
    with pytest.raises(ConfigError, match="unknown config type 'NoSuchConfig'"):
        Config.from_dict({"type": "NoSuchConfig"})
    with pytest.raises(ConfigError, match="is not a CoreTestPrune"):
        CoreTestPrune.from_dict({"type": "CoreTestOther"})
    with pytest.raises(ConfigError, match="no 'type' key"):
        Config.from_dict({"sparsity": 0.5})
    with pytest.raises(ConfigError, match="mapping"):
        Config.from_dict(["not", "a", "dict"])  # type: ignore[arg-type]


def test_malformed_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("type: CoreTestPrune\nsparsity: [0.5\npattern: 2:4\n")
    with pytest.raises(ConfigError) as err:
        Config.load(path)
    message = str(err.value)
    assert "malformed YAML" in message and str(path) in message and "line" in message
    with pytest.raises(ConfigError, match="malformed JSON"):
        Config.from_json("{")


def test_newer_version_is_refused():
    data = CoreTestPrune().to_dict()
    data["version"] = 3
    with pytest.raises(ConfigError, match=r"version: 3 is not supported.*1\.\.2"):
        Config.from_dict(data)
    data["version"] = 1  # older versions still read
    assert Config.from_dict(data).version == 1


def test_config_errors_are_slimkit_value_errors():
    with pytest.raises(SlimkitError):
        CoreTestPrune(sparsity=2.0)
    assert issubclass(ConfigError, ValueError)


# -- Registry --------------------------------------------------------------------------------------------------
def test_registry_lookup_by_type_instance_name_and_mro():
    registry: Registry[str] = Registry("pruning method")
    registry.register(CoreTestPrune, name="prune")("prune-handler")
    registry.register(CoreTestAllocation)("alloc-handler")
    assert registry.lookup(CoreTestPrune()) == "prune-handler"
    assert registry.lookup(CoreTestPrune) == "prune-handler"
    assert registry.lookup(CoreTestWanda()) == "prune-handler"  # a subclass resolves through its MRO
    assert registry.config_for("prune") is CoreTestPrune
    assert registry.names() == ["prune"]
    assert CoreTestWanda() in registry and CoreTestOther() not in registry
    assert len(registry) == 2

    registry.register(CoreTestWanda)("wanda-handler")
    assert registry.lookup(CoreTestWanda()) == "wanda-handler"  # the most specific wins


def test_registry_unknown_lists_known():
    registry: Registry[str] = Registry("pruning method")
    registry.register(CoreTestPrune, name="prune")("h")
    with pytest.raises(RegistryError) as err:
        registry.lookup(CoreTestOther())
    assert "CoreTestOther" in str(err.value) and "CoreTestPrune" in str(err.value)
    with pytest.raises(RegistryError) as err:
        registry.config_for("wanda")
    assert str(err.value) == "unknown pruning method 'wanda'; known: ['prune']"


def test_registry_refuses_duplicates_and_non_configs():
    registry: Registry[str] = Registry("thing")
    registry.register(CoreTestPrune)("a")
    with pytest.raises(RegistryError, match="already registered"):
        registry.register(CoreTestPrune)("b")
    with pytest.raises(TypeError):
        registry.register(dict)  # type: ignore[arg-type]


# -- targeting -------------------------------------------------------------------------------------------------
class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q_proj = nn.Linear(4, 4)
        self.up_proj = nn.Linear(4, 8)
        self.norm = nn.LayerNorm(4)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([_Block(), _Block()])
        self.lm_head = nn.Linear(4, 10)


def test_targets_exact_class_and_regex():
    net = _Net()
    assert list(select_modules(net, ["layers.0.q_proj"])) == ["layers.0.q_proj"]
    assert list(select_modules(net, ["LayerNorm"])) == ["layers.0.norm", "layers.1.norm"]
    assert list(select_modules(net, [r"re:up_proj$"])) == ["layers.0.up_proj", "layers.1.up_proj"]
    linears = select_modules(net, ["Linear"])
    assert list(linears) == [
        "layers.0.q_proj",
        "layers.0.up_proj",
        "layers.1.q_proj",
        "layers.1.up_proj",
        "lm_head",
    ]
    assert linears["lm_head"] is net.lm_head


def test_ignore_wins_over_targets():
    net = _Net()
    selected = select_modules(net, ["Linear"], ignore=["lm_head", r"re:^layers\.1\."])
    assert list(selected) == ["layers.0.q_proj", "layers.0.up_proj"]


def test_candidates_filter_applies_first():
    net = _Net()
    in_blocks = select_modules(net, ["Linear"], candidates=lambda name, m: name.startswith("layers."))
    assert "lm_head" not in in_blocks and len(in_blocks) == 4
    with pytest.raises(TargetError, match="lm_head"):
        select_modules(net, ["lm_head"], candidates=lambda name, m: name.startswith("layers."))


def test_target_matching_nothing_is_an_error():
    with pytest.raises(TargetError) as err:
        select_modules(_Net(), ["Linear", "re:k_proj"])
    assert "'re:k_proj'" in str(err.value)
    with pytest.raises(TargetError, match="invalid regex"):
        select_modules(_Net(), ["re:(unclosed"])
    with pytest.raises(TargetError, match="lists of patterns"):
        select_modules(_Net(), "Linear")  # type: ignore[arg-type]


# -- atomic io ---------------------------------------------------------------------------------------------------
def test_atomic_write_leaves_no_file_on_exception(tmp_path):
    path = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_write(path) as f:
        f.write("partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_old_file_on_exception_and_replaces_on_success(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(path) as f:
        f.write("new")
        raise RuntimeError("boom")
    assert path.read_text() == "old" and list(tmp_path.iterdir()) == [path]
    with atomic_write(path) as f:
        f.write("new")
    assert path.read_text() == "new" and list(tmp_path.iterdir()) == [path]


def test_atomic_dir_leaves_nothing_on_exception(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "half.json").write_text("{")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_replaces_on_success_only(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
        raise RuntimeError("boom")
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    with atomic_dir(out, overwrite=True) as tmp:
        assert tmp != out
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARKER, "new.txt"]
    with atomic_dir(out) as tmp:  # slimkit wrote it: replaced without --overwrite
        (tmp / "newer.txt").write_text("newer")
    assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARKER, "newer.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_atomic_dir_refusals(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SlimkitError, match="not a directory"), atomic_dir(tmp_path / "file"):
        pass
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    with pytest.raises(SlimkitError, match="did not write"), atomic_dir(kept):
        pass
    model = kept / "model"
    model.mkdir()
    for out, protect in ((model, (model,)), (kept, (model,))):
        with pytest.raises(SlimkitError, match="input"), atomic_dir(out, overwrite=True, protect=protect):
            pass
    monkeypatch.chdir(kept)
    for out in ("", ".", tmp_path):
        with pytest.raises(SlimkitError, match="empty|current directory"), atomic_dir(out, overwrite=True):
            pass
    with pytest.raises(SlimkitError, match="is a file"), atomic_dir(tmp_path / "file" / "sub"):
        pass
    assert (kept / "notes.txt").read_text() == "mine" and sorted(p.name for p in kept.iterdir()) == [
        "model",
        "notes.txt",
    ]


def test_atomic_dir_follows_a_symlinked_output(tmp_path):
    real = tmp_path / "real"
    link = tmp_path / "link"
    with atomic_dir(real) as tmp:
        (tmp / "a.txt").write_text("1")
    link.symlink_to(real, target_is_directory=True)
    with atomic_dir(link) as tmp:
        (tmp / "b.txt").write_text("2")
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert sorted(p.name for p in real.iterdir()) == [OUTPUT_MARKER, "b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]  # nothing stray
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(SlimkitError, match="does not exist"), atomic_dir(tmp_path / "dangling"):
        pass


def test_check_output_file(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "model").mkdir()
    assert check_output_file(tmp_path / "new" / "r.json") == tmp_path / "new" / "r.json"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    for bad, needle in (
        ("", "empty"),
        (tmp_path, "directory"),
        (tmp_path / "file" / "r.json", "is a file"),
    ):
        with pytest.raises(SlimkitError, match=needle):
            check_output_file(bad)
    with pytest.raises(SlimkitError, match="input"):
        check_output_file(tmp_path / "model" / "config.json", protect=(tmp_path / "model",))


def test_json_round_trip_and_errors(tmp_path):
    data = {"a": 1, "path": Path("x/y"), "t": torch.tensor(0.5), "cfg": CoreTestAllocation()}
    write_json(tmp_path / "d.json", data)
    back = read_json(tmp_path / "d.json")
    assert back == {"a": 1, "path": "x/y", "t": 0.5, "cfg": CoreTestAllocation().to_dict()}
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SlimkitError, match="malformed JSON"):
        read_json(tmp_path / "bad.json")
    with pytest.raises(SlimkitError, match="not found"):
        read_json(tmp_path / "none.json")


def test_tensors_round_trip_and_corrupt_file(tmp_path):
    base = torch.arange(6.0).reshape(2, 3)
    tensors = {"w": base, "w_t": base.t(), "mask": base > 2}  # a non-contiguous view is fine
    save_tensors(tmp_path / "t.safetensors", tensors, metadata={"k": "v"})
    back = load_tensors(tmp_path / "t.safetensors")
    assert all(torch.equal(back[k], v) for k, v in tensors.items())
    data = (tmp_path / "t.safetensors").read_bytes()
    (tmp_path / "t.safetensors").write_bytes(data[:-5])
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        load_tensors(tmp_path / "t.safetensors")
    with pytest.raises(ModelLoadError, match="not found"):
        load_tensors(tmp_path / "none.safetensors")


# -- seeding -----------------------------------------------------------------------------------------------------
def _draw() -> tuple[float, float, torch.Tensor]:
    return random.random(), float(np.random.rand()), torch.rand(3)


def test_seed_everything_is_deterministic():
    seed_everything(123)
    a = _draw()
    seed_everything(123)
    b = _draw()
    seed_everything(124)
    c = _draw()
    assert a[:2] == b[:2] and torch.equal(a[2], b[2])
    assert a[0] != c[0] and not torch.equal(a[2], c[2])


def test_rng_state_round_trip():
    seed_everything(7)
    _draw()
    state = rng_state()
    first = _draw()
    _draw()
    set_rng_state(state)
    again = _draw()
    assert first[:2] == again[:2] and torch.equal(first[2], again[2])


def test_track_yields_everything():
    assert list(track(range(5), "count")) == [0, 1, 2, 3, 4]
