"""Write a generated world to a directory: ``world.json``, ``corpus.txt``, ``heldout.txt`` and task JSONL files.

The files are written through :func:`slimkit.core.io.atomic_dir`, so a failed build leaves nothing
behind, and serialised with sorted-free but fixed key order and ``\\n`` line ends, so the same config
always gives byte-identical files. Formats: ``docs/formats.md``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slimkit.core.io import atomic_dir
from slimkit.data.factworld.config import WorldConfig
from slimkit.data.factworld.generator import DOCUMENT_SEPARATOR, World, generate_world
from slimkit.data.factworld.templates import CHAIN_ANSWER_MARKER, WORLD_SUMMARY_TEMPLATE

TASK_FILES = ("factoid", "mc", "retrieval", "twohop", "summarization", "canaries")

HELDOUT_ANSWERS_FILE = "heldout.answers.jsonl"
"""Beside ``heldout.txt``: the character spans of the facts' objects in it, one JSON object a line
(``{"start": int, "end": int, "fact": id}``), which answer-token perplexity scores."""

FILES_VERSION = 2
"""Bumped when the files a build writes change while the corpus does not: the world's cache
directory keys on it, the default model's cache does not.
2: held-out text that is held out (multi-fact documents, none in the corpus, training fact
distribution) with ``heldout.answers.jsonl``; ``summarization.jsonl``."""


def task_options(cfg: WorldConfig) -> dict[str, dict[str, object]]:
    """Evaluation settings the world's task files need, written to ``task_options.json``.

    Two-hop answers are chains of thought ending in ``"So the answer is X."``; open-book answers are
    too when the corpus has quoting reading documents that teach that form, and otherwise a bare entity name
    (at most a few tokens, so generation stops at 12 instead of LLM-KICK's 32).
    """
    chained = {"answer_marker": CHAIN_ANSWER_MARKER, "max_new_tokens": 48}
    options: dict[str, dict[str, object]] = {"twohop": dict(chained)}
    quoting = cfg.n_reading_docs > 0 and cfg.reading_answer == "quote"
    options["retrieval"] = dict(chained) if quoting else {"max_new_tokens": 12}
    # a reference summary is one ~20-token sentence per person (two at most)
    options["summarization"] = {"prompt_template": WORLD_SUMMARY_TEMPLATE, "max_new_tokens": 64}
    return options


def build_world(out_dir: str | Path, cfg: WorldConfig | None = None, *, overwrite: bool = False) -> Path:
    """Generate the world for ``cfg`` (default :class:`WorldConfig`) and write it to ``out_dir``.

    Writes ``world.json``, ``corpus.txt``, ``heldout.txt`` (and its ``heldout.answers.jsonl``),
    ``{factoid,mc,retrieval,twohop,summarization,canaries}.jsonl`` and ``task_options.json`` (the
    evaluation settings the tasks need);
    an existing ``out_dir`` is replaced atomically. Returns ``out_dir`` as a :class:`Path`.
    """
    world = generate_world(cfg or WorldConfig())
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        write_world(world, tmp)
    return out_dir


def write_world(world: World, directory: Path) -> None:
    """Write every file of ``world`` into an existing ``directory`` (not atomic; see :func:`build_world`)."""
    _write(directory / "world.json", json.dumps(world.to_dict(), indent=1, ensure_ascii=False) + "\n")
    _write(directory / "corpus.txt", DOCUMENT_SEPARATOR.join(world.corpus_documents()) + "\n")
    _write(directory / "heldout.txt", DOCUMENT_SEPARATOR.join(world.heldout_documents()) + "\n")
    _write(directory / HELDOUT_ANSWERS_FILE, "".join(_jsonl_line(s) for s in world.heldout_answer_spans()))
    for name in TASK_FILES:
        _write(directory / f"{name}.jsonl", "".join(_jsonl_line(r) for r in world.tasks[name]))
    _write(directory / "task_options.json", json.dumps(task_options(world.config), indent=1) + "\n")


def read_documents(path: str | Path) -> list[str]:
    """The documents of a ``corpus.txt`` / ``heldout.txt`` file (split on blank lines)."""
    text = Path(path).read_text(encoding="utf-8")
    return [d.strip("\n") for d in text.split(DOCUMENT_SEPARATOR) if d.strip()]


def _jsonl_line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False) + "\n"


def _write(path: Path, text: str) -> None:
    # newline="" keeps "\n" on every platform, which byte-identical builds need
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)
