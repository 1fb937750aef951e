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
  the first stop string. Generation is greedy only: sampling arguments of a request (``do_sample``,
  ``temperature`` > 0, ``top_p``, ...) are dropped with a warning.

Tokenization matches lm-eval 0.4's HF model: the tokenizer's default special tokens (its BOS) unless
a text already starts with the BOS string, or ``add_bos_token`` when given; trailing context
whitespace moves to the continuation; the same encoding for scoring, rolling windows and generation;
requests longer than the model are cut from the left. So the two give the same numbers.
``batch_size="auto"`` (or ``"auto:N"``) starts at ``max_batch_size`` and halves on out-of-memory.

    from slimkit.evaluate.lm_eval import SlimkitLM, run_lm_eval
    lm = SlimkitLM.from_dir("runs/llama-wanda50")                     # or SlimkitLM(model, tokenizer)
    results = run_lm_eval(lm, ["my_task"], include_path="tasks/")   # lm-eval's results dict

From lm-eval's own CLI, after ``import slimkit.evaluate.lm_eval``: ``--model slimkit --model_args pretrained=DIR``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from slimkit.core.errors import ConfigError, SlimkitError

try:
    from lm_eval.api.model import LM
    from lm_eval.api.registry import register_model
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise SlimkitError(
        "slimkit.evaluate.lm_eval needs lm-evaluation-harness: pip install 'slimkit[eval]'"
    ) from e

from slimkit.evaluate._runtime import max_positions
from slimkit.evaluate.generation import greedy_generate, pad_token_id
from slimkit.evaluate.prompting import encode
from slimkit.evaluate.scoring import prefix_token_id, score_token_requests, split_context

DEFAULT_MAX_GEN_TOKS = 256
DEFAULT_MAX_BATCH_SIZE = 64
_MAX_TOKEN_KEYS = ("max_gen_toks", "max_new_tokens", "max_tokens", "max_completion_tokens")  # lm-eval's order
_T = TypeVar("_T")


