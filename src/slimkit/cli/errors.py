"""How every command fails: one line on stderr, exit code 2 for bad input, no traceback.

typer >= 0.22 ships its own copy of click (``typer._click``) and raises that copy's exceptions, which
are not subclasses of the installed ``click``'s; older typer raises plain click's. Both families are
caught here so the contract holds whichever typer ``pip`` resolves.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from slimkit.core.errors import SlimkitError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def _classes(name: str) -> tuple[type[BaseException], ...]:
    """``name`` (e.g. ``"UsageError"``) from every click flavour importable here."""
    found: list[type[BaseException]] = []
    for module in ("typer._click.exceptions", "typer.exceptions", "click.exceptions"):
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if isinstance(cls, type) and cls not in found:
            found.append(cls)
    return tuple(found)


_USAGE_ERRORS = _classes("UsageError")
_NO_ARGS_IS_HELP = _classes("NoArgsIsHelpError")
_CLICK_ERRORS = _classes("ClickException")
_EXITS = _classes("Exit")
_ABORTS = _classes("Abort")


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).strip().splitlines() if part.strip())


def _bad_value(e: BaseException) -> str | None:
    """The value a user typed, when the error came from type coercion (typer 0.29 wraps pydantic's)."""
    cause = e.__cause__
    errors = getattr(cause, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
        except (IndexError, TypeError, ValueError):
            return None
        if "input" in first:
            return str(first["input"])
    return None


def _usage_line(e: Any) -> str:
    message = _one_line(e.format_message())
    value = _bad_value(e)
    if value is not None and value not in message:
        message = f"{message} (got {value!r})"
    ctx = getattr(e, "ctx", None)
    if ctx is not None:
        return f"error: {message} (see '{ctx.command_path} --help')"
    return f"error: {message}"


class _Interrupted(Exception):
    """A Ctrl-C carried past typer, which would turn it into a silent exit code."""


def _carry_interrupts(command: Any) -> None:
    """Wrap every command callback so that Ctrl-C reaches :func:`run_cli` with its note (once per tree)."""
    if getattr(command, "_slimkit_interrupts", False):
        return
    command._slimkit_interrupts = True
    for sub in getattr(command, "commands", {}).values():
        _carry_interrupts(sub)
    callback = getattr(command, "callback", None)
    if callback is None:
        return

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except KeyboardInterrupt as e:
            raise _Interrupted(str(e)) from None

    command.callback = wrapped


def run_cli(command: Any, args: list[str] | None = None) -> int:
    """Run a click/typer command and return its exit code.

    * :class:`SlimkitError` and usage errors (misspelt flag, missing option, a value of the wrong
      type, unknown command): one line on stderr, exit 2;
    * a command group or a command called bare: its help on stdout, exit 0;
    * Ctrl-C: ``interrupted`` on stderr, exit 130 (outputs are written atomically, so nothing partial
      is left behind).
    """
    _carry_interrupts(command)
    try:
        rv = command.main(args=args, prog_name="slimkit", standalone_mode=False)
    except _Interrupted as e:  # e.g. training: "interrupted: saved step 12 to ...; continue with --resume"
        print(f"interrupted: {e}" if str(e) else "interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SlimkitError as e:
        print(f"error: {_one_line(str(e))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except _NO_ARGS_IS_HELP as e:  # `slimkit`, `slimkit world`: the user asked what there is
        print(e.format_message())  # type: ignore[attr-defined]
        return 0
    except _USAGE_ERRORS as e:
        print(_usage_line(e), file=sys.stderr)
        return EXIT_BAD_INPUT
    except _CLICK_ERRORS as e:  # e.g. a file argument click could not open
        print(f"error: {_one_line(e.format_message())}", file=sys.stderr)  # type: ignore[attr-defined]
        return EXIT_BAD_INPUT
    except _EXITS as e:
        code = int(getattr(e, "exit_code", 0) or 0)
        if code == EXIT_INTERRUPTED:
            print("interrupted", file=sys.stderr)
        return code
    except (*_ABORTS, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    # typer turns Ctrl-C into Exit(130) and, outside standalone mode, returns that code
    if isinstance(rv, int) and not isinstance(rv, bool):
        if rv == EXIT_INTERRUPTED:
            print("interrupted", file=sys.stderr)
        return rv
    return 0
