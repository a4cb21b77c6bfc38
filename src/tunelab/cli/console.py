"""The CLI's two consoles, and the one way it styles text.

Paths, messages from providers and error codes are printed as themselves: rich would read
`[red]` in `[red]evil.jsonl` as a style, drop `[connection_error]` as an unknown tag and
crash on `[/x]` (a closing tag with no opening one). So markup is off on both consoles,
and so are emoji codes (":100:" in "file:100:") and the highlighter (which recolours
numbers and paths inside user text). Style goes in as data, never inside a string:
`styled(("error:", "bold red"), " ", message)`, or `style=` on print.

rich also parses plain strings handed to a spinner (`console.status`) or to a progress
`TextColumn` as markup, whatever the console says: give those `plain(text)` or
`markup=False`.

Text from outside (a provider's model name, a model's answer, an error a provider wrote) may
hold terminal control sequences: both consoles show every control character escaped
(formatting.terminal_safe), whatever is printed on them. rich's own colours and cursor
moves are added after, so they still work. A live display's table is drawn outside this
net: build it with formatting's helpers, which apply the same function.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from rich.console import Console, ConsoleOptions, ConsoleRenderable, RenderHook
from rich.segment import Segment
from rich.text import Text

from tunelab.cli.formatting import terminal_safe
from tunelab.registry.metrics import finite


class _Escaped:
    """A renderable drawn as `inner` is, with its text's control characters escaped."""

    def __init__(self, inner: ConsoleRenderable) -> None:
        self.inner = inner

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Segment]:
        for segment in console.render(self.inner, options):
            # a control segment is rich's own cursor move, not text
            yield segment if segment.control else Segment(terminal_safe(segment.text),
                                                          segment.style)


class _EscapeControls(RenderHook):
    def process_renderables(self, renderables: list[Any]) -> Sequence[Any]:
        return [_Escaped(item) for item in renderables]


out = Console(markup=False, emoji=False, highlight=False, soft_wrap=True)
err = Console(stderr=True, markup=False, emoji=False, highlight=False, soft_wrap=True)
for _console in (out, err):
    _console.push_render_hook(_EscapeControls())


def styled(*parts: str | Text | tuple[str, str]) -> Text:
    """One line from plain pieces and (text, style) pairs; no piece is read as markup."""
    return Text.assemble(*parts)


def plain(text: object) -> Text:
    """`text` exactly as written, for the places rich would otherwise parse as markup (a
    spinner, a live display), its control characters escaped as the consoles escape them:
    a live display is drawn outside their render hook."""
    return Text(terminal_safe(str(text)))


def emit_json(payload: Any) -> None:
    """A command's --json result on stdout: one strict JSON object (NaN and infinities as
    null, anything else unusual as its text)."""
    print(json.dumps(finite(payload), ensure_ascii=False, default=str, allow_nan=False))
