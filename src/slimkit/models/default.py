"""The built-in world's default model: a small LLaMA trained on factworld, cached after first use.

``default_model()`` returns (model, tokenizer). The first call generates the default world, trains a
byte-level BPE tokenizer and a small LLaMA on the world corpus with slimkit's own training loop (a few
minutes on two CPU cores), and saves a plain Hugging Face directory in the cache; later calls load it
in about a second. The cache lives in the user cache directory (``platformdirs``), or in
``$SLIMKIT_CACHE`` when set. Its sub-directory name carries a hash of the recipe, so changing the
recipe never serves a stale model.

The recipe is tuned so the model *knows* the world: >= 90% exact match on closed-book questions about
the most popular half of the facts, clearly less on the rarest ones (facts seen once in training) —
the gap that pruning and the Junk DNA analysis measure. Numbers measured here are in docs/factworld.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from slimkit.core.config import Config, check_positive
from slimkit.core.errors import ConfigError
from slimkit.core.progress import console

# 2: packed windows shift by a random offset each epoch; 3: documents joined by a blank line, not EOS
RECIPE_VERSION = 3


@dataclass(frozen=True)
class DefaultModelRecipe(Config):
    """How the default model is built: the world, the tokenizer, the architecture and the training run.

    Attributes:
        world_seed (int): seed of the default world. Default: 0.
        vocab_size (int): BPE vocabulary size. Default: 2048.
        hidden_size, intermediate_size, num_layers, num_heads, num_kv_heads (int): LLaMA shape.
        seqlen (int): training window (and the model's max positions is 2x this). Default: 128.
        tie_embeddings (bool): share the input embedding and lm_head. Default: False.
        world (dict): :class:`~slimkit.data.factworld.WorldConfig` fields beyond the seed (e.g. the
            reader options of :data:`slimkit.models.reader.READER_RECIPE`). Default: {} (the default
            world); an empty mapping leaves the fingerprint what it was before the field existed.
        train (dict): TrainConfig fields. Default: 600 steps of 16 x 128 tokens (~35 epochs of the
            ~35k-token corpus), AdamW lr 1.5e-3 (betas 0.9/0.95, weight decay 0.1 on matrices), 30 warm-up
            steps, cosine to 0.1 x lr, clipping at 1.0 — tuned on 2 CPU cores (docs/factworld.md).
    """

    world_seed: int = 0
    vocab_size: int = 2048
    hidden_size: int = 256
    intermediate_size: int = 688
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 4
    seqlen: int = 128
    tie_embeddings: bool = False
    world: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(
        default_factory=lambda: {
            "steps": 600,
            "batch_size": 16,
            "seqlen": 128,
            "warmup_steps": 30,
            "min_lr_ratio": 0.1,
            "grad_clip": 1.0,
            "optimizer": {"type": "AdamWConfig", "lr": 1.5e-3, "betas": [0.9, 0.95], "weight_decay": 0.1},
            "seed": 0,
            "log_every": 50,
        }
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_layers",
            "num_heads",
            "num_kv_heads",
            "seqlen",
        ):
            check_positive(name, getattr(self, name))
        if "seed" in self.world:
            raise ConfigError("world must not set 'seed'; the recipe's world_seed is the world's seed")
        self.world_config()  # a bad world option fails here, naming the field

    def world_config(self) -> Any:
        """The :class:`~slimkit.data.factworld.WorldConfig` the model is trained on."""
        from slimkit.data.factworld import WorldConfig

        return WorldConfig(seed=self.world_seed, **self.world)

    def fingerprint(self) -> str:
        """A short hash of everything that shapes the trained model: recipe, world config, generator."""
        from slimkit.data.factworld import GENERATOR_VERSION

        world = self.world_config().to_dict()
        recipe = self.to_dict()
        if not self.world:
            del recipe["world"]  # the default recipe's hash (and cached model) predate the field
        blob = json.dumps(
            {"recipe": recipe, "v": RECIPE_VERSION, "world": world, "generator": GENERATOR_VERSION},
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:10]


DEFAULT_RECIPE = DefaultModelRecipe()


def cache_root() -> Path:
    """``$SLIMKIT_CACHE`` or the platform's user cache directory for slimkit."""
    env = os.environ.get("SLIMKIT_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("slimkit"))


def default_world_dir(recipe: DefaultModelRecipe = DEFAULT_RECIPE) -> Path:
    """The default world's files (corpus, held-out text, task JSONL), built into the cache on first use."""
    from slimkit.data.factworld import GENERATOR_VERSION, build_world
    from slimkit.data.factworld.build import FILES_VERSION

    cfg = recipe.world_config()

    key = f"{cfg.to_json()}|generator-{GENERATOR_VERSION}|files-{FILES_VERSION}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    path = cache_root() / f"world-{digest}"
    if (path / "world.json").is_file():
        return path
    with _lock(cache_root() / ".world.lock"):
        if not (path / "world.json").is_file():
            build_world(path, cfg)
    return path


# the default world's file each evaluation suite reads when the user gives no --data
DEFAULT_SUITE_FILES = {
    "ppl": "heldout.txt",
    "factoid": "factoid.jsonl",
    "mc": "mc.jsonl",
    "retrieval": "retrieval.jsonl",
    "twohop": "twohop.jsonl",
    "summarization": "summarization.jsonl",
}


def default_world_data(suite: str, recipe: DefaultModelRecipe = DEFAULT_RECIPE) -> str | None:
    """Path of the default world's file for ``suite`` (held-out text, factoid questions), or None."""
    name = DEFAULT_SUITE_FILES.get(suite)
    return None if name is None else str(default_world_dir(recipe) / name)


def default_model_dir(recipe: DefaultModelRecipe = DEFAULT_RECIPE, *, retrain: bool = False) -> Path:
    """Directory of the cached default model, training it first if needed (or when ``retrain``)."""
    path = cache_root() / f"default-model-{recipe.fingerprint()}"
    if (path / "config.json").is_file() and not retrain:
        return path
    with _lock(cache_root() / ".default-model.lock"):
        if retrain or not (path / "config.json").is_file():
            _train_default(recipe, path)
    return path


def default_model(
    recipe: DefaultModelRecipe = DEFAULT_RECIPE,
    *,
    device: str = "cpu",
    dtype: str | torch.dtype | None = None,
    retrain: bool = False,
) -> tuple[Any, Any]:
    """(model, tokenizer) of the built-in world, trained and cached on first use."""
    from slimkit.models.loading import load_model

    return load_model(default_model_dir(recipe, retrain=retrain), device=device, dtype=dtype)


def build_default_architecture(recipe: DefaultModelRecipe, vocab_size: int, tokenizer: Any) -> Any:
    """A freshly initialised LLaMA of the recipe's shape (weights from the training seed)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.num_layers,
        num_attention_heads=recipe.num_heads,
        num_key_value_heads=recipe.num_kv_heads,
        max_position_embeddings=2 * recipe.seqlen,
        tie_word_embeddings=recipe.tie_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(int(recipe.train.get("seed", 0)))
    return LlamaForCausalLM(config)


def _train_default(recipe: DefaultModelRecipe, path: Path) -> None:
    from slimkit.models.loading import save_model

    console().print(f"[bold]slimkit[/bold]: training the default world model (first use; cached in {path})")
    cpu_start = time.process_time()
    model, tokenizer, token_ids, result, _ = train_recipe(recipe)
    cpu_s = time.process_time() - cpu_start
    save_model(
        model,
        tokenizer,
        path,
        metadata={
            "method": "factworld-default",
            "recipe": recipe.to_dict(),
            "train": {
                "steps": len(result.losses),
                "final_loss": result.losses[-1],
                "wall_time_s": result.wall_time_s,
                "tokens_per_s": result.tokens_per_s,
                "cpu_time_s": cpu_s,
                "corpus_tokens": int(token_ids.numel()),
            },
        },
    )
    console().print(
        f"default model trained in {result.wall_time_s:.0f} s (final loss {result.losses[-1]:.3f}); saved to {path}"
    )


def train_recipe(
    recipe: DefaultModelRecipe, *, steps: int | None = None
) -> tuple[Any, Any, torch.Tensor, Any, Any]:
    """Generate the recipe's world, train its tokenizer and model.

    Returns (model, tokenizer, token_ids, train result, world).

    ``steps`` shortens the run (warm-up scaled in proportion), as the copy probe does.
    """
    from slimkit.data.factworld import DOCUMENT_SEPARATOR, generate_world
    from slimkit.data.tokenizer import train_bpe_tokenizer
    from slimkit.train import TrainConfig, tokenize_documents, train

    world = generate_world(recipe.world_config())
    docs = world.corpus_documents()
    tokenizer = train_bpe_tokenizer(docs, vocab_size=recipe.vocab_size)
    # documents joined by a blank line, as in corpus.txt and as perplexity reads held-out text
    token_ids = tokenize_documents(tokenizer, docs, separator=DOCUMENT_SEPARATOR)
    model = build_default_architecture(recipe, len(tokenizer), tokenizer)
    fields = dict(recipe.train)
    if steps is not None:
        full = int(fields.get("steps", steps))
        fields["warmup_steps"] = min(steps, round(int(fields.get("warmup_steps", 0)) * steps / max(full, 1)))
        fields["steps"] = steps
    train_cfg = TrainConfig.from_dict(fields)
    with torch.inference_mode(False):
        result = train(model, token_ids, train_cfg)
    model.eval()
    return model, tokenizer, token_ids, result, world


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An inter-process lock so two commands never train/build the same cache entry at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
