"""countries: real-knowledge questions from the countryinfo and pycountry packages."""

from __future__ import annotations

from collections import Counter

import pytest

pytest.importorskip("countryinfo", reason="countries: needs countryinfo (the eval extra)")
pytest.importorskip("pycountry", reason="countries: needs pycountry (the eval extra)")

from slimkit.core.errors import ConfigError  # noqa: E402
from slimkit.evaluate.readers import load_task_data  # noqa: E402


@pytest.fixture(scope="module")
def data():
    return load_task_data("countries:")


def _by_id(records):
    return {r["id"]: r for r in records}


def test_questions_state_the_packages_facts(data):
    factoid, mc = _by_id(data["factoid"] + data["factoid:fewshot"]), _by_id(data["mc"] + data["mc:fewshot"])
    assert factoid["countries-capital-FR"]["question"] == "What is the capital of France?"
    assert factoid["countries-capital-FR"]["answers"] == ["Paris"]
    assert factoid["countries-capital_of-PE"]["question"] == "Lima is the capital of which country?"
    assert factoid["countries-capital_of-PE"]["answers"][0] == "Peru"
    assert factoid["countries-currency-JP"]["answers"] == ["Yen", "JPY"]
    assert "Portuguese" in factoid["countries-language-BR"]["answers"]
    assert (
        "countries-capital_of-MX" not in factoid
    )  # "Mexico City is the capital of which country?" gives it away
    question = mc["countries-mc-capital-FR"]
    assert question["options"][question["answer_index"]] == "Paris"
    assert len(set(question["options"])) == len(question["options"]) == question["tags"]["n_options"]


def test_tags_give_popularity_and_relation_axes(data):
    tags = [r["tags"] for r in data["factoid"]]
    assert set(Counter(t["relation"] for t in tags)) == {
        "capital",
        "capital_of",
        "province",
        "currency",
        "language",
    }
    assert set(t["popularity_quartile"] for t in tags) == {"q1", "q2", "q3", "q4"}
    china = _by_id(data["factoid"] + data["factoid:fewshot"])["countries-capital-CN"]["tags"]
    assert china["popularity_quartile"] == "q4" and china["popularity_half"] == "popular"
    assert {r["tags"]["n_options"] for r in data["mc"]} == {2, 4, 5, 8}  # regions: at most 5
    # shuffled: the first 200 already span every relation
    assert len({r["tags"]["relation"] for r in data["factoid"][:200]}) == 5


def test_dev_countries_never_appear_in_the_test_split(data):
    def country(record_id):
        return record_id.rsplit("-", 1)[1]

    for task in ("factoid", "mc"):
        dev = {country(r["id"]) for r in data[f"{task}:fewshot"]}
        assert dev and not dev & {country(r["id"]) for r in data[task]}
        ids = [r["id"] for r in data[task] + data[f"{task}:fewshot"]]
        assert len(ids) == len(set(ids))


def test_seeded_and_selectable(data):
    assert load_task_data("countries:") == data
    other = load_task_data("countries:capital", seed=1, dev=0, n_options=(4,), limit=10)
    assert set(other) == {"factoid", "mc"} and len(other["factoid"]) == 10
    assert {r["tags"]["n_options"] for r in other["mc"]} == {4}
    with pytest.raises(ConfigError, match="unknown relation"):
        load_task_data("countries:capitals")
    with pytest.raises(ConfigError, match="n_options"):
        load_task_data("countries:", n_options=(1,))


def test_kick_takes_its_shots_from_the_dev_split(monkeypatch):
    from slimkit.evaluate import run_suite
    from slimkit.models import tiny_tokenizer

    seen = {}
    monkeypatch.setattr(
        "slimkit.evaluate.tasks.factoid.greedy_generate",
        lambda model, tok, prompts, **kw: seen.setdefault("p", list(prompts)) and [""] * len(prompts),
    )
    run = run_suite(
        None, tiny_tokenizer(), "kick", data="countries:", tasks=("factoid",), limit=5, num_fewshot=2
    )
    dev = load_task_data("countries:")["factoid:fewshot"]
    dev_questions = {r["question"] for r in dev}
    for prompt in seen["p"]:
        shots = [block.split("\n")[0].removeprefix("Question: ") for block in prompt.split("\n\n")[:-1]]
        assert len(shots) == 2 and set(shots) <= dev_questions
    assert run.task_configs["factoid"]["fewshot_data"] == f"<{len(dev)} records>"
    assert run.task_configs["factoid"]["headline"] == "contains"
