"""The `tunelab` command. `main(argv) -> int` so tests drive it in-process."""

from tunelab.cli.app import app, main

__all__ = ["app", "main"]
