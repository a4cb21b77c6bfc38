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
    alias: list[str] = typer.Option(
        [], "--alias", help="NAME=TARGET: answer chat under NAME (e.g. a retired OpenAI ft: "
                            "name) with the weights of TARGET: a job id, a model GET "
                            "/v1/models lists, or a model file or folder on this machine (an "
                            "exported .gguf, a merged folder). Repeatable."),
    # None: ServeSettings' defaults (not imported here: `tunelab --help` stays fast).
    chat_queue: int | None = typer.Option(
        None, "--chat-queue", min=0, help="Chat requests that may wait while one generates "
                                          "(default 8); more get 503 with Retry-After."),
    chat_wait: float | None = typer.Option(
        None, "--chat-wait", min=0.001, help="Seconds a chat request waits for its turn "
                                             "before a 503 (default 120)."),
) -> None:
    """Serve OpenAI's files, fine-tuning, models and chat APIs over local training.

    Point any OpenAI client at http://HOST:PORT/v1: upload a JSONL file, create a job, poll
    it, then chat with its fine_tuned_model. Jobs run one at a time, in order, and survive a
    restart (a running job resumes from its latest checkpoint). Chat names only what GET
    /v1/models lists: the embedded model, succeeded local fine-tunes, their checkpoints and
    aliases (--alias, or a job that `replaces` an old model).
    """
    import uvicorn

    from tunelab.server import ServeSettings, create_app
    from tunelab.server.settings import bind_host, check_bind, parse_aliases, url_host

    host = bind_host(host)
    limits = {"chat_queue": chat_queue, "chat_wait_s": chat_wait}  # unset: the defaults
    settings = ServeSettings(host=host, port=port,
                             api_key=api_key or os.environ.get(KEY_ENV) or None,
                             max_upload_bytes=max_upload_mb * 1024 * 1024,
                             max_steps=max_steps, max_length=max_length,
                             aliases=parse_aliases(alias),
                             **{name: value for name, value in limits.items() if value is not None})
    check_bind(settings)
    app = create_app(settings)  # a bad --alias stops here, before anything listens
    if api_key:
        err.print(f"note: --api-key shows in `ps` to every user here; set ${KEY_ENV} instead")
    auth = "bearer key required" if settings.api_key else "no key (loopback only)"
    err.print(f"tunelab serve: http://{url_host(host)}:{port}/v1 ({auth}); Ctrl-C stops, "
              "and a running job pauses at a checkpoint and resumes on the next start",
              markup=False)
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)
