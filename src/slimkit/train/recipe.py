"""``slimkit train CONFIG.yaml``: a whole training run described by one YAML file.

```yaml
model:                       # exactly one of init / path
  init: {family: llama, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2,
         num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 256}
  # path: models/my-llama    # an existing model directory (slimkit.load_model)
tokenizer:                   # a tokenizer directory, {path: DIR}, or train one on the data;
  train: {vocab_size: 512}   # may be omitted with model.path (the model's own tokenizer is used)
data: corpus.txt             # any slimkit text source: .txt (blank-line separated), .jsonl, world:corpus
train: {steps: 100, batch_size: 8, seqlen: 128, optimizer: {lr: 0.001}}   # TrainConfig fields
out: runs/tiny               # checkpoints/, tokenizer/ (when trained) and model/ go here
```

Relative ``data``, ``model.path`` and ``tokenizer`` paths are resolved against the YAML file's
directory when something exists there, else against the working directory; ``out`` is relative to
the working directory. The finished model is saved with :func:`slimkit.models.save_model` into
``out/model`` with the train config and result in its ``slimkit.json``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from slimkit.core.config import Config, load_yaml_text
from slimkit.core.distributed import barrier, distributed_context, is_main_process, local_device
from slimkit.core.errors import CheckpointError, ConfigError, DataError, ModelLoadError
from slimkit.core.io import atomic_dir, check_output_dir
from slimkit.core.seed import seed_everything
from slimkit.train.checkpoint import list_checkpoints
from slimkit.train.config import TrainConfig
from slimkit.train.data import PackedSampler, tokenize_documents
from slimkit.train.loop import TrainResult, train

_SECTIONS = {"model", "tokenizer", "data", "train", "out"}
_MODEL_KEYS = {"init", "path"}
_TOKENIZER_KEYS = {"path", "train"}
_TOKENIZER_TRAIN_KEYS = {"vocab_size", "min_frequency"}


@dataclass(frozen=True, kw_only=True)
class TrainRecipe(Config):
    """A training run: which model, tokenizer and text, how to train, where to write.

    Attributes:
        model (dict): ``{"init": {"family": model_type, **hf_config_fields}}`` for a fresh random
            init, or ``{"path": DIR}`` for an existing model directory.
        tokenizer (str | dict | None): a tokenizer directory, ``{"path": DIR}``, or
            ``{"train": {"vocab_size": N, "min_frequency": 2}}`` (a byte-level BPE trained on ``data``).
            None with ``model.path``: the model's tokenizer. Default: None.
        data (str): a text source spec (see :func:`slimkit.data.sources.read_documents`).
        train (TrainConfig): the loop's config (a mapping of its fields in YAML). Default: TrainConfig().
        out (str): the run directory.
    """

    model: dict[str, Any]
    tokenizer: str | dict[str, Any] | None = None
    data: str
    train: TrainConfig = field(default_factory=TrainConfig)
    out: str

    def __post_init__(self) -> None:
        if isinstance(self.train, Mapping):
            object.__setattr__(self, "train", TrainConfig.from_dict(dict(self.train)))
        super().__post_init__()
        if not isinstance(self.train, TrainConfig):
            raise ConfigError(f"train must be a mapping of TrainConfig fields, got {self.train!r}")
        check_model_section(self.model)
        check_tokenizer_section(self.tokenizer, has_model_path="path" in self.model)
        if not self.data.strip():
            raise ConfigError("data must name a text source (a .txt/.jsonl file or e.g. world:corpus)")
        if not self.out.strip():
            raise ConfigError("out must name the run directory")


def load_recipe(
    path: str | Path, *, data: str | Path | None = None, out: str | Path | None = None
) -> TrainRecipe:
    """Read and validate a training YAML, resolving relative input paths against its directory.

    Args:
        path: the YAML file.
        data: replaces the file's ``data`` (e.g. a test's own text file).
        out: replaces the file's ``out``.

    Raises:
        ConfigError: missing file, malformed YAML, unknown keys, out-of-range values.
    """
    path = Path(path)
    raw = read_config_mapping(path, "training config", "model, data, train, out")
    if data is not None:
        raw["data"] = str(data)
    if out is not None:
        raw["out"] = str(out)
    unknown = sorted(set(raw) - _SECTIONS)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; known keys: {sorted(_SECTIONS)}")
    if isinstance(raw.get("train"), Mapping):  # the most edited section: report its mistakes first
        raw["train"] = TrainConfig.from_dict(dict(raw["train"]))
    missing = [k for k in ("model", "data", "out") if k not in raw]
    if missing:
        raise ConfigError(f"{path}: missing section(s) {missing} (see docs/training.md)")
    recipe = TrainRecipe.from_dict(raw)
    base = path.resolve().parent
    model = dict(recipe.model)
    if "path" in model:
        model["path"] = resolve_input(model["path"], base)
    tokenizer = recipe.tokenizer
    if isinstance(tokenizer, str):
        tokenizer = resolve_input(tokenizer, base)
    elif isinstance(tokenizer, dict) and "path" in tokenizer:
        tokenizer = {"path": resolve_input(tokenizer["path"], base)}
    return recipe.replace(model=model, tokenizer=tokenizer, data=resolve_input(recipe.data, base))


def train_from_yaml(
    path: str | Path,
    resume: bool = False,
    *,
    data: str | Path | None = None,
    out: str | Path | None = None,
) -> tuple[TrainResult, Path]:
    """Run the training described by the YAML at ``path``; returns (result, run directory).

    The trained model is in ``<run directory>/model``. With ``resume`` the run continues from the
    newest checkpoint in ``out/checkpoints`` (a trained tokenizer is read back from ``out/tokenizer``
    rather than trained again). ``data`` / ``out`` override the file's values.

    Raises:
        ConfigError: a bad config. DataError: unreadable or too little text.
        ModelLoadError: ``model.path`` / the tokenizer directory cannot be loaded.
        CheckpointError: nothing to resume, or ``out`` already holds a run and ``resume`` is off.
    """
    recipe = load_recipe(path, data=data, out=out)
    cfg = recipe.train
    out_dir = Path(recipe.out)
    if not resume and list_checkpoints(out_dir / "checkpoints"):
        raise CheckpointError(
            f"{out_dir} already holds a training run; use --resume to continue it or choose another out"
        )
    check_output_dir(out_dir / "model")
    # under torchrun one group spans the whole run; train() joins it
    with distributed_context(local_device(cfg.device)):
        return _run_recipe(recipe, out_dir, resume)


def _run_recipe(recipe: TrainRecipe, out_dir: Path, resume: bool) -> tuple[TrainResult, Path]:
    """Rank 0 (or the only process) prepares and writes the tokenizer and the model; every rank trains."""
    cfg = recipe.train
    main = is_main_process()
    barrier()  # every rank checked `out` before rank 0 writes into it
    seed_everything(cfg.seed)
    docs = read_recipe_documents(recipe.data)
    if main:
        tokenizer, trained_tokenizer = _tokenizer_for(recipe, docs, out_dir, resume)
        model, tokenizer = _model_for(recipe, tokenizer, cfg.seed)
        token_ids = tokenize_documents(tokenizer, docs)
        PackedSampler(
            token_ids, cfg.seqlen, cfg.seed
        )  # too little text fails here, before anything is written
        if trained_tokenizer:
            # kept with the run so --resume tokenizes the corpus identically without retraining; written
            # only once everything above has been accepted, so a rejected run leaves nothing behind
            with atomic_dir(out_dir / "tokenizer") as tmp:
                tokenizer.save_pretrained(tmp)
    barrier()
    if not main:  # rank 0's tokenizer (read back when it trained one), so every rank tokenizes alike
        tokenizer, _ = _tokenizer_for(recipe, docs, out_dir, resume=True)
        model, tokenizer = _model_for(recipe, tokenizer, cfg.seed)
        token_ids = tokenize_documents(tokenizer, docs)
    with torch.inference_mode(False):
        result = train(model, token_ids, cfg, out_dir, resume=resume)
    model.eval()
    from slimkit.nn.int8 import restore_linears_

    # Q-GaLore trains INT8 linears in place; the saved model holds their dequantised weights as
    # ordinary nn.Linear so any loader (transformers included) reads it
    restore_linears_(model)

    from slimkit.models.loading import save_model

    if not main:  # every rank holds the same weights; rank 0 saves them
        barrier()
        return result, out_dir
    save_model(
        model,
        tokenizer,
        out_dir / "model",
        metadata={
            "method": "train",
            "train_config": cfg.to_dict(),
            "recipe": recipe.to_dict(),
            "train_result": {
                "steps": result.steps,
                "final_loss": result.losses[-1] if result.losses else None,
                "tokens_seen": result.tokens_seen,
                "tokens_per_s": result.tokens_per_s,
                "wall_time_s": result.wall_time_s,
                "final_lr": result.final_lr,
                "corpus_tokens": int(token_ids.numel()),
            },
        },
        parent=recipe.model.get("path"),
    )
    barrier()
    return result, out_dir


# -- sections ----------------------------------------------------------------------------------------------
def read_config_mapping(path: Path, what: str, sections: str) -> dict[str, Any]:
    """The YAML mapping in ``path`` (its ``type`` key dropped), for a recipe-like config ``what`` whose
    sections are named in ``sections``; ConfigError for a missing file, bad YAML or a non-mapping."""
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    raw = load_yaml_text(path.read_text(), source=str(path))
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: a{'n' if what[0] in 'aeiou' else ''} {what} must be a mapping with {sections}"
        )
    raw.pop("type", None)
    return raw


def check_model_section(model: Any) -> None:
    if not isinstance(model, dict) or len(set(model) & _MODEL_KEYS) != 1 or set(model) - _MODEL_KEYS:
        raise ConfigError(
            f"model must have exactly one of 'init' (a fresh model) or 'path' (a model directory), got {model!r}"
        )
    if "init" in model:
        init = model["init"]
        if not isinstance(init, dict) or not isinstance(init.get("family"), str):
            raise ConfigError("model.init must be a mapping with 'family' (e.g. llama) and HF config fields")
    elif not isinstance(model["path"], str) or not model["path"].strip():
        raise ConfigError(f"model.path must be a directory path, got {model['path']!r}")


def check_tokenizer_section(tokenizer: Any, *, has_model_path: bool) -> None:
    if tokenizer is None:
        if not has_model_path:
            raise ConfigError(
                "tokenizer is required with model.init: a directory or {train: {vocab_size: N}}"
            )
        return
    if isinstance(tokenizer, str):
        return
    if not isinstance(tokenizer, dict) or len(tokenizer) != 1 or set(tokenizer) - _TOKENIZER_KEYS:
        raise ConfigError(
            f"tokenizer must be a directory, {{path: DIR}} or {{train: {{vocab_size: N}}}}, got {tokenizer!r}"
        )
    if "train" in tokenizer:
        spec = tokenizer["train"]
        if not isinstance(spec, dict) or set(spec) - _TOKENIZER_TRAIN_KEYS:
            raise ConfigError(f"tokenizer.train accepts {sorted(_TOKENIZER_TRAIN_KEYS)}, got {spec!r}")
        if has_model_path:
            raise ConfigError(
                "tokenizer.train cannot be combined with model.path (its embeddings fit its tokenizer)"
            )


def resolve_input(spec: str, base: Path) -> str:
    """``spec`` beside the YAML file when it exists there; otherwise as given (working directory, or a
    ``scheme:rest`` source such as ``world:corpus``; the reader reports a missing path)."""
    if not Path(spec).is_absolute() and (base / spec).exists():
        return str(base / spec)
    return spec


def read_recipe_documents(spec: str) -> list[str]:
    try:
        from slimkit.data.sources import read_documents
    except ImportError:
        return _read_txt_documents(Path(spec))
    return read_documents(spec)


def _read_txt_documents(path: Path) -> list[str]:
    """Fallback reader: blank-line separated documents of a .txt file."""
    if not path.is_file():
        raise DataError(f"text source not found: {path}")
    docs = [block.strip() for block in re.split(r"\n\s*\n", path.read_text(encoding="utf-8"))]
    return [d for d in docs if d]


def _tokenizer_for(recipe: TrainRecipe, docs: list[str], out_dir: Path, resume: bool) -> tuple[Any, bool]:
    """(tokenizer, whether it was trained now and still has to be saved with the run)."""
    spec = recipe.tokenizer
    if spec is None:
        return None, False  # the model directory's own
    if isinstance(spec, str) or "path" in spec:
        return load_recipe_tokenizer(spec if isinstance(spec, str) else spec["path"]), False
    saved = out_dir / "tokenizer"
    if resume and saved.is_dir():
        return load_recipe_tokenizer(str(saved)), False
    from slimkit.data.tokenizer import train_bpe_tokenizer

    return train_bpe_tokenizer(docs, **spec["train"]), True


def load_recipe_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    if not Path(path).is_dir():
        raise ModelLoadError(f"tokenizer directory not found: {path}")
    try:
        return AutoTokenizer.from_pretrained(path)
    except Exception as e:  # transformers raises many types for a bad directory
        raise ModelLoadError(
            f"the tokenizer in {path} could not be loaded: {str(e).splitlines()[0]}"
        ) from None


def _model_for(recipe: TrainRecipe, tokenizer: Any, seed: int) -> tuple[torch.nn.Module, Any]:
    if "path" in recipe.model:
        from slimkit.models.loading import load_model

        model, own_tokenizer = load_model(
            recipe.model["path"], dtype="float32", with_tokenizer=tokenizer is None
        )
        return model, tokenizer if tokenizer is not None else own_tokenizer
    torch.manual_seed(seed)
    return fresh_model(recipe.model["init"], tokenizer), tokenizer


def fresh_model(init: dict[str, Any], tokenizer: Any) -> torch.nn.Module:
    """A randomly initialised ``AutoModelForCausalLM`` of ``init["family"]`` (a transformers model_type)."""
    from transformers import AutoModelForCausalLM
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    fields = dict(init)
    family = fields.pop("family")
    if family not in CONFIG_MAPPING:
        raise ConfigError(
            f"model.init.family={family!r} is not a transformers model_type (e.g. llama, qwen2, gpt2)"
        )
    config_cls = CONFIG_MAPPING[family]
    known = set(inspect.signature(config_cls.__init__).parameters) | set(config_cls().to_dict())
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ConfigError(f"model.init: unknown {family} config field(s) {unknown}")
    vocab = len(tokenizer)
    fields.setdefault("vocab_size", vocab)
    if not isinstance(fields["vocab_size"], int) or fields["vocab_size"] < vocab:
        raise ConfigError(
            f"model.init.vocab_size={fields['vocab_size']} is smaller than the tokenizer's {vocab} tokens"
        )
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if getattr(tokenizer, name, None) is not None:
            fields.setdefault(name, getattr(tokenizer, name))
    try:
        config = config_cls(**fields)
        return AutoModelForCausalLM.from_config(config)
    except Exception as e:  # ValueError, TypeError, huggingface_hub's StrictDataclass validation errors, ...
        # the innermost message says what is wrong ("hidden size (30) is not a multiple of ...")
        while e.__cause__ is not None or e.__context__ is not None:
            e = e.__cause__ or e.__context__
        reason = " ".join(str(e).split()) or type(e).__name__
        raise ConfigError(f"model.init: transformers rejected the {family} config: {reason}") from None


__all__ = ["TrainRecipe", "load_recipe", "train_from_yaml"]
