"""The list of commands and command groups. Adding one is one entry in a table here."""

from __future__ import annotations

import importlib

import typer

# (module in tunelab.cli, attribute, command name). A Typer attribute becomes a group.
COMMANDS: list[tuple[str, str, str]] = [
    ("data_cmd", "app", "data"),
    ("train_cmd", "train", "train"),
    ("train_cmd", "presets", "presets"),
    ("train_cmd", "checkpoints", "checkpoints"),
    ("sweep_cmd", "sweep", "sweep"),
    ("jobs_cmd", "app", "jobs"),
    ("eval_cmd", "test", "test"),
    ("eval_cmd", "chat", "chat"),
    ("eval_cmd", "compare", "compare"),
    ("export_cmd", "export", "export"),
    ("models_cmd", "app", "models"),
    ("pull_cmd", "pull", "pull"),
    ("serve_cmd", "serve", "serve"),
    ("ui_cmd", "ui", "ui"),
    ("migrate_cmd", "app", "migrate"),
]


def register(app: typer.Typer) -> None:
    if getattr(app, "_tunelab_registered", False):
        return
    for module_name, attribute, name in COMMANDS:
        target = getattr(importlib.import_module(f"tunelab.cli.{module_name}"), attribute)
        if isinstance(target, typer.Typer):
            app.add_typer(target, name=name)
        else:
            app.command(name)(target)
    app._tunelab_registered = True  # type: ignore[attr-defined]
