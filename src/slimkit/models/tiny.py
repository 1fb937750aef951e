"""Tiny random models and a real tokenizer, for tests and examples (no download, milliseconds to build).

Every family slimkit tests gets the same shape: 2 decoder blocks, hidden size 64, 4 attention
heads of 16 (2 key/value heads where the family has grouped-query attention; Falcon's default
multi-query attention has 1), MLP width 128, 256 positions, a 512-token vocabulary. Special token ids
match :func:`tiny_tokenizer`: pad 0, bos 1, eos 2. Dropout is off so a tiny model trains
deterministically under a fixed seed.

Families (the key is not always the ``model_type``): ``llama``, ``mistral``, ``qwen2``, ``qwen3``,
``gemma2``, ``gemma3`` (text-only ``Gemma3ForCausalLM``, model type ``gemma3_text``; local and global
layers alternate), ``phi3`` (fused ``qkv_proj`` and ``gate_up_proj``), ``gpt_neox``, ``falcon``
(parallel attention and MLP on one layer norm), ``opt``, ``gpt2`` (``Conv1D`` linears).

    model = tiny_model("gpt2", seed=0)            # eval mode, float32
    tok = tiny_tokenizer()                        # byte-level BPE trained on a built-in English text
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    FalconConfig,
    Gemma2Config,
    Gemma3TextConfig,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    MistralConfig,
    OPTConfig,
    Phi3Config,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen3Config,
)

from slimkit.core.errors import ConfigError
from slimkit.data.tokenizer import train_bpe_tokenizer

LAYERS, HIDDEN, HEADS, KV_HEADS, INTERMEDIATE, POSITIONS = 2, 64, 4, 2, 128, 256
SPECIAL_IDS = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}


def _sizes(vocab_size: int, ffn_field: str) -> dict[str, Any]:
    # the HF field names most families share; only the MLP width's name differs between them
    return {
        "vocab_size": vocab_size,
        "hidden_size": HIDDEN,
        ffn_field: INTERMEDIATE,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "max_position_embeddings": POSITIONS,
    }


def _llama(vocab_size: int) -> dict[str, Any]:
    # llama, mistral, qwen2 and phi3
    return {**_sizes(vocab_size, "intermediate_size"), "num_key_value_heads": KV_HEADS}


def _opt(vocab_size: int) -> dict[str, Any]:
    no_dropout = dict.fromkeys(("dropout", "attention_dropout", "activation_dropout", "layerdrop"), 0.0)
    return {**_sizes(vocab_size, "ffn_dim"), "word_embed_proj_dim": HIDDEN, **no_dropout}


def _gpt2(vocab_size: int) -> dict[str, Any]:
    return {
        "vocab_size": vocab_size,
        "n_embd": HIDDEN,
        "n_inner": INTERMEDIATE,
        "n_layer": LAYERS,
        "n_head": HEADS,
        "n_positions": POSITIONS,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
    }


def _head_dim(vocab_size: int) -> dict[str, Any]:
    # qwen3 and gemma default to a head_dim far larger than hidden / heads
    return {**_llama(vocab_size), "head_dim": HIDDEN // HEADS}


def _gemma3(vocab_size: int) -> dict[str, Any]:
    # every other layer local (sliding window), so both layer types are exercised
    return {**_head_dim(vocab_size), "sliding_window_pattern": 2}


def _gpt_neox(vocab_size: int) -> dict[str, Any]:
    return {**_sizes(vocab_size, "intermediate_size"), "hidden_dropout": 0.0, "attention_dropout": 0.0}


def _falcon(vocab_size: int) -> dict[str, Any]:
    return {**_sizes(vocab_size, "ffn_hidden_size"), "hidden_dropout": 0.0, "attention_dropout": 0.0}


# family -> (config class, its keyword arguments given the vocabulary size)
FAMILIES: dict[str, tuple[type[PretrainedConfig], Callable[[int], dict[str, Any]]]] = {
    "llama": (LlamaConfig, _llama),
    "mistral": (MistralConfig, _llama),
    "qwen2": (Qwen2Config, _llama),
    "qwen3": (Qwen3Config, _head_dim),
    "gemma2": (Gemma2Config, _head_dim),
    "gemma3": (Gemma3TextConfig, _gemma3),
    "phi3": (Phi3Config, _llama),
    "gpt_neox": (GPTNeoXConfig, _gpt_neox),
    "falcon": (FalconConfig, _falcon),
    "opt": (OPTConfig, _opt),
    "gpt2": (GPT2Config, _gpt2),
}


def tiny_config(family: str = "llama", vocab_size: int = 512, **overrides: Any) -> PretrainedConfig:
    """A tiny config of ``family`` (a key of :data:`FAMILIES`: ``llama``, ``gemma3``, ``gpt2``, ...).

    Args:
        family: architecture family. Default: ``"llama"``.
        vocab_size: vocabulary size; at least 3 (the special tokens). Default: 512.
        **overrides: config fields to change (e.g. ``num_hidden_layers=4``, ``tie_word_embeddings=True``).

    Raises:
        ConfigError: unknown family or vocabulary too small.
    """
    if family not in FAMILIES:
        raise ConfigError(f"family={family!r} is not one of {sorted(FAMILIES)}")
    if not isinstance(vocab_size, int) or vocab_size < len(SPECIAL_IDS):
        raise ConfigError(f"vocab_size={vocab_size!r} must be an integer >= {len(SPECIAL_IDS)}")
    config_cls, base_kwargs = FAMILIES[family]
    return config_cls(**{**base_kwargs(vocab_size), **SPECIAL_IDS, **overrides})


def tiny_model(
    family: str = "llama", seed: int = 0, vocab_size: int = 512, **overrides: Any
) -> PreTrainedModel:
    """A randomly initialised tiny causal LM of ``family`` (float32, eval mode, CPU).

    The same ``seed`` gives the same weights; the global RNG state is left as it was.
    """
    config = tiny_config(family, vocab_size=vocab_size, **overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model.eval()


def tiny_tokenizer(vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on a built-in English text (pad 0, bos 1, eos 2).

    Trained once per process and vocabulary size; every call returns an independent copy, so a test
    that changes e.g. ``padding_side`` cannot affect another.
    """
    return copy.deepcopy(_trained_tokenizer(vocab_size))


