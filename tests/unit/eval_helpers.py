"""Independent references the evaluation tests compare against: greedy by hand, a BOS-adding tokenizer."""

from __future__ import annotations

import torch
from tokenizers import processors

from slimkit.models import tiny_tokenizer


def reference_greedy(model, ids, n, eos=None):
    """argmax, one full forward per token, no cache and no logits processor: what greedy means."""
    ids = list(ids)
    out = []
    with torch.no_grad():
        for _ in range(n):
            token = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
            if token == eos:
                break
            out.append(token)
            ids.append(token)
    return out


def bos_tokenizer():
    """The tiny tokenizer, made to put its BOS in front of every text (as LLaMA's does)."""
    tok = tiny_tokenizer()
    tok.backend_tokenizer.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single="<|bos|> $A", pair="<|bos|> $A <|bos|> $B", special_tokens=[("<|bos|>", 1)]
            ),
        ]
    )
    assert tok("hi")["input_ids"][0] == tok.bos_token_id
    return tok