@register_model("slimkit")
class SlimkitLM(LM):
    """An lm-eval ``LM`` over a model and tokenizer slimkit loaded (see the module docstring).

    Args:
        model, tokenizer: the causal LM and its tokenizer; or leave them out and give ``pretrained``.
        pretrained: a model directory, loaded with :func:`slimkit.load_model` (restores pruned,
            low-rank and quantized formats).
        batch_size: contexts per forward pass, or ``"auto"`` / ``"auto:N"`` (start at
            ``max_batch_size``, halve on out-of-memory, keep what fits). Default: 16.
        max_batch_size: where ``"auto"`` starts. Default: 64 (lm-eval's).
        max_gen_toks: default generation cap when a request names none. Default: 256.
        add_bos_token: force the tokenizer's special tokens on (True) or off (False) for every text;
            None uses the tokenizer's default, never doubling a BOS already in the text (lm-eval
            0.4's HF model default). Default: None.
        device, dtype: for ``pretrained`` only.
    """

    def __init__(
        self,
        model: Any = None,
        tokenizer: Any = None,
        *,
        pretrained: str | None = None,
        batch_size: int | str = 16,
        max_batch_size: int | str = DEFAULT_MAX_BATCH_SIZE,
        max_gen_toks: int = DEFAULT_MAX_GEN_TOKS,
        add_bos_token: bool | str | None = None,
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
        self.max_batch_size = int(max_batch_size)
        self.auto_batch = str(batch_size).startswith("auto")
        if self.auto_batch:
            # "auto:N" re-detects N times in lm-eval; one detection holds here (the shapes barely change)
            self.batch_size = self.max_batch_size
        else:
            try:
                self.batch_size = int(batch_size)
            except ValueError:
                raise ConfigError(f"batch_size must be an integer or 'auto', got {batch_size!r}") from None
        if self.batch_size < 1 or self.max_batch_size < 1:
            raise ConfigError(f"batch sizes must be >= 1, got {batch_size!r} / max {max_batch_size!r}")
        self.max_gen_toks = int(max_gen_toks)
        self.add_bos_token = None if add_bos_token in (None, "None", "none", "") else _as_bool(add_bos_token)
        self.max_length = max_positions(model) or 2048
        self._warned: set[tuple[str, ...]] = set()

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
            # encoded like a context (lm-eval's tok_encode): a BOS-adding tokenizer's BOS is scored too
            ids = encode(self.tokenizer, text, add_bos_token=self.add_bos_token)
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
            until, max_new = self._generation_settings(dict(gen_kwargs or {}))
            groups.setdefault((until, max_new), []).append(i)
        out = [""] * len(requests)
        for (until, max_new), idx in groups.items():
            texts = self._batched(
                lambda bs, idx=idx, until=until, max_new=max_new: greedy_generate(
                    self.model,
                    self.tokenizer,
                    [requests[i].args[0] for i in idx],
                    max_new_tokens=max_new,
                    batch_size=bs,
                    stop_at_newline=False,
                    stop=until,
                    stop_after_text=False,  # lm-eval's until: the first occurrence, wherever it is
                    add_bos_token=self.add_bos_token,
                )
            )
            for i, text in zip(idx, texts, strict=True):
                out[i] = text
        return out

    def apply_chat_template(
        self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True
    ) -> str:
        """lm-eval's ``--apply_chat_template``: the tokenizer's template rendered as text."""
        return self.tokenizer.apply_chat_template(
            chat_history,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=not add_generation_prompt,
        )

    @property
    def tokenizer_name(self) -> str:
        """Keys lm-eval's cache of rendered chat prompts."""
        return str(getattr(self.tokenizer, "name_or_path", "slimkit")).replace("/", "__")

    # -- helpers ------------------------------------------------------------------------------------------
    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        return split_context(self.tokenizer, context, continuation, add_bos_token=self.add_bos_token)

    def _score(self, token_requests: Sequence[tuple[list[int], list[list[int]]]]) -> list[list[Any]]:
        return self._batched(
            lambda bs: score_token_requests(
                self.model, token_requests, pad_id=pad_token_id(self.tokenizer), batch_size=bs
            )
        )

    def _batched(self, run: Callable[[int], _T]) -> _T:
        """``run(batch_size)``; with ``batch_size="auto"`` halve it on out-of-memory and keep what fits."""
        while True:
            try:
                return run(self.batch_size)
            except (RuntimeError, MemoryError) as e:
                if not (self.auto_batch and self.batch_size > 1 and _is_oom(e)):
                    raise
                self.batch_size //= 2
                _free_cache()

    def _generation_settings(self, gen_kwargs: dict[str, Any]) -> tuple[tuple[str, ...], int]:
        """``(stop strings, max new tokens)`` of a request; sampling arguments are dropped with a warning."""
        until = gen_kwargs.pop("until", None) or ()
        until = (until,) if isinstance(until, str) else tuple(until)
        max_new = self.max_gen_toks
        for key in reversed(_MAX_TOKEN_KEYS):
            value = gen_kwargs.pop(key, None)
            if value is not None:
                max_new = int(value)
        greedy_equivalent = {"do_sample": (False, None), "temperature": (0, 0.0, None)}
        dropped = sorted(
            k for k, v in gen_kwargs.items() if not (k in greedy_equivalent and v in greedy_equivalent[k])
        )
        if dropped and tuple(dropped) not in self._warned:
            self._warned.add(tuple(dropped))
            warnings.warn(
                f"SlimkitLM decodes greedily; dropped generation argument(s) "
                f"{ {k: gen_kwargs[k] for k in dropped} }",
                stacklevel=3,
            )
        return until, max_new


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


def _is_oom(error: BaseException) -> bool:
    import torch

    return isinstance(error, torch.cuda.OutOfMemoryError | MemoryError) or "out of memory" in str(error)


def _free_cache() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
