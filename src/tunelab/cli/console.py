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
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

out = Console(markup=False, emoji=False, highlight=False, soft_wrap=True)
err = Console(stderr=True, markup=False, emoji=False, highlight=False, soft_wrap=True)


def styled(*parts: str | Text | tuple[str, str]) -> Text:
    """One line from plain pieces and (text, style) pairs; no piece is read as markup."""
    return Text.assemble(*parts)


def plain(text: object) -> Text:
    """`text` exactly as written, for the places rich would otherwise parse as markup."""
    return Text(str(text))
