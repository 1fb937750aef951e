"""Prompts as users of lm-eval know them: the tokenizer's BOS, chat templates, seeded few-shot examples.

An instruction-tuned model asked a bare ``"Question: ...\\nAnswer:"`` often ends its turn at once or
opens with a newline; the same model answers with its chat template, or after a few worked
examples. Every generative and multiple-choice task renders its prompts here:

* **Tokens** (:func:`encode`): the tokenizer's own special tokens (a LLaMA tokenizer's BOS), except
  when the text already starts with the BOS string (a rendered chat template), so BOS is never
  doubled. This is lm-eval 0.4's HF model (``add_bos_token=None``, ``has_bos_prefix``); scoring,
  rolling log-likelihood and generation all encode through it.
* **Few-shot** (:func:`sample_shots`): ``num_fewshot`` solved examples drawn, for each item, from a
  pool (a dev split a reader ships, a file, or else the task's own records) with
  ``random.Random(f"{seed}:{item id}")`` -- the same shots for an item whatever ``--limit`` is -- and
  never the item itself (same id or same question).
* **Chat template** (:func:`resolve_chat`): ``"auto"`` applies the tokenizer's template when it has
  one, ``"on"`` requires one, ``"off"`` never. With a template, the optional system prompt, every
  shot (user turn: its prompt; assistant turn: its answer) and the item (user turn) become messages,
  rendered by ``tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)``
  (lm-eval's ``--apply_chat_template --fewshot_as_multiturn``). Without one, the plain text is::

      {system prompt}\\n\\n{shot prompt} {shot answer}\\n\\n ... {item prompt}
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from slimkit.core.errors import ConfigError, DataError

Record = dict[str, Any]
CHAT_MODES = ("auto", "on", "off")
FEWSHOT_DELIMITER = "\n\n"
"""Between a shot's answer and what follows (lm-eval's ``fewshot_delimiter``)."""


# -- tokens ----------------------------------------------------------------------------------------------
def encode(
    tokenizer: Any,
    text: str,
    *,
    add_special_tokens: bool | None = None,
    add_bos_token: bool | None = None,
) -> list[int]:
    """Token ids of ``text`` as lm-eval 0.4's HF model (``tok_encode``) encodes a context.

    ``add_special_tokens`` True / False forces the tokenizer's special tokens on / off. Left None
    (the default): none when ``text`` already starts with the BOS string, else ``add_bos_token``
    when given (lm-eval's model argument of that name), else what the tokenizer adds by default.
    """
    if add_special_tokens is None:
        bos = getattr(tokenizer, "bos_token", None)
        if isinstance(bos, str) and bos and text.startswith(bos):
            add_special_tokens = False
        elif add_bos_token is not None:
            add_special_tokens = add_bos_token
        else:
            add_special_tokens = True
    return list(tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])


def adds_bos(tokenizer: Any) -> bool:
    """Whether the tokenizer puts its BOS token in front of a text by default."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0] == bos


# -- chat templates --------------------------------------------------------------------------------------
def has_chat_template(tokenizer: Any) -> bool:
    """Whether the tokenizer carries a chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def check_chat_mode(mode: str) -> None:
    """ConfigError unless ``mode`` is one of ``auto``, ``on``, ``off``."""
    if mode not in CHAT_MODES:
        raise ConfigError(f"chat_template must be one of {list(CHAT_MODES)}, got {mode!r}")


def resolve_chat(tokenizer: Any, mode: str) -> bool:
    """Whether prompts go through the tokenizer's chat template (``auto``: when it has one).

    Raises:
        ConfigError: ``mode="on"`` and the tokenizer has no chat template.
    """
    check_chat_mode(mode)
    if mode == "off":
        return False
    if has_chat_template(tokenizer):
        return True
    if mode == "on":
        raise ConfigError("chat_template='on' but the tokenizer has no chat template; use 'auto' or 'off'")
    return False


# -- few-shot --------------------------------------------------------------------------------------------
def sample_shots(record: Record, pool: Sequence[Record], k: int, seed: int) -> list[Record]:
    """``k`` records of ``pool`` for ``record``: seeded by ``(seed, record id)``, never the item itself.

    A pool record is left out when it has the item's id or the item's question (so a dev file that
    repeats a test question cannot leak its answer).

    Raises:
        DataError: fewer than ``k`` other records in the pool.
    """
    if k <= 0:
        return []
    question = _plain(record.get("question"))
    candidates = [
        p
        for p in pool
        if p["id"] != record["id"] and (question is None or _plain(p.get("question")) != question)
    ]
    if len(candidates) < k:
        raise DataError(
            f"num_fewshot={k} but only {len(candidates)} other record(s) can serve as examples for "
            f"{record['id']!r}; give fewer shots or a larger few-shot file"
        )
    return random.Random(f"{seed}:{record['id']}").sample(candidates, k)


def _plain(text: Any) -> str | None:
    return " ".join(text.lower().split()) if isinstance(text, str) else None


def join_answer(prompt: str, answer: str, delimiter: str = " ") -> str:
    """``prompt`` then ``answer``, with ``delimiter`` between unless the prompt already ends in whitespace."""
    return prompt + ("" if prompt[-1:].isspace() else delimiter) + answer


# -- rendering -------------------------------------------------------------------------------------------
def render_prompts(
    tokenizer: Any,
    records: Sequence[Record],
    user_text: Callable[[Record], str],
    answer_text: Callable[[Record], str],
    *,
    num_fewshot: int = 0,
    pool: Sequence[Record] | None = None,
    seed: int = 1234,
    chat: bool = False,
    system_prompt: str | None = None,
    delimiter: str = " ",
) -> list[str]:
    """The prompt of every record (see the module docstring).

    Args:
        tokenizer: renders the chat template when ``chat``.
        records: the items asked.
        user_text: an item's (or a shot's) prompt, e.g. the task template filled in.
        answer_text: a shot's answer (its gold alias, option, or chain of thought).
        num_fewshot: solved examples before each item, >= 0.
        pool: where shots come from. Default: ``records``.
        seed: the few-shot seed.
        chat: render through ``tokenizer.apply_chat_template``.
        system_prompt: a system message (plain text: a first paragraph).
        delimiter: between a shot's prompt and its answer in plain text.
    """
    pool = records if pool is None else pool
    prompts = []
    for record in records:
        shots = sample_shots(record, pool, num_fewshot, seed)
        if chat:
            messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
            for shot in shots:
                messages += [
                    {"role": "user", "content": user_text(shot)},
                    {"role": "assistant", "content": answer_text(shot)},
                ]
            messages.append({"role": "user", "content": user_text(record)})
            prompts.append(apply_chat_template(tokenizer, messages))
        else:
            parts = [system_prompt + FEWSHOT_DELIMITER] if system_prompt else []
            parts += [join_answer(user_text(s), answer_text(s), delimiter) + FEWSHOT_DELIMITER for s in shots]
            prompts.append("".join(parts) + user_text(record))
    return prompts


def apply_chat_template(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """``tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)``.

    Raises:
        ConfigError: the tokenizer has no chat template, or the template rejects the messages
            (some templates refuse a system message).
    """
    if not has_chat_template(tokenizer):
        raise ConfigError("the tokenizer has no chat template; use chat_template='off'")
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as e:  # jinja raises its own TemplateError for messages a template refuses
        raise ConfigError(f"the tokenizer's chat template rejected the prompt messages: {e}") from None


def describe(tokenizer: Any, chat: bool) -> dict[str, Any]:
    """What the prompts of a run were built with, for the results' provenance."""
    return {
        "chat_template_applied": chat,
        "tokenizer_adds_bos": adds_bos(tokenizer),
        "chat_template_sha": _sha(getattr(tokenizer, "chat_template", None)) if chat else None,
    }


def _sha(text: Any) -> str | None:
    if not isinstance(text, str):
        return None
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:12]
