"""How every command fails: one line on stderr, exit code 2 for bad input, no traceback."""

from __future__ import annotations

import sys

import click

from slimkit.core.errors import SlimkitError

EXIT_BAD_INPUT = 2


def run_cli(command: click.Command, args: list[str] | None = None) -> int:
    """Run a click/typer command; turn :class:`SlimkitError` and usage errors into exit code 2."""
    try:
        command.main(args=args, prog_name="slimkit", standalone_mode=False)
    except SlimkitError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except click.exceptions.UsageError as e:  # bad flag, missing argument, bad choice
        e.show(file=sys.stderr)
        return EXIT_BAD_INPUT
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
