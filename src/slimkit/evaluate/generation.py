"""Batched greedy generation for evaluation: deterministic, left-padded, KV-cached.

Prompts are encoded as lm-eval 0.4's HF model encodes them (the tokenizer's BOS unless the text
already starts with it, :func:`slimkit.evaluate.prompting.encode`), sorted by length so each batch
carries little padding, padded on the LEFT (so every row's last prompt token sits at the same
position and the next token is read from the same column), and decoded greedily with
``model.generate`` under an attention mask; the model derives position ids from that mask, so a
padded prompt generates the same tokens as the prompt alone.

Greedy means ``argmax`` at every step, whatever the checkpoint's ``generation_config.json`` says: a
checkpoint that ships ``repetition_penalty``, ``no_repeat_ngram_size``, ``bad_words_ids``,
``suppress_tokens``, a minimum length or sampling settings would otherwise have them merged into
every call (transformers fills each unset option from the model's generation config). For the
duration of a call the model's generation config is replaced by a neutral one that keeps only the
special token ids and the cache implementation.

Only the new text is returned, cut at its first newline by default (a factoid answer is one line).
A stop string counts only once the text has started: an answer that opens with a newline (what an
instruction-tuned model often does after ``"Answer:"``) is kept up to its next newline, not scored
as empty (``stop_after_text=False`` gives lm-eval's ``until``, which cuts at the first occurrence).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

from slimkit.core.config import check_range
from slimkit.core.errors import DataError
from slimkit.core.progress import console, progress_bar
from slimkit.evaluate._runtime import eval_mode, max_positions, model_device
from slimkit.evaluate.prompting import encode

# what a neutral generation config keeps of the model's own: token ids and the cache, no logits processor
_KEPT_GENERATION_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id",
                           "cache_implementation")  # fmt: skip


def greedy_generate(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int | Sequence[int] = 16,
    batch_size: int = 32,
    stop_at_newline: bool = True,
    stop: Sequence[str] = (),
    stop_after_text: bool = True,
    add_bos_token: bool | None = None,
    device: str | torch.device | None = None,
) -> list[str]:
    """Greedy continuations of ``prompts``, in the order given.

    Args:
        model: a Hugging Face causal LM (anything with ``generate``).
        tokenizer: its tokenizer. Padding is done here, on the left, whatever the tokenizer's own
            setting (it is not changed) and even without a pad token. Prompts get the tokenizer's
            usual special tokens (its BOS), unless they already start with its BOS string.
        prompts: the prompt strings.
        max_new_tokens: most tokens generated per prompt, >= 1: one number, or one per prompt.
            Default: 16.
        batch_size: prompts per ``generate`` call, >= 1; the output does not depend on it. Default: 32.
        stop_at_newline: cut each continuation at its first ``"\\n"`` and stop a batch once every row
            has produced one. Default: True.
        stop: more stop strings, handled the same way (lm-eval's ``until``). Default: none.
        stop_after_text: a stop string counts only after the first non-whitespace character, so
            leading newlines do not end an answer. False: the first occurrence anywhere (lm-eval).
            Default: True.
        add_bos_token: force the tokenizer's special tokens on / off for prompts that do not start
            with its BOS string (lm-eval's ``add_bos_token``). Default: None (the tokenizer's default).
        device: where the inputs go. Default: the model's device (the model is not moved).

    Returns:
        One string per prompt: the generated text only, special tokens removed.
    """
    check_range("batch_size", batch_size, 1, None)
    prompts = list(prompts)
    if not prompts:
        return []
    if isinstance(max_new_tokens, int):
        limits = [max_new_tokens] * len(prompts)
    else:
        limits = [int(n) for n in max_new_tokens]
        if len(limits) != len(prompts):
            raise DataError(f"{len(limits)} max_new_tokens values for {len(prompts)} prompts")
    for n in set(limits):
        check_range("max_new_tokens", n, 1, None)
    target = model_device(model, device)
    pad_id = pad_token_id(tokenizer)
    stops = tuple(s for s in (("\n",) if stop_at_newline else ()) + tuple(stop) if s)
    token_ids = [encode(tokenizer, p, add_bos_token=add_bos_token) for p in prompts]
    empty = [i for i, ids in enumerate(token_ids) if not ids]
    if empty:
        raise DataError(f"prompt #{empty[0]} ({prompts[empty[0]]!r}) has no tokens; nothing to continue from")
    token_ids = _fit_positions(model, token_ids, limits)
    # longest first: the first batch hits any out-of-memory at once, and similar lengths pad little
    order = sorted(range(len(prompts)), key=lambda i: (-len(token_ids[i]), i))
    outputs: list[str] = [""] * len(prompts)
    with eval_mode(model), neutral_generation_config(model), progress_bar(len(prompts), "generate") as bar:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            input_ids, attention_mask = left_pad([token_ids[i] for i in idx], pad_id)
            prompt_len = input_ids.shape[1]
            row_limits = [limits[i] for i in idx]
            gen_cfg = greedy_config(model, tokenizer, max(row_limits))
            ragged = len(set(row_limits)) > 1
            stopping = (
                StoppingCriteriaList(
                    [_StopStrings(tokenizer, prompt_len, stops, row_limits, stop_after_text)]
                )
                if stops or ragged
                else None
            )
            out = model.generate(
                input_ids=input_ids.to(target),
                attention_mask=attention_mask.to(target),
                generation_config=gen_cfg,
                stopping_criteria=stopping,
            )
            for row, (i, n) in enumerate(zip(idx, row_limits, strict=True)):
                text = tokenizer.decode(out[row, prompt_len : prompt_len + n], skip_special_tokens=True)
                outputs[i] = cut_at_stops(text, stops, after_text=stop_after_text)
            bar.update(len(idx))
    return outputs


def greedy_config(model: nn.Module, tokenizer: Any, max_new_tokens: int) -> GenerationConfig:
    """A generation config that decodes by argmax with every logits processor neutral."""
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        repetition_penalty=1.0,
        encoder_repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        encoder_no_repeat_ngram_size=0,
        min_length=0,
        renormalize_logits=False,
        pad_token_id=pad_token_id(tokenizer),
        eos_token_id=_eos_token_ids(model, tokenizer),
    )


@contextlib.contextmanager
def neutral_generation_config(model: nn.Module) -> Iterator[None]:
    """Replace ``model.generation_config`` with a neutral one (token ids and cache only) for a while.

    transformers fills every option a call leaves unset from the model's generation config, so the
    only way to keep a checkpoint's ``repetition_penalty`` or ``bad_words_ids`` out of a greedy
    decode is to hide them; the original object is put back afterwards, even on error.
    """
    original = getattr(model, "generation_config", None)
    if not isinstance(original, GenerationConfig):
        yield
        return
    kept = {k: getattr(original, k, None) for k in _KEPT_GENERATION_FIELDS}
    model.generation_config = GenerationConfig(**{k: v for k, v in kept.items() if v is not None})
    try:
        yield
    finally:
        model.generation_config = original


def _fit_positions(model: nn.Module, token_ids: list[list[int]], limits: Sequence[int]) -> list[list[int]]:
    """Cut prompts that leave no room for their new tokens to their last tokens (the question end).

    lm-eval's left truncation: a long retrieval passage or document loses its beginning rather than
    failing the whole run; how many prompts were cut is printed once.
    """
    limit = max_positions(model)
    if limit is None:
        return token_ids
    worst = max(limits)
    if limit - worst < 1:
        raise DataError(f"max_new_tokens={worst} leaves no room for a prompt in {limit} positions")
    keeps = [limit - n for n in limits]
    cut = sum(len(ids) > keep for ids, keep in zip(token_ids, keeps, strict=True))
    if cut:
        console().print(
            f"[yellow]note[/yellow]: {cut} of {len(token_ids)} prompts are longer than {limit} positions "
            "minus the new tokens; their beginnings were cut (lm-eval's left truncation)"
        )
    return [ids[-keep:] if len(ids) > keep else ids for ids, keep in zip(token_ids, keeps, strict=True)]


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token id lists into ``input_ids`` and ``attention_mask``, both ``[batch, max_len]``.

    Done here rather than by the tokenizer so that a tokenizer without a pad token, or one set to pad
    on the right, still yields left padding.
    """
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            input_ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            attention_mask[row, width - len(seq) :] = 1
    return input_ids, attention_mask


def cut_at_stops(text: str, stops: Sequence[str], *, after_text: bool = False) -> str:
    """``text`` up to the earliest occurrence of any stop string (all of it when none occurs).

    ``after_text``: look only from the first non-whitespace character on, so ``"\\nParis\\n"``
    cut at ``"\\n"`` is ``"\\nParis"`` rather than ``""``.
    """
    start = len(text) - len(text.lstrip()) if after_text else 0
    end = min((i for i in (text.find(s, start) for s in stops) if i >= 0), default=len(text))
    return text[:end]


class _StopStrings(StoppingCriteria):
    """Marks a row finished once it has a stop string, or its own token budget (generate pads it after)."""

    def __init__(
        self,
        tokenizer: Any,
        prompt_len: int,
        stops: Sequence[str],
        limits: Sequence[int],
        after_text: bool,
    ) -> None:
        self.tokenizer, self.prompt_len, self.stops = tokenizer, prompt_len, stops
        self.limits, self.after_text = list(limits), after_text

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        generated = input_ids[:, self.prompt_len :]
        done = [generated.shape[1] >= n for n in self.limits]
        if self.stops:
            texts = self.tokenizer.batch_decode(generated, skip_special_tokens=True)
            for r, t in enumerate(texts):
                done[r] = done[r] or len(cut_at_stops(t, self.stops, after_text=self.after_text)) < len(t)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def pad_token_id(tokenizer: Any) -> int:
    # A left pad never reaches the model's attention (the mask hides it), so any id will do when a
    # tokenizer (GPT-2's) has no pad token; eos is the conventional stand-in.
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return 0


def _eos_token_ids(model: nn.Module, tokenizer: Any) -> int | list[int] | None:
    model_cfg = getattr(model, "generation_config", None)
    eos = getattr(model_cfg, "eos_token_id", None)
    return eos if eos is not None else getattr(tokenizer, "eos_token_id", None)
