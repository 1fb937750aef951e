"""Any model slimkit loads, as an lm-evaluation-harness ``LM`` (needs the ``eval`` extra).

EleutherAI's lm-evaluation-harness (``lm-eval``) asks a model three things; :class:`SlimkitLM` answers
them with slimkit's evaluation engine, so dense, pruned and (later) low-rank or quantized models run
every lm-eval task, with local data, unchanged:

* ``loglikelihood([(context, continuation)])`` -> ``[(log p(continuation | context), is_greedy)]``.
  Requests that share a context are grouped and the context is run once
  (:func:`slimkit.evaluate.scoring.score_token_requests`), which is where the speed-up over lm-eval's
  HF model comes from on multiple-choice tasks.
* ``loglikelihood_rolling([text])`` -> ``[log p(text)]`` over lm-eval's disjoint rolling windows of
  the model's maximum length (the first token is conditioned on the prefix token).
* ``generate_until([(context, {"until": [...], "max_gen_toks": n})])`` -> greedy continuations cut at
  the first stop string.

Tokenization matches lm-eval's HF model (no BOS unless ``add_bos_token``; trailing context whitespace
moves to the continuation), so the two give the same numbers.

    from slimkit.evaluate.lm_eval import SlimkitLM, run_lm_eval
    lm = SlimkitLM.from_dir("runs/llama-wanda50")                     # or SlimkitLM(model, tokenizer)
    results = run_lm_eval(lm, ["my_task"], include_path="tasks/")   # lm-eval's results dict

From lm-eval's own CLI, after ``import slimkit.evaluate.lm_eval``: ``--model slimkit --model_args pretrained=DIR``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from slimkit.core.errors import SlimkitError

try:
    from lm_eval.api.model import LM
    from lm_eval.api.registry import register_model
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise SlimkitError(
        "slimkit.evaluate.lm_eval needs lm-evaluation-harness: pip install 'slimkit[eval]'"
    ) from e

from slimkit.evaluate._runtime import max_positions
from slimkit.evaluate.generation import greedy_generate, pad_token_id
from slimkit.evaluate.scoring import prefix_token_id, score_token_requests, split_context

DEFAULT_MAX_GEN_TOKS = 256


@register_model("slimkit")
class SlimkitLM(LM):
    """An lm-eval ``LM`` over a model and tokenizer slimkit loaded (see the module docstring).

    Args:
        model, tokenizer: the causal LM and its tokenizer; or leave them out and give ``pretrained``.
        pretrained: a model directory, loaded with :func:`slimkit.load_model` (restores pruned,
            low-rank and quantized formats).
        batch_size: contexts per forward pass. Default: 16.
        max_gen_toks: default generation cap when a request names none. Default: 256.
        add_bos_token: let the tokenizer add its special tokens to contexts (lm-eval's HF model
            default is False). Default: False.
        device, dtype: for ``pretrained`` only.
    """

    def __init__(
        self,
        model: Any = None,
        tokenizer: Any = None,
        *,
        pretrained: str | None = None,
        batch_size: int | str = 16,
        max_gen_toks: int = DEFAULT_MAX_GEN_TOKS,
        add_bos_token: bool = False,
        device: str = "cpu",
        dtype: str | None = None,
    ) -> None:
        super().__init__()
        if model is None:
            if pretrained is None:
                raise SlimkitError("SlimkitLM needs a model and tokenizer, or pretrained=MODEL_DIR")
            from slimkit.models.loading import load_model

            model, tokenizer = load_model(pretrained, device=device, dtype=dtype)
        elif tokenizer is None:
            raise SlimkitError("SlimkitLM was given a model without its tokenizer")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.batch_size = int(batch_size)
        self.max_gen_toks = int(max_gen_toks)
        self.add_bos_token = _as_bool(add_bos_token)
        self.max_length = max_positions(model) or 2048

    @classmethod
    def from_dir(cls, path: str, **kwargs: Any) -> SlimkitLM:
        """Load ``path`` with :func:`slimkit.load_model` and wrap it."""
        return cls(pretrained=path, **kwargs)

    # -- lm-eval's interface ------------------------------------------------------------------------------
    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        pairs = [self._encode_pair(*req.args) for req in requests]
        # one scoring request per distinct context: its KV cache serves all its continuations
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (ctx, _) in enumerate(pairs):
            groups.setdefault(tuple(ctx), []).append(i)
        contexts = list(groups)
        token_requests = [(list(ctx), [pairs[i][1] for i in groups[ctx]]) for ctx in contexts]
        scores = self._score(token_requests)
        out: list[tuple[float, bool]] = [(0.0, False)] * len(requests)
        for ctx, ctx_scores in zip(contexts, scores, strict=True):
            for i, s in zip(groups[ctx], ctx_scores, strict=True):
                out[i] = (s.logprob, s.is_greedy)
        return out

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        from lm_eval import utils

        prefix = prefix_token_id(self.tokenizer)
        windows: list[tuple[int, list[int], list[int]]] = []
        for r, req in enumerate(requests):
            (text,) = req.args
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            for ctx, pred in map(
                utils.make_disjoint_window,
                utils.get_rolling_token_windows(
                    token_list=ids, prefix_token=prefix, max_seq_len=self.max_length, context_len=1
                ),
            ):
                windows.append((r, ctx, pred))
        scores = self._score([(ctx, [pred]) for _, ctx, pred in windows])
        totals = [0.0] * len(requests)
        for (r, _, _), (s,) in zip(windows, scores, strict=True):
            totals[r] += s.logprob
        return totals

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        # requests with the same generation settings are generated together
        groups: dict[tuple[tuple[str, ...], int], list[int]] = {}
        for i, req in enumerate(requests):
            _, gen_kwargs = req.args
            until = gen_kwargs.get("until") or ()
            until = (until,) if isinstance(until, str) else tuple(until)
            groups.setdefault((until, int(gen_kwargs.get("max_gen_toks", self.max_gen_toks))), []).append(i)
        out = [""] * len(requests)
        for (until, max_new), idx in groups.items():
            texts = greedy_generate(
                self.model,
                self.tokenizer,
                [requests[i].args[0] for i in idx],
                max_new_tokens=max_new,
                batch_size=self.batch_size,
                stop_at_newline=False,
                stop=until,
            )
            for i, text in zip(idx, texts, strict=True):
                out[i] = text
        return out

    # -- helpers ------------------------------------------------------------------------------------------
    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        return split_context(self.tokenizer, context, continuation, add_special_tokens=self.add_bos_token)

    def _score(self, token_requests: Sequence[tuple[list[int], list[list[int]]]]) -> list[list[Any]]:
        return score_token_requests(
            self.model, token_requests, pad_id=pad_token_id(self.tokenizer), batch_size=self.batch_size
        )


def run_lm_eval(
    lm: SlimkitLM,
    tasks: Sequence[str],
    *,
    include_path: str | None = None,
    allow_code: bool = False,
    include_defaults: bool = True,
    limit: int | None = None,
    num_fewshot: int | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Run lm-eval ``tasks`` on ``lm``; returns lm-eval's results dict.

    ``include_path`` adds a directory of task YAMLs; since their ``!function`` tags import Python from
    that directory, it is refused unless ``allow_code=True``. ``include_defaults=False`` skips indexing
    lm-eval's few thousand built-in tasks (seconds saved when only local tasks run).

    Raises:
        ConfigError: ``include_path`` without ``allow_code``.
    """
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from slimkit.evaluate.tasks import check_include_path

    if include_path is not None:
        check_include_path(include_path, allow_code)

    manager = TaskManager(include_path=include_path, include_defaults=include_defaults)
    return simple_evaluate(
        model=lm, tasks=list(tasks), task_manager=manager, limit=limit, num_fewshot=num_fewshot, **kwargs
    )


def lm_eval_metrics(results: dict[str, Any]) -> dict[str, dict[str, float | int]]:
    """lm-eval's results dict as slimkit metrics: ``{task: {"acc": ..., "acc_stderr": ..., "n": ...}}``.

    lm-eval keys metrics ``"name,filter"``; the ``none`` filter drops its suffix, others keep it
    (``exact_match@strict-match``). ``n`` is the number of documents lm-eval scored.
    """
    samples = results.get("n-samples", {})
    out: dict[str, dict[str, float | int]] = {}
    for task, values in results.get("results", {}).items():
        metrics: dict[str, float | int] = {}
        for key, value in values.items():
            if "," not in key or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            name, flt = key.split(",", 1)
            metrics[name if flt == "none" else f"{name}@{flt}"] = value
        info = samples.get(task, {})
        metrics["n"] = int(info.get("effective", info.get("original", 0)) or 0)
        out[task] = metrics
    return out


def _as_bool(value: bool | str) -> bool:
    # lm-eval passes --model_args values as strings
    return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
