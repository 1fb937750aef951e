"""Every shipped YAML config is loaded (DESIGN.md convention 7): the repository's configs/ and the
copies inside the package (``slimkit/configs``), which must be the same files."""

from __future__ import annotations

import glob
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# glob.glob, not Path.rglob: configs/study links to the package's copy, and rglob does not follow links
SHIPPED = sorted(
    Path(p).relative_to(REPO / "configs")
    for p in glob.glob(str(REPO / "configs" / "**" / "*.yaml"), recursive=True)
)


def _load(path: Path) -> object:
    """Load one shipped YAML the way its command reads it (by the folder it lives in)."""
    if path.parent.name == "study":
        from slimkit.pipelines.study import load_sweep

        return load_sweep(path)
    if path.name.startswith("idea_prune"):
        from slimkit.pipelines.idea_prune import load_idea_config

        return load_idea_config(path)
    from slimkit.train.recipe import load_recipe

    return load_recipe(path)


def test_there_are_shipped_configs():
    assert Path("study/default.yaml") in SHIPPED and Path("study/real-quick.yaml") in SHIPPED


@pytest.mark.parametrize("relative", SHIPPED, ids=str)
def test_shipped_config_loads(relative):
    assert _load(REPO / "configs" / relative) is not None


def test_package_ships_the_study_sweeps():
    from slimkit.pipelines.study import load_sweep, shipped_sweeps

    shipped = shipped_sweeps()
    in_repo = {p.stem: p for p in (REPO / "configs" / "study").glob("*.yaml")}
    assert set(shipped) == set(in_repo)
    for name, resource in shipped.items():
        assert resource.read_text(encoding="utf-8") == in_repo[name].read_text(encoding="utf-8")
        by_name, by_path = load_sweep(name), load_sweep(in_repo[name])
        assert [(v.name, v.config) for v in by_name.variants] == [
            (v.name, v.config) for v in by_path.variants
        ]


def test_every_study_sweep_builds_valid_variants():
    from slimkit.compress import COMPRESSORS
    from slimkit.pipelines.study import load_sweep

    for path in sorted((REPO / "configs" / "study").glob("*.yaml")):
        sweep = load_sweep(path)
        assert sweep.description, path
        assert sweep.variants[0].name == "dense" and len(sweep.variants) > 1, path
        for v in sweep.variants[1:]:
            assert v.config in COMPRESSORS, (path, v.name)


def test_study_sweeps_name_registered_sources():
    """A sweep's ``scheme:`` specs (python-docs:eval, countries:) must exist, or it fails only when run."""
    from slimkit.data.sources import source_schemes
    from slimkit.evaluate.readers import reader_names
    from slimkit.pipelines.study import load_sweep

    def scheme(spec: str | None) -> str | None:
        head = (spec or "").split(":", 1)
        return head[0] if len(head) == 2 and len(head[0]) > 1 and not Path(spec).exists() else None

    for path in sorted((REPO / "configs" / "study").glob("*.yaml")):
        sweep = load_sweep(path)
        for spec in (sweep.calibration.data, sweep.ppl.data):
            assert scheme(spec) in (None, *source_schemes()), (path, spec)
        if sweep.kick is not None:
            for spec in sweep.kick.specs() if sweep.kick.data is not None else ():
                assert scheme(spec) in (None, *reader_names()), (path, spec)
