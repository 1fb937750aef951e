"""What a loaded model accepts: its vocabulary, its longest sequence, the width of its hidden states."""

from __future__ import annotations

from torch import nn

__all__ = ["hidden_width", "max_positions", "vocab_size"]


def max_positions(model: nn.Module) -> int | None:
    """The longest sequence the model's config allows (``max_position_embeddings`` or ``n_positions``)."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def vocab_size(model: nn.Module) -> int | None:
    """Rows of the input embedding (what ids may index), or ``config.vocab_size``."""
    get = getattr(model, "get_input_embeddings", None)
    embedding = get() if callable(get) else None
    if isinstance(embedding, nn.Embedding):
        return embedding.num_embeddings
    value = getattr(getattr(model, "config", None), "vocab_size", None)
    return value if isinstance(value, int) and value > 0 else None


def hidden_width(model: nn.Module) -> int | None:
    """Width of the hidden states that flow between decoder blocks."""
    get = getattr(model, "get_input_embeddings", None)
    embedding = get() if callable(get) else None
    if isinstance(embedding, nn.Embedding):
        return embedding.embedding_dim
    value = getattr(getattr(model, "config", None), "hidden_size", None)
    return value if isinstance(value, int) and value > 0 else None
