"""Import GGUF files (llama.cpp's format) into ordinary safetensors model directories.

    info = read_gguf_info("model.gguf")                    # header only: architecture, quantization
    convert_gguf("model.gguf", "out/")                     # dequantized float32 (or dtype="bfloat16")
    model, tok = load_model("model.gguf")                  # converted once into the cache, then loaded

A GGUF file holds the weights (often block-quantized: Q4_1, Q8_0, K-quants, ...), the config and the
tokenizer (vocabulary, merges, special tokens, chat template) as metadata. transformers reads it
(``from_pretrained(dir, gguf_file=name)``) and dequantizes every tensor; the model it returns is
still marked GGUF-quantized and refuses ``save_pretrained``, so :func:`convert_gguf` rebuilds a plain
model from the config, copies the dequantized tensors in strictly, and saves it with
:func:`slimkit.models.save_model` (atomic: a failed import leaves nothing at ``out``). The
directory's ``slimkit.json`` records the source file (name, size, sha256) and its quantization.

:func:`cached_gguf_dir` keys the cache by the file's sha256, so a file is converted once however it
is named or wherever it lies, and an edited file is never served stale.

Needs the ``gguf`` extra (``pip install 'slimkit[gguf]'``: the ``gguf`` reader and ``accelerate``,
which transformers requires for GGUF loading).
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from slimkit.core.errors import ConfigError, ModelLoadError, SlimkitError, UnsupportedArchitectureError

GGUF_MAGIC = b"GGUF"
# bump when the conversion changes what it writes, so the cache never serves an old conversion
CONVERTER_VERSION = 1
# llama.cpp architecture names transformers renames before looking them up (modeling_gguf_pytorch_utils)
_ARCH_ALIASES = {
    "qwen2moe": "qwen2_moe",
    "qwen3moe": "qwen3_moe",
    "gpt-oss": "gpt_oss",
    "minimax-m2": "minimax_m2",
    "t5encoder": "t5",
}
_SHA_MEMO: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class GGUFInfo:
    """What a GGUF file's header says (read without dequantizing anything).

    Attributes:
        path: the file.
        size_bytes: its size.
        architecture: ``general.architecture`` (llama.cpp's name, e.g. ``llama``).
        name: ``general.name`` or None.
        file_type: ``general.file_type`` as llama.cpp names it (``MOSTLY_Q4_1``, ``ALL_F32``) or None.
        quantization: the quantization in short (``Q4_1``, ``F32``): from ``file_type``, or the most
            common type of the 2-D tensors when the file has no ``file_type``.
        tensor_types: tensor type -> how many tensors are stored in it (``{"Q4_1": 210, "F32": 61}``).
        n_tensors: number of tensors.
        tokenizer_model: ``tokenizer.ggml.model`` (``gpt2``, ``llama``, ...) or None when the file has
            no tokenizer.
        has_chat_template: whether ``tokenizer.chat_template`` is present.
    """

    path: str
    size_bytes: int
    architecture: str
    name: str | None
    file_type: str | None
    quantization: str
    tensor_types: dict[str, int] = field(default_factory=dict)
    n_tensors: int = 0
    tokenizer_model: str | None = None
    has_chat_template: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- the environment -------------------------------------------------------------------------------------------
def _gguf_module() -> Any:
    try:
        import gguf
    except ImportError:
        raise SlimkitError(
            "reading GGUF files needs the 'gguf' package: pip install 'slimkit[gguf]' (or pip install gguf accelerate)"
        ) from None
    return gguf


def _check_accelerate() -> None:
    import importlib.util

    if importlib.util.find_spec("accelerate") is None:
        raise SlimkitError(
            "transformers loads GGUF files only with 'accelerate' installed: pip install 'slimkit[gguf]'"
        )


def supported_gguf_architectures() -> list[str]:
    """The GGUF architectures (``general.architecture``) the installed transformers can read."""
    names: set[str] = set()
    try:
        from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

        names.update(GGUF_SUPPORTED_ARCHITECTURES)
    except ImportError:  # pragma: no cover - every transformers slimkit supports has the table
        pass
    try:  # transformers >= 5.x: architectures its packed-weight GGUF path handles
        from transformers.integrations.gguf import GGUF_ARCHS

        names.update(GGUF_ARCHS)
    except (ImportError, AttributeError):
        pass
    names.difference_update({"general", "tokenizer", "tokenizer_config"})  # mapping groups, not models
    return sorted(names)


def gguf_architecture_supported(architecture: str) -> bool:
    """Whether transformers reads a GGUF of ``architecture`` (llama.cpp's name)."""
    supported = set(supported_gguf_architectures())
    candidates = {architecture, _ARCH_ALIASES.get(architecture, architecture), architecture.replace("-", "_")}
    return bool(candidates & supported)


# -- reading the header ----------------------------------------------------------------------------------------
def is_gguf_file(path: str | Path) -> bool:
    """Whether ``path`` is a file starting with the GGUF magic bytes."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


def _check_file(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelLoadError(f"GGUF file does not exist: {path}")
    if path.is_dir():
        raise ModelLoadError(f"{path} is a directory; give the .gguf file itself")
    if not is_gguf_file(path):
        raise ModelLoadError(
            f"{path} is not a GGUF file (it does not start with the bytes 'GGUF'); give a llama.cpp .gguf file"
        )
    return path


def _field_value(reader: Any, key: str) -> Any:
    fld = reader.fields.get(key)
    if fld is None:
        return None
    value = fld.contents()
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def read_gguf_info(path: str | Path) -> GGUFInfo:
    """Read and check a GGUF file's header and tensor table (nothing is dequantized).

    Raises:
        ModelLoadError: the file is missing, not GGUF, or truncated/corrupt (a tensor's data runs past
            the end of the file).
        UnsupportedArchitectureError: transformers cannot read this architecture (the message lists
            the ones it can).
        SlimkitError: the ``gguf`` package is not installed.
    """
    path = _check_file(path)
    gguf = _gguf_module()
    try:
        reader = gguf.GGUFReader(str(path))
        architecture = _field_value(reader, "general.architecture")
        name = _field_value(reader, "general.name")
        file_type_id = _field_value(reader, "general.file_type")
        tokenizer_model = _field_value(reader, "tokenizer.ggml.model")
        has_template = "tokenizer.chat_template" in reader.fields
        tensors = [(t.name, t.tensor_type.name, len(t.shape)) for t in reader.tensors]
    except SlimkitError:
        raise
    except Exception as e:  # the reader raises ValueError/IndexError/... on short or garbled files
        raise ModelLoadError(
            f"{path} is not a readable GGUF file (truncated or corrupt? {_first_line(e)}); copy or download it again"
        ) from None
    if not isinstance(architecture, str) or not architecture:
        raise ModelLoadError(f"{path} has no general.architecture; cannot tell what model it holds")
    if not gguf_architecture_supported(architecture):
        raise UnsupportedArchitectureError(
            f"{path}: GGUF architecture {architecture!r} cannot be read by transformers; it reads: "
            f"{', '.join(supported_gguf_architectures())}"
        )
    if not tensors:
        raise ModelLoadError(f"{path} holds no tensors")
    file_type = None
    if isinstance(file_type_id, int):
        try:
            file_type = gguf.LlamaFileType(file_type_id).name
        except ValueError:
            file_type = f"UNKNOWN_{file_type_id}"
    counts = Counter(kind for _, kind, _ in tensors)
    return GGUFInfo(
        path=str(path),
        size_bytes=path.stat().st_size,
        architecture=architecture,
        name=name if isinstance(name, str) else None,
        file_type=file_type,
        quantization=_quantization(file_type, tensors),
        tensor_types=dict(sorted(counts.items())),
        n_tensors=len(tensors),
        tokenizer_model=tokenizer_model if isinstance(tokenizer_model, str) else None,
        has_chat_template=has_template,
    )


def _quantization(file_type: str | None, tensors: list[tuple[str, str, int]]) -> str:
    if file_type and not file_type.startswith(("UNKNOWN", "GUESSED")):
        return file_type.removeprefix("MOSTLY_").removeprefix("ALL_")
    matrices = Counter(kind for _, kind, ndim in tensors if ndim >= 2) or Counter(k for _, k, _ in tensors)
    return matrices.most_common(1)[0][0]


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (streamed; remembered per path, size and mtime within the process)."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_MEMO:
        from slimkit.models.metadata import update_digest

        _SHA_MEMO[key] = update_digest(hashlib.sha256(), path).hexdigest()
    return _SHA_MEMO[key]


# -- conversion ------------------------------------------------------------------------------------------------
def _convert_dtype(dtype: str | torch.dtype) -> torch.dtype:
    # the loader's names (float32/fp32/bfloat16/...); "auto" has no meaning for a file that is dequantized
    from slimkit.models.loading import resolve_dtype

    resolved = resolve_dtype(dtype)
    if not isinstance(resolved, torch.dtype):
        raise ConfigError(f"dtype={dtype!r}: a GGUF import needs float32, bfloat16 or float16")
    return resolved


def convert_gguf(
    path: str | Path,
    out_dir: str | Path,
    *,
    dtype: str | torch.dtype = "float32",
    sha256: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Dequantize a GGUF file into a safetensors model directory (config, weights, tokenizer, chat
    template, ``slimkit.json``); returns ``out_dir``.

    Args:
        path: the ``.gguf`` file.
        out_dir: the directory to write; written atomically (nothing is left there on failure) and
            replaced when it exists.
        dtype: ``float32`` (default), ``bfloat16`` or ``float16``: the dtype of the stored weights.
        sha256: the file's sha256 when already known (it is computed otherwise).
        overwrite: replace an existing ``out_dir`` even if slimkit did not write it. Default: ``False``.

    Raises:
        ModelLoadError / UnsupportedArchitectureError: see :func:`read_gguf_info`; also a file with no
            tokenizer, or one transformers fails on.
        ConfigError: a bad ``dtype``.
        SlimkitError: ``out_dir`` may not be written (see :func:`slimkit.core.io.check_output_dir`).
    """
    from slimkit.core.io import check_output_dir

    target_dtype = _convert_dtype(dtype)
    info = read_gguf_info(path)  # every check on the file and the output before any work
    if info.tokenizer_model is None:
        raise ModelLoadError(
            f"{info.path} has no tokenizer (no tokenizer.ggml.* metadata); slimkit imports a GGUF with its tokenizer"
        )
    check_output_dir(out_dir, protect=(info.path,), overwrite=overwrite)
    _check_accelerate()
    from slimkit.models.loading import _quiet_transformers, load_state_dict_strict_, save_model

    source = Path(info.path)
    digest = sha256 or file_sha256(source)
    start = time.perf_counter()
    with _quiet_transformers():
        gguf_model = _load_with_transformers(source)
        tokenizer = _load_tokenizer(source)
        model = _rebuild_plain(gguf_model, target_dtype, load_state_dict_strict_, source)
        del gguf_model
    # a GGUF carries no model_max_length; without it the tokenizer reports 1e30 tokens
    positions = getattr(model.config, "max_position_embeddings", None)
    if isinstance(positions, int) and tokenizer.model_max_length > positions:
        tokenizer.model_max_length = positions
    seconds = time.perf_counter() - start
    metadata = {
        "method": "gguf-import",
        "source": {
            "file": source.name,
            "path": str(source.resolve()),
            "sha256": digest,
            "size_bytes": info.size_bytes,
            "format": "gguf",
            "architecture": info.architecture,
            "name": info.name,
            "file_type": info.file_type,
            "quantization": info.quantization,
            "tensor_types": info.tensor_types,
        },
        "dtype": str(target_dtype).removeprefix("torch."),
        "converter_version": CONVERTER_VERSION,
        "convert_seconds": round(seconds, 2),  # read + dequantize + rebuild, before writing
    }
    return save_model(model, tokenizer, out_dir, metadata=metadata, overwrite=overwrite)


def _load_with_transformers(source: Path) -> Any:
    from transformers import AutoModelForCausalLM

    try:
        model, loading_info = AutoModelForCausalLM.from_pretrained(
            str(source.parent),
            gguf_file=source.name,
            dtype=torch.float32,
            local_files_only=True,
            output_loading_info=True,
        )
    except SlimkitError:
        raise
    except Exception as e:
        raise ModelLoadError(f"transformers could not read {source}: {_first_line(e)}") from e
    missing = sorted(loading_info.get("missing_keys", ()))
    if missing:
        raise ModelLoadError(
            f"{source}: the GGUF file lacks {len(missing)} tensor(s) the model needs (e.g. {missing[0]})"
        )
    return model


def _load_tokenizer(source: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        # a local directory: transformers reads the file there and looks nothing up online
        return AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    except Exception as e:
        raise ModelLoadError(
            f"transformers could not build the tokenizer of {source}: {_first_line(e)}"
        ) from e


def _rebuild_plain(gguf_model: Any, dtype: torch.dtype, load_strict: Any, source: Path) -> Any:
    """A plain (not GGUF-marked) model of the same config holding the dequantized tensors."""
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(gguf_model.config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    # general.name lands in _model_name_or_path; a converted directory is not named after the file's title
    for attr in ("_model_name_or_path",):
        if attr in config.__dict__:
            delattr(config, attr)
    config.name_or_path = ""
    try:
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    except Exception as e:
        raise ModelLoadError(f"transformers could not build the model of {source}: {_first_line(e)}") from e
    load_strict(model, gguf_model.state_dict(), source=str(source))
    model = model.to(dtype)
    model.config.dtype = dtype
    return model.eval()


# -- the cache -------------------------------------------------------------------------------------------------
def gguf_cache_dir(sha256: str) -> Path:
    """Where the converted directory of a GGUF file with this sha256 lives in the cache."""
    from slimkit.models.default import cache_root

    return cache_root() / f"gguf-{sha256[:16]}-v{CONVERTER_VERSION}"


def _is_converted(model_dir: Path, sha256: str) -> bool:
    from slimkit.models.metadata import read_slimkit_json

    if not (model_dir / "config.json").is_file():
        return False
    try:
        meta = read_slimkit_json(model_dir)
    except ModelLoadError:
        return False
    return meta.get("source", {}).get("sha256") == sha256


def cached_gguf_dir(path: str | Path, *, quiet: bool = False) -> Path:
    """The converted (float32) directory of a GGUF file, converting it into the cache on first use.

    The cache is keyed by the file's sha256 (``$SLIMKIT_CACHE`` or the user cache directory); an
    inter-process lock makes concurrent first uses convert once.
    """
    from slimkit.core.progress import console
    from slimkit.models.default import _lock, cache_root

    source = _check_file(path)
    digest = file_sha256(source)
    target = gguf_cache_dir(digest)
    if _is_converted(target, digest):
        return target
    with _lock(cache_root() / f".gguf-{digest[:16]}.lock"):
        if not _is_converted(target, digest):
            if not quiet:
                console().print(
                    f"[bold]slimkit[/bold]: converting {source.name} (first use; cached in {target})"
                )
            start = time.perf_counter()
            convert_gguf(source, target, sha256=digest)
            if not quiet:
                console().print(f"converted in {time.perf_counter() - start:.1f} s")
    return target


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"
