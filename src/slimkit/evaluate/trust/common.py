"""What every trust dimension shares: the query, the one LM interface, data files, knowledge items.

A dimension turns its data (DecodingTrust files, or a built-in probe) into :class:`Query` objects,
asks a :class:`TrustLM` to answer them, and scores the answers with :mod:`.scoring`. The model is
reached only through the LM interface, so scorers are tested with a scripted LM:

* ``choose(queries)``: one option index per query, or None (refused / no option matched).
  ``mode="loglik"`` picks the option with the highest log-likelihood as the continuation of the
  prompt (lm-eval's multiple choice; :func:`slimkit.evaluate.scoring.score_continuations`).
  ``mode="generate"`` decodes greedily (:func:`slimkit.evaluate.greedy_generate`) and matches the
  options' phrases in the text, as DecodingTrust does (earliest match wins; of overlapping matches
  the longest, so "I disagree" is not read as "I agree" and "not wrong" not as "wrong").
* ``complete(queries, max_new_tokens)``: greedy text (privacy leaks are read from it).
* ``sample(queries, n, ...)``: ``n`` sampled texts per query (toxicity's 25 samples at temperature 1).

Prompts are rendered as the KICK tasks render them (:mod:`slimkit.evaluate.prompting`): with the
tokenizer's chat template when it has one (``chat_template="auto"``: system prompt, few-shot turns,
the user turn, the options scored as the start of the assistant's reply), else as plain text
``{system}\\n\\n{shot} {answer}\\n\\n... {user}``. A ``raw`` query (a canary prefix) is always fed as
plain text, since memorised text is what it probes.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from slimkit.core.errors import DataError
from slimkit.evaluate.prompting import FEWSHOT_DELIMITER, apply_chat_template, join_answer

Record = dict[str, Any]
IDK = "I don't know"
"""The refusal option DecodingTrust's OOD-knowledge part adds to every question."""


@dataclass(frozen=True, eq=False)
class Query:
    """One question put to the model.

    Attributes:
        user: the user turn (plain prompts end in ``"Answer:"``) or, when ``raw``, the text to continue.
        options: the answers ``choose`` picks from (empty for completions).
        system: a system prompt, if any.
        shots: ``(user, assistant)`` few-shot turns before ``user``.
        raw: feed ``user`` as is, never through a chat template.
        part: which sub-configuration of the dimension it belongs to (``zero``, ``jailbreak``, ...).
        meta: what the scorer needs (gold index, group, secret, ...).
    """

    user: str
    options: tuple[str, ...] = ()
    system: str | None = None
    shots: tuple[tuple[str, str], ...] = ()
    raw: bool = False
    part: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


class TrustLM(Protocol):
    """The model as the trust dimensions see it (see the module docstring)."""

    mode: str

    def choose(self, queries: Sequence[Query]) -> list[int | None]: ...

    def complete(self, queries: Sequence[Query], max_new_tokens: int) -> list[str]: ...

    def sample(
        self, queries: Sequence[Query], n: int, max_new_tokens: int, temperature: float, seed: int
    ) -> list[list[str]]: ...


def render(tokenizer: Any, query: Query, chat: bool) -> str:
    """The prompt text of ``query`` (module docstring)."""
    if query.raw:
        return query.user
    if chat:
        messages = [{"role": "system", "content": query.system}] if query.system else []
        for user, answer in query.shots:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        messages.append({"role": "user", "content": query.user})
        return apply_chat_template(tokenizer, messages)
    parts = [query.system + FEWSHOT_DELIMITER] if query.system else []
    parts += [join_answer(u, a) + FEWSHOT_DELIMITER for u, a in query.shots]
    return "".join(parts) + query.user


def match_option(text: str, options: Sequence[str]) -> int | None:
    """The option whose phrase occurs first in ``text`` (case-insensitive, on word boundaries); of
    matches starting inside a longer match, the longer one. None when no option occurs."""
    best: tuple[int, int, int] | None = None  # (start, -length, index)
    for i, option in enumerate(options):
        phrase = option.strip().rstrip(".").strip()
        if not phrase:
            continue
        for m in re.finditer(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)", text, flags=re.IGNORECASE):
            key = (m.start(), -(m.end() - m.start()), i)
            if best is None or key < best:
                best = key
            break
    if best is None:
        return None
    # an option inside an earlier, longer one ("wrong" in "not wrong") never wins: the earlier start does
    return best[2]


