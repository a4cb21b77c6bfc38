"""`tunelab ui`: the web dashboard, in a browser. It is `tunelab serve` (same app, same
worker, same rules for the key) with the dashboard's address printed and opened."""

from __future__ import annotations

import threading
import webbrowser

import typer

from tunelab.cli.console import err
from tunelab.cli.serve_cmd import KEY_ENV, serve


def ui(
    host: str = typer.Option("127.0.0.1", "--host",
                             help="Address to bind. Anything but loopback needs an API key."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port."),
    api_key: str | None = typer.Option(
        None, "--api-key", help=f"Require this key (the browser logs in once). Prefer "
                                f"${KEY_ENV}: a key on the command line shows in `ps`."),
    open_browser: bool = typer.Option(True, "--open/--no-open",
                                      help="Open the dashboard in the default browser."),
) -> None:
    """Open the web dashboard: every job of every provider, live loss curves, new runs and
    comparisons. Also served at / by `tunelab serve`."""
    from tunelab.server.settings import bind_host, url_host

    address = f"http://{url_host(bind_host(host))}:{port}/"
    err.print(f"tunelab dashboard: {address}")
    if open_browser:  # once the server had a moment to listen; a failed open is harmless
        threading.Timer(1.5, webbrowser.open, args=(address,)).start()
    serve(host=host, port=port, api_key=api_key, max_upload_mb=512, max_steps=None,
          max_length=None, alias=[], chat_queue=None, chat_wait=None)
