"""How every `safeflag` command reports a failure: one plain line on stderr, `error: <message>`, and a
non-zero exit code. Never Rich markup or wrapping (a message must read the same whatever the terminal
width or the length of a path in it, and square brackets in a path are text), never a traceback.

`fail()` is for the failures a command foresees; `main()` (the console script) turns command-line
usage errors and anything unforeseen into the same one line. `SAFEFLAG_CLI_TRACEBACK=1` shows the
traceback of an unforeseen error for debugging.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import traceback
from typing import Any

import typer
import typer.main

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


def safeflag_script() -> str:
    """How to type this `safeflag` in a hint: its path next to the running Python, relative to the
    working directory when under it, shell-quoted."""
    import shlex
    from pathlib import Path

    script = Path(sys.executable).parent / "safeflag"
    with contextlib.suppress(ValueError):
        script = script.relative_to(Path.cwd())
    return shlex.quote(str(script))


def say_error(message: object) -> None:
    sys.stderr.write(f"error: {one_line(message)}\n")
    sys.stderr.flush()


def fail(message: object, code: int = 2) -> typer.Exit:
    """Print the error line; the caller raises what this returns (`raise fail(...) from None`)."""
    say_error(message)
    return typer.Exit(code)


def plain_metavars(command: Any) -> Any:
    """Help in plain words: `--port INTEGER`, `--format csv|json`, and nothing after a flag, where
    typer would print `<int>`, `<bool>` and `<str>`. Sets each option's metavar (typer's vendored click
    objects, so duck-typed), recursively, and that of the `--help` option click makes on demand."""
    for param in command.params:
        if param.metavar is None and param.param_type_name == "option":
            param.metavar = _metavar(param)
        elif param.param_type_name == "argument":  # its metavar is its name in the usage line: keep it
            word = _metavar(param)
            param.display_type_rich = lambda ctx, word=word: word
    make_help = command.get_help_option

    def help_option(ctx: Any) -> Any:
        option = make_help(ctx)
        if option is not None and option.metavar is None:
            option.metavar = ""
        return option

    command.get_help_option = help_option
    for sub in getattr(command, "commands", {}).values():
        plain_metavars(sub)
    return command


_TYPE_WORDS = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "Path": "PATH", "datetime": "DATETIME"}


def _metavar(option: Any) -> str:
    if getattr(option, "is_flag", False):
        return ""
    desc = getattr(option, "type_descriptor", None)
    if desc is not None and desc.is_choice:
        return "|".join(str(getattr(c, "value", c)) for c in desc.choices or ())
    bare = option.bare_type() if callable(getattr(option, "bare_type", None)) else ""
    return _TYPE_WORDS.get(bare, "VALUE")


def run(app: typer.Typer) -> int:
    """Run the typer app as the console script does; returns the exit code."""
    try:
        code = plain_metavars(typer.main.get_command(app))(standalone_mode=False)
    except (typer.Abort, KeyboardInterrupt):
        say_error("aborted")
        return 130
    except Exception as exc:  # noqa: BLE001 - an unforeseen failure is still one line, never a traceback
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `safeflag` or `safeflag client`: the help
            if help_text := exc.format_message():  # type: ignore[attr-defined]  # Rich's help printed itself
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
