"""What every CLI test asserts, in one place: run a command as the console script does, check one-line errors."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

from slimkit.cli.errors import run_cli
from slimkit.cli.main import app

COMMAND = typer.main.get_command(app)


def run(args: list, capsys) -> tuple[int, str, str]:
    """``slimkit ARGS`` in-process, through the handler the console script uses: (exit code, stdout, stderr)."""
    code = run_cli(COMMAND, [str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *needles: str, exit_code: int = 2) -> None:
    """Exit ``exit_code``, exactly one non-empty stderr line, no traceback, every needle in that line."""
    assert code == exit_code, (code, err)
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle.lower() in lines[0].lower(), (needle, lines[0])


@contextlib.contextmanager
def read_only_dir(path: Path) -> Iterator[Path]:
    """``path`` made unwritable, for root too (the immutable attribute); skips where that cannot be done."""
    path.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        if os.geteuid() == 0:
            pytest.skip("cannot make a directory read-only here (no chattr, and root ignores permissions)")
        path.chmod(0o555)
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)
        path.chmod(0o755)
