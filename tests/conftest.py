"""Shared fixtures: tiny models and a real tokenizer (built in milliseconds, nothing downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from slimkit.models import save_model, tiny_model, tiny_tokenizer

# Tiny models gain nothing from intra-op threads, and on a busy machine the thread hand-offs cost
# tens of milliseconds per matmul; one thread keeps the unit tier fast everywhere.
torch.set_num_threads(int(os.environ.get("SLIMKIT_TEST_THREADS", "1")))


@pytest.fixture
def tiny_tok():
    """A fresh copy of the built-in BPE tokenizer (vocab 512; pad 0, bos 1, eos 2)."""
    return tiny_tokenizer()


@pytest.fixture
def tiny_llama():
    """A seeded 2-block LLaMA (hidden 64, vocab 512) in eval mode."""
    return tiny_model("llama", seed=0)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny LLaMA directory with tokenizer and slimkit.json. Shared: do not modify it."""
    return save_model(
        tiny_model("llama", seed=0), tiny_tokenizer(), tmp_path_factory.mktemp("models") / "tiny-llama"
    )


@pytest.fixture
def private_model_cache(tmp_path, monkeypatch):
    """slimkit's model cache (converted GGUF files, named models) in this test's tmp_path, never the user's."""
    monkeypatch.setenv("SLIMKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
