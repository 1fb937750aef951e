"""Byte-level BPE tokenizers trained with Hugging Face ``tokenizers``, saved as standard HF files.

The result is a ``PreTrainedTokenizerFast`` with ``<|bos|>``, ``<|eos|>`` and ``<|pad|>`` special
tokens and left padding (what batched generation needs); ``save_pretrained`` writes the files that
plain ``AutoTokenizer.from_pretrained`` reads, so every model directory slimkit writes loads in
plain transformers.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from slimkit.core.config import check_range
from slimkit.core.errors import DataError

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
SPECIAL_TOKENS = (PAD, BOS, EOS)


def train_bpe_tokenizer(
    texts: Iterable[str], vocab_size: int = 2048, min_frequency: int = 2
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts``.

    Args:
        texts: training documents (an iterable is consumed once).
        vocab_size: size including the 256 byte symbols and the 3 special tokens. Default: 2048.
        min_frequency: a merge must occur at least this often. Default: 2.

    Returns:
        A fast tokenizer that does not add BOS/EOS by itself (the data pipeline decides), pads on the left.
    """
    check_range("vocab_size", vocab_size, 256 + len(SPECIAL_TOKENS), None)
    check_range("min_frequency", min_frequency, 1, None)
    texts = list(texts)
    if not any(t.strip() for t in texts):
        raise DataError("cannot train a tokenizer on empty text")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
