"""The results JSON schema: make_results fills provenance; validate_results names the first problem."""

from __future__ import annotations

import copy
import json

import pytest
import torch

import slimkit
from slimkit.core.config import Config
from slimkit.core.errors import SlimkitError
from slimkit.evaluate import FactoidTaskConfig, make_results, validate_results

METRICS = {
    "ppl": {"perplexity": 12.5, "mean_nll": 2.526, "n": 4096},
    "factoid": {"exact_match": 0.5, "contains": 0.75, "n": 4, "n@popularity_half=rare": 2},
}


def test_make_results_schema():
    res = make_results("runs/tiny", METRICS, config={"sparsity": 0.5}, seed=3)
    assert res["model"] == "runs/tiny"
    prov = res["provenance"]
    assert set(prov) == {"versions", "seed", "config", "git_commit", "created"}
    assert prov["versions"]["slimkit"] == slimkit.__version__
    assert set(prov["versions"]) == {"slimkit", "torch", "transformers", "python"}
    assert prov["seed"] == 3 and prov["config"] == {"sparsity": 0.5}
    assert prov["git_commit"] is None or len(prov["git_commit"]) == 40
    assert res["metrics"] == METRICS
    assert json.loads(json.dumps(res)) == res  # plain JSON all the way down


def test_make_results_accepts_configs_and_tensor_scalars():
    metrics = {"ppl": {"perplexity": torch.tensor(3.5), "n": torch.tensor(7)}}
    res = make_results("m", metrics, config=FactoidTaskConfig(limit=3), seed=None)
    assert res["metrics"]["ppl"] == {"perplexity": 3.5, "n": 7}
    assert Config.from_dict(res["provenance"]["config"]) == FactoidTaskConfig(limit=3)


def test_make_results_rejects_bad_input():
    with pytest.raises(SlimkitError, match="not JSON-serializable"):
        make_results("m", METRICS, config={"x": object()}, seed=0)
    with pytest.raises(SlimkitError, match=r"metrics\['ppl'\]: missing 'n'"):
        make_results("m", {"ppl": {"perplexity": 1.0}}, seed=0)


def _broken(path, value):
    res = copy.deepcopy(make_results("m", METRICS, seed=0))
    node = res
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return res


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("model",), KeyError, "missing key 'model'"),
        (("model",), 3, r"results.model: must be a string"),
        (("provenance", "seed"), "0", r"provenance.seed: must be an int or null"),
        (("provenance", "git_commit"), 5, r"git_commit: must be a string or null"),
        (("provenance", "versions"), {"torch": 2}, r"provenance.versions"),
        (("provenance", "created"), KeyError, "missing key 'created'"),
        (("metrics",), [], r"results.metrics: must be an object"),
        (("metrics", "ppl"), 12.5, r"metrics\['ppl'\]: must be an object"),
        (("metrics", "ppl", "n"), -1, r"metrics\['ppl'\]\['n'\]: must be an int >= 0"),
        (("metrics", "ppl", "n"), 2.0, r"\['n'\]: must be an int >= 0"),
        (("metrics", "ppl", "n"), True, r"\['n'\]: must be an int >= 0"),
        (
            ("metrics", "factoid", "exact_match"),
            "0.5",
            r"metrics\['factoid'\]\['exact_match'\]: must be a number",
        ),
        (("metrics", "factoid", "contains"), None, r"\['contains'\]: must be a number"),
    ],
)
def test_validate_results_names_the_problem(path, value, message):
    with pytest.raises(SlimkitError, match=message):
        validate_results(_broken(path, value))


def test_validate_results_accepts_a_round_trip(tmp_path):
    from slimkit.core.io import read_json, write_json

    res = make_results("m", METRICS, seed=0)
    write_json(tmp_path / "r.json", res)
    validate_results(read_json(tmp_path / "r.json"))
    with pytest.raises(SlimkitError, match="must be a JSON object"):
        validate_results([res])


def test_evaluate_never_imports_compress():
    import subprocess
    import sys

    code = "import sys, slimkit.evaluate; assert 'slimkit.compress' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)
