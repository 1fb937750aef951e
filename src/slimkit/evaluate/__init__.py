"""Evaluation: perplexity, factoid QA, and the results JSON every evaluation writes.

    metrics = slimkit.evaluate(model, tok, suite="ppl", data="wiki.jsonl", seqlen=128)
    metrics |= slimkit.evaluate(model, tok, suite="factoid", data="factoid.jsonl")
    write_json("results.json", make_results("my-model", metrics, seed=0))

``evaluate`` takes any model and never imports ``slimkit.compress``: compressing and then
evaluating is a pipeline's job.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from slimkit.evaluate.factoid import (
    FactoidTaskConfig,
    contains_match,
    evaluate_factoid,
    exact_match,
    normalize_answer,
    read_jsonl,
)
from slimkit.evaluate.generation import greedy_generate
from slimkit.evaluate.perplexity import PerplexityResult, PerplexityTaskConfig, perplexity
from slimkit.evaluate.results import make_results, validate_results
from slimkit.evaluate.tasks import SUITES, evaluate

__all__ = [
    "SUITES",
    "FactoidTaskConfig",
    "PerplexityResult",
    "PerplexityTaskConfig",
    "contains_match",
    "evaluate",
    "evaluate_factoid",
    "exact_match",
    "greedy_generate",
    "make_results",
    "normalize_answer",
    "perplexity",
    "read_jsonl",
    "validate_results",
]


class _CallableModule(types.ModuleType):
    """Lets ``slimkit.evaluate(model, tok, ...)`` work after ``import slimkit.evaluate``.

    Importing this subpackage binds the name ``slimkit.evaluate`` to the module, which would shadow
    the lazily exported function of the same name; calling the module calls the function instead.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return evaluate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