class HFTrustLM:
    """:class:`TrustLM` over a Hugging Face causal LM and its tokenizer.

    Args:
        model, tokenizer: the model evaluated.
        chat: render prompts with the tokenizer's chat template.
        mode: ``"loglik"`` or ``"generate"`` (how ``choose`` answers).
        batch_size: prompts per forward pass.
        max_new_tokens: tokens ``choose`` generates in ``generate`` mode.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        *,
        chat: bool,
        mode: str = "loglik",
        batch_size: int = 16,
        max_new_tokens: int = 24,
    ) -> None:
        self.model, self.tokenizer, self.chat, self.mode = model, tokenizer, chat, mode
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens

    def prompts(self, queries: Sequence[Query]) -> list[str]:
        return [render(self.tokenizer, q, self.chat) for q in queries]

    def choose(self, queries: Sequence[Query]) -> list[int | None]:
        if not queries:
            return []
        prompts = self.prompts(queries)
        if self.mode == "generate":
            from slimkit.evaluate.generation import greedy_generate

            texts = greedy_generate(
                self.model,
                self.tokenizer,
                prompts,
                max_new_tokens=self.max_new_tokens,
                batch_size=self.batch_size,
                stop_at_newline=False,
            )
            return [match_option(t, q.options) for t, q in zip(texts, queries, strict=True)]
        from slimkit.evaluate.scoring import score_continuations

        requests = []
        for p, q in zip(prompts, queries, strict=True):
            delimiter = "" if (self.chat and not q.raw) or p[-1:].isspace() else " "
            requests.append((p, [delimiter + o for o in q.options]))
        scores = score_continuations(self.model, self.tokenizer, requests, batch_size=self.batch_size)
        # the first index on ties, so a pick depends on nothing but the scores
        return [max(range(len(s)), key=lambda i: (s[i].logprob, -i)) for s in scores]

    def complete(self, queries: Sequence[Query], max_new_tokens: int) -> list[str]:
        from slimkit.evaluate.generation import greedy_generate

        return greedy_generate(
            self.model,
            self.tokenizer,
            self.prompts(queries),
            max_new_tokens=max_new_tokens,
            batch_size=self.batch_size,
            stop_at_newline=True,
        )

    def sample(
        self, queries: Sequence[Query], n: int, max_new_tokens: int, temperature: float, seed: int
    ) -> list[list[str]]:
        """``n`` continuations per query sampled at ``temperature`` (top-p 1), seeded."""
        from transformers import GenerationConfig

        from slimkit.evaluate._runtime import eval_mode, model_device
        from slimkit.evaluate.generation import (
            _eos_token_ids,
            left_pad,
            neutral_generation_config,
            pad_token_id,
        )
        from slimkit.evaluate.prompting import encode

        target = model_device(self.model, None)
        ids = [encode(self.tokenizer, p) for p in self.prompts(queries)]
        cfg = GenerationConfig(
            do_sample=True,
            temperature=temperature,
            top_p=1.0,
            top_k=0,
            max_new_tokens=max_new_tokens,
            num_return_sequences=n,
            pad_token_id=pad_token_id(self.tokenizer),
            eos_token_id=_eos_token_ids(self.model, self.tokenizer),
        )
        out: list[list[str]] = []
        torch.manual_seed(seed)
        step = max(1, self.batch_size // n)
        with eval_mode(self.model), neutral_generation_config(self.model):
            for start in range(0, len(ids), step):
                input_ids, mask = left_pad(ids[start : start + step], pad_token_id(self.tokenizer))
                gen = self.model.generate(
                    input_ids=input_ids.to(target), attention_mask=mask.to(target), generation_config=cfg
                )
                texts = self.tokenizer.batch_decode(gen[:, input_ids.shape[1] :], skip_special_tokens=True)
                out += [texts[i * n : (i + 1) * n] for i in range(len(texts) // n)]
        return out


# -- DecodingTrust data files ------------------------------------------------------------------------------
def require(data_dir: str | Path, relpath: str, dimension: str) -> Path:
    """``data_dir / relpath``, or DataError naming the missing file and the dimension that reads it."""
    path = Path(data_dir) / relpath
    if not path.is_file():
        raise DataError(
            f"trust data directory {data_dir} is missing {relpath} (read by the {dimension} dimension; "
            "docs/trust.md lists the files); give it, or leave the dimension out with --tasks"
        )
    return path


def read_jsonl(path: Path) -> list[tuple[str, Record]]:
    """``(where, record)`` for every line of a JSONL file; DataError when it has none."""
    from slimkit.data.sources import jsonl_rows

    rows = [(f"{path}:{lineno}", row) for lineno, row in jsonl_rows(path)]
    if not rows:
        raise DataError(f"{path} has no records")
    return rows


def field_of(record: Record, name: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``record[name]`` checked to be of ``kind``; DataError naming the place and the field."""
    if not isinstance(record, dict) or name not in record:
        raise DataError(f"{where}: missing field {name!r}")
    value = record[name]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise DataError(f"{where}: field {name!r} must be {names}, got {type(value).__name__}")
    return value


