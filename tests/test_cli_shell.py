"""The CLI edge: version, help, and one-line usage errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys

from tunelab import __version__
from tunelab.cli import main


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"tunelab {__version__}"


def test_unknown_command_is_a_usage_error_not_a_traceback(capsys):
    assert main(["no-such-command"]) == 2
    err = capsys.readouterr().err
    assert "No such command" in err and "Traceback" not in err


def test_python_dash_m_entry_point():
    done = subprocess.run([sys.executable, "-m", "tunelab", "--version"], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0 and __version__ in done.stdout


def test_exit_codes_raised_by_commands_reach_the_caller():
    import importlib

    import typer

    cli_app = importlib.import_module("tunelab.cli.app")

    probe = typer.Typer()

    @probe.command()
    def fail() -> None:
        raise typer.Exit(3)

    result = probe(args=[], prog_name="probe", standalone_mode=False)
    assert result == 3  # the behaviour main() relies on
    assert not cli_app.err_console._emoji
