"""The CLI reports only nfkit's user errors as one line; a bug keeps its traceback."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from nfkit.cli import app
from nfkit.cli._app import user_errors
from nfkit.errors import ConfigError, IncompatibleError, NfkitError, UserError


def _app_raising(exc: BaseException) -> typer.Typer:
    demo = typer.Typer()

    @demo.command()
    @user_errors
    def run() -> None:
        raise exc

    return demo


@pytest.mark.parametrize(
    "exc",
    [UserError("bad option"), ConfigError("bad value"), IncompatibleError("other init"),
     NfkitError("corrupt"), FileNotFoundError("x.h5: no such file")],
)
def test_user_errors_become_one_line(exc):
    result = CliRunner().invoke(_app_raising(exc), [])
    assert result.exit_code == 1
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert lines == [f"error: {exc}"]


@pytest.mark.parametrize("exc", [ValueError("internal shape mismatch"), KeyError("k"), TypeError("t")])
def test_an_internal_bug_keeps_its_traceback(exc):
    result = CliRunner().invoke(_app_raising(exc), [])
    assert result.exit_code != 0
    assert result.exception is exc  # not swallowed into "error: ..."
    assert "error:" not in result.output


def test_user_error_is_still_a_value_error_for_python_callers():
    assert issubclass(UserError, ValueError) and issubclass(ConfigError, UserError)


def test_a_library_user_error_reaches_the_cli_as_one_line(tmp_path):
    result = CliRunner().invoke(app, ["fit-nerfs", str(tmp_path), "--arch", "no-such-arch", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: unknown architecture")
