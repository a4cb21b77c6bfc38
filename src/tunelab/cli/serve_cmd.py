"""`tunelab serve`: the OpenAI-compatible API over the local trainer (see tunelab.server)."""

from __future__ import annotations

import os

import typer
from rich.console import Console

err = Console(stderr=True, highlight=False)
KEY_ENV = "TUNELAB_SERVE_API_KEY"


def serve(
    host: str = typer.Option("127.0.0.1", "--host",
                             help="Address to bind. Anything but loopback needs an API key."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port."),
    api_key: str | None = typer.Option(
        None, "--api-key", help=f"Require 'Authorization: Bearer KEY' on every route but "
                                f"/health. Prefer ${KEY_ENV}: a key on the command line is "
                                "visible to every user of this machine in `ps`. Never "
                                "logged."),
    max_upload_mb: int = typer.Option(512, "--max-upload-mb", min=1,
                                      help="Largest accepted upload, in MiB."),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1,
                                         help="Cap every job at this many optimizer steps."),
    max_length: int | None = typer.Option(None, "--max-length", min=16,
                                          help="Cap every job's sequence length (tokens)."),
) -> None:
    """Serve OpenAI's files, fine-tuning, models and chat APIs over local training.

    Point any OpenAI client at http://HOST:PORT/v1: upload a JSONL file, create a job, poll
    it, then chat with its fine_tuned_model. Jobs run one at a time, in order, and survive a
    restart (a running job resumes from its latest checkpoint).
    """
    import uvicorn

    from tunelab.server import ServeSettings, create_app
    from tunelab.server.settings import check_bind

    settings = ServeSettings(host=host, port=port,
                             api_key=api_key or os.environ.get(KEY_ENV) or None,
                             max_upload_bytes=max_upload_mb * 1024 * 1024,
                             max_steps=max_steps, max_length=max_length)
    check_bind(settings)
    if api_key:
        err.print(f"note: --api-key shows in `ps` to every user here; set ${KEY_ENV} instead")
    auth = "bearer key required" if settings.api_key else "no key (loopback only)"
    err.print(f"tunelab serve: http://{host}:{port}/v1 ({auth}); Ctrl-C stops, and a "
              "running job pauses at a checkpoint and resumes on the next start")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info",
                server_header=False)
