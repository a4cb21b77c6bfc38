"""The web dashboard served at `/` by `tunelab serve` and `tunelab ui`: every job of every
provider, live curves, new runs and comparisons, over the same registry as the CLI.

Server-rendered HTML (Jinja, autoescaped) with one small script and one stylesheet that ship
in this package (static/): no CDN, nothing fetched at run time. Curves are SVG drawn by that
script from server-sent events (stream.py).
"""

from tunelab.server.dashboard.routes import Dashboard

__all__ = ["Dashboard"]