@lru_cache(maxsize=4)
def _trained_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    return train_bpe_tokenizer(TINY_TEXT.split("\n"), vocab_size=vocab_size)


# Written for slimkit: plain everyday English with a spread of common words, numbers and punctuation.
TINY_TEXT = """\
The river runs past the old mill and under the stone bridge before it reaches the sea.
In the morning the baker opens the shop at six, and the first customers are the fishermen.
A small model can learn simple facts: the capital of a country, the year a town was founded.
Anna lives in a house with a red door. Her brother Tom works at the station near the market.
The train to the north leaves at 7:15 and arrives three hours later, if the weather is good.
Children walk to school along the river; in winter the path is covered with snow and ice.
The library has more than 20,000 books, and the oldest one was printed in the year 1650.
When it rains, the streets are quiet and the cafes are full of people reading newspapers.
The market sells apples, bread, cheese, fish, flowers and honey from the farms in the valley.
Scientists measure the temperature of the water every day and write the numbers in a notebook.
The museum shows paintings of ships, maps of the coast and tools that farmers used long ago.
She asked, "Where is the nearest post office?" and he answered, "Turn left after the church."
Every summer there is a music festival in the park, with concerts from noon until midnight.
The company builds small electric boats; its workshop is next to the harbour in the east.
Questions and answers: Who wrote the letter? The teacher did. Where was it sent? To the city.
He learned to play the piano when he was seven, and now he teaches music to young students.
The mountain is 2,400 metres high, and the climb to the top takes about five hours.
Birds fly south in autumn; they return in spring when the days become longer and warmer.
The doctor said the patient should rest, drink water and come back to the clinic next week.
Our team finished the project on time because everyone shared the work and helped each other.
The road between the two villages was repaired last year, so the bus is faster than before.
A good story has a beginning, a middle and an end, and the reader wants to know what happens next.
The farmer planted wheat in the north field and potatoes in the south field near the forest.
At night the lighthouse sends a bright light over the water so that ships can find the port.
The price of the ticket is 12 euros for adults and 6 euros for children under twelve years old.
They opened the windows, cleaned the kitchen, and cooked soup with carrots, onions and beans.
The first bridge over the river was made of wood; the second, built in 1890, was made of stone.
Many people in the town speak two languages, and the signs on the streets are written in both.
The weather report says it will be sunny tomorrow, with a light wind from the west.
When the meeting ended, the manager thanked everyone and wrote a short summary of the decisions.
"""
