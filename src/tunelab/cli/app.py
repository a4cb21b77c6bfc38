"""The root typer app. Each command group lives in its own module and registers here.

This is the only layer that prints, prompts or exits: TunelabError becomes one line on
stderr and its exit code; nothing reaches the user as a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click
import typer
from typer.exceptions import TyperException

from tunelab import __version__
from tunelab.cli.console import err as err_console
from tunelab.cli.console import styled
from tunelab.errors import TunelabError

# typer >= 0.24 vendors its own click; plain click may still raise from older plugins.
_EXITS = (typer.Exit, click.exceptions.Exit)
_ABORTS = (typer.Abort, click.exceptions.Abort)
_USAGE_ERRORS = (TyperException, click.ClickException)

app = typer.Typer(
    name="tunelab",
    help="Check chat data, fine-tune on OpenAI, Vertex AI or locally; test, compare, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)

def _version(value: bool) -> None:
    if value:
        print(f"tunelab {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    offline: bool = typer.Option(False, "--offline", help="Never download a model (as "
                                 "HF_HUB_OFFLINE=1): only models already here are used."),
) -> None:
    """tunelab: one CLI, one dataset file, one job history."""
    if offline:  # read by tunelab.local.hub, and by huggingface_hub if imported after this
        import os

        os.environ["HF_HUB_OFFLINE"] = "1"


def _register_commands() -> None:
    # Imported here so that `tunelab --help` stays fast: each module imports its heavy
    # dependencies (torch, SDKs) inside the command functions.
    from tunelab.cli import commands

    commands.register(app)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with `argv` (default sys.argv[1:]) and return the exit code."""
    if argv is None and sys.argv[1:2] == ["train"]:
        # A training process allocates with mimalloc when it is installed (see
        # tunelab.local.memory): it must be preloaded, so this process is replaced.
        from tunelab.local.memory import reexec_with_allocator

        reexec_with_allocator(["-m", "tunelab", *sys.argv[1:]])
    _register_commands()
    args = list(sys.argv[1:] if argv is None else argv)
    from tunelab.cli.models_cmd import TerminalConsent
    from tunelab.local.hub import consenting

    try:
        # Outside standalone mode click hands back `typer.Exit(code)` as a return value.
        # A model download anywhere below shows its size and asks past the threshold.
        with consenting(TerminalConsent()):
            result = app(args=args, prog_name="tunelab", standalone_mode=False)
    except TunelabError as error:
        err_console.print(styled(("error:", "bold red"), " ", error.render()))
        return error.exit_code
    except _EXITS as done:
        return done.exit_code
    except _ABORTS:
        err_console.print("aborted")
        return 130
    except _USAGE_ERRORS as error:
        # typer/click's own one-line usage message ("No such option ..."), exit 2.
        error.show()
        return getattr(error, "exit_code", 2) or 2
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    return result if isinstance(result, int) else 0
