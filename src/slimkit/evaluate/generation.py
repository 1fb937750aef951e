"""Batched greedy generation for evaluation: deterministic, left-padded, KV-cached.

Prompts are sorted by length so each batch carries little padding, padded on the LEFT (so every
row's last prompt token sits at the same position and the next token is read from the same column),
and decoded greedily with ``model.generate`` under an attention mask; the model derives position ids
from that mask, so a padded prompt generates the same tokens as the prompt alone. Only the new text
is returned, cut at its first newline by default (a factoid answer is one line).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

from slimkit.core.config import check_range
from slimkit.core.errors import DataError
from slimkit.core.progress import console, progress_bar
from slimkit.evaluate._runtime import eval_mode, max_positions, model_device


def greedy_generate(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 16,
    batch_size: int = 32,
    stop_at_newline: bool = True,
    stop: Sequence[str] = (),
    device: str | torch.device | None = None,
) -> list[str]:
    """Greedy continuations of ``prompts``, in the order given.

    Args:
        model: a Hugging Face causal LM (anything with ``generate``).
        tokenizer: its tokenizer. Padding is done here, on the left, whatever the tokenizer's own
            setting (it is not changed) and even without a pad token. Prompts get the tokenizer's
            usual special tokens.
        prompts: the prompt strings.
        max_new_tokens: most tokens generated per prompt, >= 1. Default: 16.
        batch_size: prompts per ``generate`` call, >= 1; the output does not depend on it. Default: 32.
        stop_at_newline: cut each continuation at its first ``"\\n"`` and stop a batch once every row
            has produced one. Default: True.
        stop: more stop strings, handled the same way (lm-eval's ``until``). Default: none.
        device: where the inputs go. Default: the model's device (the model is not moved).

    Returns:
        One string per prompt: the generated text only, special tokens removed.
    """
    check_range("max_new_tokens", max_new_tokens, 1, None)
    check_range("batch_size", batch_size, 1, None)
    prompts = list(prompts)
    if not prompts:
        return []
    target = model_device(model, device)
    pad_id = pad_token_id(tokenizer)
    stops = tuple(s for s in (("\n",) if stop_at_newline else ()) + tuple(stop) if s)
    gen_cfg = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        pad_token_id=pad_id,
        eos_token_id=_eos_token_ids(model, tokenizer),
    )
    token_ids = tokenizer(prompts)["input_ids"]
    empty = [i for i, ids in enumerate(token_ids) if not ids]
    if empty:
        raise DataError(f"prompt #{empty[0]} ({prompts[empty[0]]!r}) has no tokens; nothing to continue from")
    token_ids = _fit_positions(model, token_ids, max_new_tokens)
    # longest first: the first batch hits any out-of-memory at once, and similar lengths pad little
    order = sorted(range(len(prompts)), key=lambda i: (-len(token_ids[i]), i))
    outputs: list[str] = [""] * len(prompts)
    with eval_mode(model), progress_bar(len(prompts), "generate") as bar:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            input_ids, attention_mask = left_pad([token_ids[i] for i in idx], pad_id)
            prompt_len = input_ids.shape[1]
            stopping = StoppingCriteriaList([_StopStrings(tokenizer, prompt_len, stops)]) if stops else None
            out = model.generate(
                input_ids=input_ids.to(target),
                attention_mask=attention_mask.to(target),
                generation_config=gen_cfg,
                stopping_criteria=stopping,
            )
            texts = tokenizer.batch_decode(out[:, prompt_len:], skip_special_tokens=True)
            for i, text in zip(idx, texts, strict=True):
                outputs[i] = cut_at_stops(text, stops)
            bar.update(len(idx))
    return outputs


def _fit_positions(model: nn.Module, token_ids: list[list[int]], max_new_tokens: int) -> list[list[int]]:
    """Cut prompts that leave no room for ``max_new_tokens`` to their last tokens (the question end).

    A long retrieval passage or document then loses its beginning rather than failing the whole run;
    how many prompts were cut is printed once.
    """
    limit = max_positions(model)
    if limit is None:
        return token_ids
    keep = limit - max_new_tokens
    if keep < 1:
        raise DataError(f"max_new_tokens={max_new_tokens} leaves no room for a prompt in {limit} positions")
    cut = sum(len(ids) > keep for ids in token_ids)
    if cut:
        console().print(
            f"[yellow]note[/yellow]: {cut} of {len(token_ids)} prompts are longer than {keep} tokens "
            f"({limit} positions - {max_new_tokens} new); their beginnings were cut"
        )
    return [ids[-keep:] if len(ids) > keep else ids for ids in token_ids]


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


def cut_at_stops(text: str, stops: Sequence[str]) -> str:
    """``text`` up to the earliest occurrence of any stop string (all of it when none occurs)."""
    end = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    return text[:end]


class _StopStrings(StoppingCriteria):
    """Marks a row finished once its generated text contains a stop string (generate pads it afterwards)."""

    def __init__(self, tokenizer: Any, prompt_len: int, stops: Sequence[str]) -> None:
        self.tokenizer, self.prompt_len, self.stops = tokenizer, prompt_len, stops

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len :], skip_special_tokens=True)
        done = [any(s in t for s in self.stops) for t in texts]
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
