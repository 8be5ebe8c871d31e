"""How every `safeflag` command reports a failure: one plain line on stderr, `error: <message>`, and a
non-zero exit code. Never Rich markup or wrapping (a message must read the same whatever the terminal
width or the length of a path in it, and square brackets in a path are text), never a traceback.

`fail()` is for the failures a command foresees; `main()` (the console script) turns command-line
usage errors and anything unforeseen into the same one line. `SAFEFLAG_CLI_TRACEBACK=1` shows the
traceback of an unforeseen error for debugging.
"""

from __future__ import annotations

import os
import re
import sys
import traceback

import typer

_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")


def one_line(message: object) -> str:
    return _LINE_BREAKS.sub(" ", str(message)).strip()


def describe(exc: BaseException) -> str:
    """`Type: message` of an exception; for a database error, the driver's own error without the SQL
    text and parameters SQLAlchemy appends."""
    orig = getattr(exc, "orig", None)
    if isinstance(orig, BaseException):
        exc = orig
    return f"{type(exc).__name__}: {exc}"


def say_error(message: object) -> None:
    sys.stderr.write(f"error: {one_line(message)}\n")
    sys.stderr.flush()


def fail(message: object, code: int = 2) -> typer.Exit:
    """Print the error line; the caller raises what this returns (`raise fail(...) from None`)."""
    say_error(message)
    return typer.Exit(code)


def run(app: typer.Typer) -> int:
    """Run the typer app as the console script does; returns the exit code."""
    try:
        code = app(standalone_mode=False)
    except (typer.Abort, KeyboardInterrupt):
        say_error("aborted")
        return 130
    except Exception as exc:  # noqa: BLE001 - an unforeseen failure is still one line, never a traceback
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `safeflag` or `safeflag client`: the help
            if help_text := exc.format_message():  # type: ignore[attr-defined]  (Rich's help printed itself)
                typer.echo(help_text)
            return 2
        if _is_usage_error(exc):  # unknown option, missing or bad value (click's exceptions, vendored or not)
            say_error(f"{exc.format_message()} (see --help)")  # type: ignore[attr-defined]
            return int(exc.exit_code)  # type: ignore[attr-defined]
        if os.environ.get("SAFEFLAG_CLI_TRACEBACK") == "1":
            traceback.print_exc()
        say_error(f"unexpected {type(exc).__name__}: {exc}")
        return 1
    return code if isinstance(code, int) else 0


def _is_usage_error(exc: Exception) -> bool:
    return callable(getattr(exc, "format_message", None)) and isinstance(getattr(exc, "exit_code", None), int)
