"""The list of command groups. Adding a group is one import and one line here."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    if getattr(app, "_tunelab_registered", False):
        return
    from tunelab.cli import data_cmd, export_cmd

    app.add_typer(data_cmd.app, name="data")
    app.command("export")(export_cmd.export)
    from tunelab.cli import eval_cmd

    for name in ("test", "chat", "compare"):
        app.command(name)(getattr(eval_cmd, name))
    from tunelab.cli import serve_cmd

    app.command("serve")(serve_cmd.serve)
    from tunelab.cli import jobs_cmd, train_cmd

    for name in ("train", "presets", "checkpoints"):
        app.command(name)(getattr(train_cmd, name))
    app.add_typer(jobs_cmd.app, name="jobs")
    app._tunelab_registered = True  # type: ignore[attr-defined]