# -- knowledge items the probes perturb ------------------------------------------------------------------------
def knowledge_items(source: str, tokenizer: Any, n: int, seed: int, max_options: int = 4) -> list[Record]:
    """``n`` multiple-choice records (question, options, answer_index) the OOD, adversarial and
    demonstration probes build on, sampled with ``seed``.

    ``source``: ``"world"`` (the built-in world's ``mc.jsonl``: what the default model was trained
    on), ``"countries"`` (real questions from the ``countries:`` reader: general knowledge for a real
    model), ``"auto"`` (countries when the tokenizer has a chat template, else the world), or a path
    to an ``mc.jsonl`` file. Questions with more than ``max_options`` options are left out.
    """
    from slimkit.evaluate.prompting import has_chat_template
    from slimkit.evaluate.tasks.multiple_choice import MC_FORMAT

    if source == "auto":
        source = "countries" if has_chat_template(tokenizer) else "world"
    if source == "world":
        from slimkit.models.default import default_world_dir

        path = default_world_dir() / "mc.jsonl"
        records = MC_FORMAT.check_records(read_jsonl(path), task="mc", source=str(path))
    elif source == "countries":
        from slimkit.evaluate.readers import load_task_data

        records = load_task_data("countries:")["mc"]
    else:
        path = Path(source)
        if not path.is_file():
            raise DataError(
                f"knowledge source {source!r} is not 'world', 'countries', 'auto' or an mc.jsonl file"
            )
        records = MC_FORMAT.check_records(read_jsonl(path), task="mc", source=source)
    pool = [r for r in records if 2 <= len(r["options"]) <= max_options]
    if len(pool) < n:
        raise DataError(
            f"knowledge source {source!r} has {len(pool)} questions with <= {max_options} options; need {n}"
        )
    return random.Random(f"trust-knowledge:{seed}").sample(pool, n)


def qa_prompt(question: str) -> str:
    """The user text of a knowledge question (the KICK tasks' template)."""
    return f"Question: {question}\nAnswer:"


# -- text perturbations (seeded, pure) -------------------------------------------------------------------------
def typo(word: str, rng: random.Random) -> str:
    """One character edit inside ``word`` (swap, drop, double, or replace by a keyboard neighbour);
    the first character is kept so the word stays recognisable. Words of < 4 letters are kept."""
    if len(word) < 4 or not word.isalpha():
        return word
    i = rng.randrange(1, len(word) - 1)
    op = rng.randrange(4)
    if op == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if op == 1:
        return word[:i] + word[i + 1 :]
    if op == 2:
        return word[:i] + word[i] + word[i:]
    near = _NEIGHBOURS.get(word[i].lower(), "e")
    return word[:i] + rng.choice(near) + word[i + 1 :]


_NEIGHBOURS = {
    "a": "qsz", "b": "vgn", "c": "xdv", "d": "sfe", "e": "wrd", "f": "dgr", "g": "fht", "h": "gjy",
    "i": "uok", "j": "hku", "k": "jli", "l": "kop", "m": "nj", "n": "bmh", "o": "ipl", "p": "ol",
    "q": "wa", "r": "etf", "s": "adw", "t": "ryg", "u": "yij", "v": "cbf", "w": "qes", "x": "zcs",
    "y": "tuh", "z": "xa",
}  # fmt: skip


def perturb_words(
    text: str, rng: random.Random, rate: float, pick: Callable[[list[str]], list[int]] | None = None
) -> str:
    """Apply :func:`typo` to each word with probability ``rate`` (or to the words ``pick`` chooses)."""
    words = text.split(" ")
    chosen = set(pick(words)) if pick else {i for i in range(len(words)) if rng.random() < rate}
    out = []
    for i, w in enumerate(words):
        if i in chosen:
            core = w.rstrip("?.,!:;")
            w = typo(core, rng) + w[len(core) :]
        out.append(w)
    return " ".join(out)
