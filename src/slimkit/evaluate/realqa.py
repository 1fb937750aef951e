"""Real-knowledge questions built from data a package ships: ``countries:`` (capitals, currencies, ...).

A real model cannot be evaluated on the built-in fictional world, and the public QA sets (FreebaseQA,
TriviaQA) cannot be downloaded here. The ``countryinfo`` package (MIT licence, ~2 MB, no
dependencies) ships a JSON record per country and territory -- capital, currencies (ISO 4217
codes), languages (ISO 639-1 codes), region, population, provinces -- and ``pycountry`` (LGPL-2.1)
ships the ISO 4217 and ISO 639 names those codes stand for. ``countries:`` turns them into closed-book
factoid and multiple-choice records in slimkit's formats, with the facts as the packages state them
(nothing is invented or corrected here)::

    slimkit eval smollm2-135m --suite kick --data countries: --chat-template on --limit 200 --out r.json
    load_task_data("countries:capital,currency", n_options=(4,))

Relations (the spec's rest selects some: ``countries:capital,language``; empty = all):

===================  =====================================================  ==========  ===========
relation             factoid question (mc asks the same)                    answers     needs
===================  =====================================================  ==========  ===========
``capital``          What is the capital of {country}?                      capital     countryinfo
``capital_of``       {capital} is the capital of which country?             name + alt  countryinfo
                     (skipped where one name contains the other:
                     Mexico City / Mexico)
``region``           (mc only) In which part of the world is {country}?      region      countryinfo
``province``         Which country has an administrative region called       name + alt  countryinfo
                     {province}? (one province per country, seeded, among
                     names no other country, capital or country shares)
``currency``         What is the currency of {country}?                     names,      pycountry
                                                                            codes
``language``         What language is spoken in {country}?                  any listed  pycountry
===================  =====================================================  ==========  ===========

Countries without a capital or population are left out. ``alt`` = the package's ``altSpellings``
longer than three characters (``"French Republic"``; two- and three-letter codes are not answers).

Tags (difficulty axes): ``relation``; ``popularity_half`` (``popular`` = population above the
median of the countries used), ``popularity_quartile`` (``q1`` least to ``q4`` most populous),
``population``; ``region``; on mc records ``n_options``. A well-known country's facts are popular
facts: population stands in for how often a model read about it.

Splits: ``dev`` countries (default 16, seeded) are held out of the test records and returned as
``"factoid:fewshot"`` / ``"mc:fewshot"``, the dev split few-shot examples come from, so a shot never
names a test country. Test records are shuffled (seeded), so ``--limit N`` samples every relation
and popularity level. Multiple-choice distractors are other countries' values of the same relation
(distinct after normalisation), ``n_options`` cycling over ``(2, 4, 8)`` (at most the number of
distinct values: 5 regions).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

from slimkit.core.errors import ConfigError, DataError
from slimkit.evaluate.metrics import normalize_answer
from slimkit.evaluate.readers import FEWSHOT_SPLIT, TaskData, register_reader

Record = dict[str, Any]
RELATIONS = ("capital", "capital_of", "region", "province", "currency", "language")
FACTOID_RELATIONS = ("capital", "capital_of", "province", "currency", "language")
MC_RELATIONS = ("capital", "capital_of", "region", "currency", "language")
QUESTIONS = {
    "capital": "What is the capital of {country}?",
    "capital_of": "{capital} is the capital of which country?",
    "region": "In which part of the world is {country}?",
    "province": "Which country has an administrative region called {province}?",
    "currency": "What is the currency of {country}?",
    "language": "What language is spoken in {country}?",
}
DEFAULT_OPTIONS = (2, 4, 8)
INSTALL = "pip install countryinfo==1.0.1 pycountry  (or: pip install 'slimkit[eval]')"


@register_reader(
    "countries",
    task_options={
        "factoid": {
            "max_new_tokens": 24,
            "headline_metric": "contains",
            "baseline_tag": "relation",
            "group_by_tags": ["popularity_quartile", "relation"],
        },
        "mc": {"group_by_tags": ["n_options", "popularity_quartile", "relation"]},
    },
)
def read_countries(
    rest: str = "",
    *,
    seed: int = 0,
    dev: int = 16,
    n_options: Sequence[int] = DEFAULT_OPTIONS,
    limit: int | None = None,
) -> TaskData:
    """``countries:[RELATION,...]`` -> ``{"factoid", "mc", "factoid:fewshot", "mc:fewshot"}`` (module docstring).

    Args:
        rest: comma-separated relations; empty = all of :data:`RELATIONS` the installed packages allow.
        seed: picks the dev countries, the provinces, the distractors and the record order. Default: 0.
        dev: countries held out as the few-shot dev split, >= 0. Default: 16.
        n_options: option counts mc records cycle through, each >= 2. Default: (2, 4, 8).
        limit: at most this many test records per task. Default: all.

    Raises:
        DataError: ``countryinfo`` is not installed, or a relation needs ``pycountry`` and it is not.
        ConfigError: an unknown relation or a bad option.
    """
    relations = _relations(rest)
    if not isinstance(dev, int) or isinstance(dev, bool) or dev < 0:
        raise ConfigError(f"countries: dev must be an integer >= 0, got {dev!r}")
    options = (n_options,) if isinstance(n_options, int) else tuple(n_options)
    if not options or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 2 for n in options):
        raise ConfigError(f"countries: n_options must be integers >= 2, got {n_options!r}")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ConfigError(f"countries: limit must be an integer >= 1, got {limit!r}")
    countries = load_countries()
    names = _code_names()
    needs_names = [r for r in relations if r in ("currency", "language")]
    if needs_names and names is None:
        if rest:
            raise DataError(f"countries: relation(s) {needs_names} need the pycountry package: {INSTALL}")
        relations = tuple(r for r in relations if r not in needs_names)
    rng = random.Random(seed)
    held = set(rng.sample(sorted(countries), min(dev, len(countries))))
    facts = {rel: _facts(rel, countries, names, rng) for rel in relations}

    out: TaskData = {}
    for task, wanted in (("factoid", FACTOID_RELATIONS), ("mc", MC_RELATIONS)):
        test: list[Record] = []
        shots: list[Record] = []
        for k, rel in enumerate(r for r in relations if r in wanted):
            for i, (code, fact) in enumerate(sorted(facts[rel].items())):
                if task == "factoid":
                    record = _factoid(rel, code, fact, countries[code])
                else:
                    n = options[(i + k) % len(options)]
                    record = _mc(
                        rel, code, fact, facts[rel], countries[code], n, random.Random(f"{seed}:{rel}:{code}")
                    )
                    if record is None:
                        continue
                (shots if code in held else test).append(record)
        random.Random(f"{seed}:{task}").shuffle(test)
        if test:
            out[task] = test[:limit] if limit is not None else test
            if shots:
                out[task + FEWSHOT_SPLIT] = shots
    if not out:
        raise DataError(f"countries:{rest}: no questions (relations {list(relations)})")
    return out


# -- the packages' data ----------------------------------------------------------------------------------
def load_countries() -> dict[str, dict[str, Any]]:
    """ISO alpha-2 -> ``{name, alt, capital, currencies, languages, region, population, provinces,
    popularity_half, popularity_quartile}`` for every country with a capital and a population.

    Raises:
        DataError: ``countryinfo`` is not installed.
    """
    try:
        from countryinfo import CountryInfo
    except ImportError:
        raise DataError(f"countries: needs the countryinfo package: {INSTALL}") from None
    out: dict[str, dict[str, Any]] = {}
    for info in CountryInfo.all().values():
        code = (info.get("ISO") or {}).get("alpha2")
        capital, population = info.get("capital"), info.get("population")
        if not code or not isinstance(capital, str) or not capital.strip() or not population:
            continue
        out[code] = {
            "name": info["name"].strip(),
            "alt": [a.strip() for a in info.get("altSpellings") or [] if len(a.strip()) > 3],
            "capital": capital.strip(),
            "currencies": list(info.get("currencies") or []),
            "languages": list(info.get("languages") or []),
            "region": (info.get("region") or "").strip(),
            "population": int(population),
            "provinces": [p.strip() for p in info.get("provinces") or [] if isinstance(p, str)],
        }
    ranked = sorted(out, key=lambda c: (out[c]["population"], c))
    for rank, code in enumerate(ranked):
        out[code]["popularity_half"] = "popular" if rank >= len(ranked) // 2 else "rare"
        out[code]["popularity_quartile"] = f"q{1 + 4 * rank // len(ranked)}"
    return out


def _code_names() -> dict[str, dict[str, str]] | None:
    """``{"currency": {ISO 4217: name}, "language": {ISO 639-1: name}}`` from pycountry, or None."""
    try:
        import pycountry
    except ImportError:
        return None
    currencies = {c.alpha_3: c.name for c in pycountry.currencies}
    languages = {lang.alpha_2: lang.name for lang in pycountry.languages if hasattr(lang, "alpha_2")}
    return {"currency": currencies, "language": languages}


def _relations(rest: str) -> tuple[str, ...]:
    if not rest.strip():
        return RELATIONS
    chosen = tuple(dict.fromkeys(r.strip() for r in rest.split(",") if r.strip()))
    unknown = [r for r in chosen if r not in RELATIONS]
    if unknown:
        raise ConfigError(f"countries:{rest}: unknown relation(s) {unknown}; known: {list(RELATIONS)}")
    return chosen


def _facts(
    rel: str,
    countries: dict[str, dict[str, Any]],
    names: dict[str, dict[str, str]] | None,
    rng: random.Random,
) -> dict[str, dict[str, Any]]:
    """code -> ``{"subject": what the question names, "answers": [gold, aliases...]}`` for ``rel``."""
    facts: dict[str, dict[str, Any]] = {}
    if rel == "province":
        taken = Counter(p for c in countries.values() for p in set(c["provinces"]))
        blocked = {normalize_answer(c[k]) for c in countries.values() for k in ("name", "capital")}
    for code, c in countries.items():
        country = [c["name"], *c["alt"]]
        if rel == "capital":
            facts[code] = {"subject": c["name"], "answers": [c["capital"]]}
        elif rel == "capital_of":
            cap, name = normalize_answer(c["capital"]), normalize_answer(c["name"])
            if cap and name and cap not in name and name not in cap:
                facts[code] = {"subject": c["capital"], "answers": country}
        elif rel == "region" and c["region"]:
            facts[code] = {"subject": c["name"], "answers": [c["region"]]}
        elif rel == "province":
            unique = [
                p for p in c["provinces"]
                if taken[p] == 1 and len(p) >= 4 and normalize_answer(p) not in blocked
                and normalize_answer(c["name"]) not in normalize_answer(p)
            ]  # fmt: skip
            if unique:
                facts[code] = {"subject": rng.choice(sorted(unique)), "answers": country}
        elif rel in ("currency", "language") and names is not None:
            codes = c["currencies"] if rel == "currency" else c["languages"]
            named = [names[rel][x] for x in codes if x in names[rel] and "(" not in names[rel][x]]
            if named:
                aliases = named + ([x for x in codes if x in names[rel]] if rel == "currency" else [])
                facts[code] = {"subject": c["name"], "answers": list(dict.fromkeys(aliases))}
    return facts


def _tags(rel: str, country: dict[str, Any]) -> dict[str, Any]:
    return {
        "relation": rel,
        "popularity_half": country["popularity_half"],
        "popularity_quartile": country["popularity_quartile"],
        "population": country["population"],
        "region": country["region"] or "unknown",
    }


def _question(rel: str, fact: dict[str, Any]) -> str:
    key = {"capital_of": "capital", "province": "province"}.get(rel, "country")
    return QUESTIONS[rel].format(**{key: fact["subject"]})


def _factoid(rel: str, code: str, fact: dict[str, Any], country: dict[str, Any]) -> Record:
    return {
        "id": f"countries-{rel}-{code}",
        "question": _question(rel, fact),
        "answers": list(fact["answers"]),
        "tags": _tags(rel, country),
    }


def _mc(
    rel: str,
    code: str,
    fact: dict[str, Any],
    every: dict[str, dict[str, Any]],
    country: dict[str, Any],
    n: int,
    rng: random.Random,
) -> Record | None:
    gold = fact["answers"][0]
    gold_norms = {normalize_answer(a) for a in fact["answers"]}
    pool = sorted({f["answers"][0] for f in every.values()} - {gold})
    pool = [p for p in pool if normalize_answer(p) not in gold_norms]
    # distinct after normalisation, so no two options are the same answer
    seen: dict[str, str] = {}
    for p in pool:
        seen.setdefault(normalize_answer(p), p)
    pool = sorted(seen.values())
    n = min(n, len(pool) + 1)
    if n < 2:
        return None
    options = [gold, *rng.sample(pool, n - 1)]
    rng.shuffle(options)
    return {
        "id": f"countries-mc-{rel}-{code}",
        "question": _question(rel, fact),
        "options": options,
        "answer_index": options.index(gold),
        "tags": {**_tags(rel, country), "n_options": n},
    }
