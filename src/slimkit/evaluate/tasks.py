"""The evaluation suite registry: a suite is a config type plus a runner, found by config type.

    @SUITES.register(PerplexityTaskConfig, name="ppl")
    def run_perplexity_task(model, tokenizer, cfg) -> {task: {metric: value, "n": count}}

``slimkit.evaluate(model, tok, suite="ppl", data=..., seqlen=128)`` turns the suite name into its
config class (``SUITES.config_for``), builds and validates the config from the keyword options, and
calls the runner registered for that type. A new suite registers itself the same way; nothing here
names a suite in an ``if``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from slimkit.core.config import Config
from slimkit.core.registry import Registry
from slimkit.evaluate.factoid import FactoidTaskConfig, run_factoid_task
from slimkit.evaluate.perplexity import PerplexityTaskConfig, run_perplexity_task

Metrics = dict[str, dict[str, Any]]
TaskRunner = Callable[[nn.Module, Any, Any], Metrics]

SUITES: Registry[TaskRunner] = Registry("evaluation suite")
SUITES.register(PerplexityTaskConfig, name="ppl")(run_perplexity_task)
SUITES.register(FactoidTaskConfig, name="factoid")(run_factoid_task)


def suite_config(suite: str | Config, data: Any = None, **options: Any) -> Config:
    """The validated config for ``suite`` (a registered name, or a config used as is plus overrides).

    Raises:
        RegistryError: unknown suite name (the message lists the known ones).
        ConfigError: an unknown option or a bad value (named).
    """
    if data is not None:
        options["data"] = str(data) if isinstance(data, Path) else data
    if isinstance(suite, Config):
        # through from_dict so an unknown option gets the same named-key error as a suite name does
        return type(suite).from_dict({**suite.to_dict(), **options}) if options else suite
    return SUITES.config_for(suite).from_dict(options)


def evaluate(
    model: nn.Module, tokenizer: Any, suite: str | Config = "ppl", data: Any = None, **options: Any
) -> Metrics:
    """Run one evaluation suite on ``model``.

    Args:
        model, tokenizer: a causal LM and its tokenizer (any model; nothing is compressed here).
        suite: a suite name (``"ppl"``, ``"factoid"``, or any registered later) or a task config.
        data: the suite's data (a text source spec for ``ppl``, a JSONL path or records for
            ``factoid``); fills the config's ``data`` field.
        **options: other config fields, e.g. ``seqlen=128``, ``limit=50``.

    Returns:
        ``{task: {metric: value, ..., "n": count}}``, ready for :func:`slimkit.evaluate.make_results`.
    """
    cfg = suite_config(suite, data, **options)
    return SUITES.lookup(cfg)(model, tokenizer, cfg)
