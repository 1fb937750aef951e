"""Evaluation: perplexity, the LLM-KICK task suite, and the results JSON every evaluation writes.

    metrics = slimkit.evaluate(model, tok, suite="ppl", data="wiki.jsonl", seqlen=128)
    metrics |= slimkit.evaluate(model, tok, suite="kick")          # factoid, mc, retrieval, twohop, ...
    write_json("results.json", make_results("my-model", metrics, seed=0))

``evaluate`` takes any model and never imports ``slimkit.compress``: compressing and then
evaluating is a pipeline's job.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from slimkit.evaluate import trust as _trust  # noqa: E402, F401  (registers the trust suite)
from slimkit.evaluate.generation import greedy_generate
from slimkit.evaluate.kick import KICK_TASKS, KickSuiteConfig
from slimkit.evaluate.metrics import (
    contains_match,
    exact_match,
    lenient_match,
    normalize_answer,
    rouge_scores,
    token_f1,
)
from slimkit.evaluate.perplexity import PerplexityResult, PerplexityTaskConfig, perplexity
from slimkit.evaluate.results import make_results, validate_results
from slimkit.evaluate.runner import SuiteRun, evaluate, run_suite
from slimkit.evaluate.scoring import ContinuationScore, score_continuations
from slimkit.evaluate.tasks import (
    TASKS,
    FactoidTaskConfig,
    InstructTaskConfig,
    LocalJudge,
    MultipleChoiceTaskConfig,
    RetrievalTaskConfig,
    SummarizationTaskConfig,
    TaskOutput,
    TaskSkipped,
    TwoHopTaskConfig,
)

__all__ = [
    "KICK_TASKS",
    "TASKS",
    "ContinuationScore",
    "FactoidTaskConfig",
    "InstructTaskConfig",
    "KickSuiteConfig",
    "LocalJudge",
    "MultipleChoiceTaskConfig",
    "PerplexityResult",
    "PerplexityTaskConfig",
    "RetrievalTaskConfig",
    "SuiteRun",
    "SummarizationTaskConfig",
    "TaskOutput",
    "TaskSkipped",
    "TwoHopTaskConfig",
    "contains_match",
    "evaluate",
    "exact_match",
    "greedy_generate",
    "lenient_match",
    "make_results",
    "normalize_answer",
    "perplexity",
    "rouge_scores",
    "run_suite",
    "score_continuations",
    "token_f1",
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
