"""app/cli_errors.py: what the `safeflag` console script does with an error no command foresaw."""

from __future__ import annotations

import pytest
import typer

from app.cli_errors import describe, one_line, run


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False)

    @app.command()
    def broken() -> None:
        raise RuntimeError("first line\n  second line [not markup]")

    @app.command()
    def fine() -> None:
        typer.echo("ok")

    return app


def test_unforeseen_error_is_one_line_without_traceback(capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["safeflag", "broken"])
    assert run(_app()) == 1
    out, err = capsys.readouterr()
    assert (out, err) == ("", "error: unexpected RuntimeError: first line second line [not markup]\n")
    monkeypatch.setenv("SAFEFLAG_CLI_TRACEBACK", "1")  # for debugging: the traceback, then the same line
    assert run(_app()) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and err.endswith("error: unexpected RuntimeError: first line second line "
                                                        "[not markup]\n")


def test_success_and_exit_codes(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["safeflag", "fine"])
    assert run(_app()) == 0 and capsys.readouterr() == ("ok\n", "")


def test_one_line_and_describe() -> None:
    assert one_line("a\r\n  b\n\nc  d") == "a b c  d"

    class DriverError(Exception):
        pass

    class Wrapped(Exception):
        orig = DriverError("no such table: resource")

    assert describe(Wrapped("SELECT ... [SQL: long]")) == "DriverError: no such table: resource"
    assert describe(ValueError("bad")) == "ValueError: bad"
