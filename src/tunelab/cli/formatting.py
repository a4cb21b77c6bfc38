"""How the terminal shows times, numbers, key/value blocks and loss curves, in one place.

Machine values stay machine values everywhere else: `--json` prints epoch seconds and raw
numbers; only what a person reads goes through here.

`fitted_table` is the one way a listing fits the terminal: the columns a user copies from
(job ids, model names) are never cut; other columns wrap first, then the least important
ones are left out.

`terminal_safe` is the one way outside text (what a provider, a model or a file sent) is
made harmless to the terminal: its control characters are shown escaped, never sent raw.
The helpers here apply it to every cell and value they print, and cli.console applies it
to everything printed on its two consoles.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich import box
from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

SPARK_BARS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 20  # characters: a curve's shape, not its detail


# outside text ----------------------------------------------------------------------------
# C0 controls but tab and newline (ESC starts the sequences that set the window title, clear
# the screen, move the cursor, write the clipboard or make links; BEL ends one; CR overwrites
# the line), DEL, and the C1 controls (0x9b is a one-byte CSI on some terminals).
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROLS_AND_NEWLINES = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def terminal_safe(text: str, *, newlines: bool = True) -> str:
    """`text` with every control character but tab (and newline, unless `newlines` is False)
    written as a visible escape (`\\x1b`, `\\n`): what a provider sent stays readable, and
    cannot retitle the window, clear the screen or fill the clipboard."""
    pattern = _CONTROLS if newlines else _CONTROLS_AND_NEWLINES
    return pattern.sub(_escaped, text) if pattern.search(text) else text


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    return {"\n": "\\n", "\r": "\\r"}.get(char) or f"\\x{ord(char):02x}"


# times -----------------------------------------------------------------------------------
def local_time(stamp: float | None, *, seconds: bool = False) -> str:
    """Epoch seconds as this machine's local date and time: `2026-12-02 20:41`."""
    if not stamp:
        return ""
    return datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M" + (":%S" if seconds else ""))


def ago(stamp: float, now: float | None = None) -> str:
    """How long before `now` a moment was, in the one unit a person would say."""
    seconds = max(0.0, (time.time() if now is None else now) - stamp)
    if seconds < 60:
        return "just now"
    for size, unit in ((86400, "day"), (3600, "h"), (60, "min")):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if unit == 'day' and count > 1 else ''} ago"
    return "just now"  # unreachable: the loop ends at minutes


def local_time_ago(stamp: float | None, now: float | None = None) -> str:
    """`2026-12-02 20:41 (3 min ago)`."""
    return f"{local_time(stamp)} ({ago(stamp, now)})" if stamp else ""


def event_line(stamp: float | None, level: str, message: str) -> str:
    """One event as `jobs events` and `jobs watch` print it: one line, whatever it holds."""
    return terminal_safe(f"{local_time(stamp, seconds=True)} [{level}] {message}",
                         newlines=False)


def duration(seconds: float | None) -> str:
    """`42s`, `3m20s`, `2h05m`; `?` where it cannot be known (an ETA before any step)."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


# values ----------------------------------------------------------------------------------
def value(item: Any) -> str:
    """A setting as a person reads it and could type it back: `0.0005`, `32`, `true`;
    lists and mappings as compact JSON."""
    if item is None:
        return "-"
    if isinstance(item, bool):
        return str(item).lower()
    if isinstance(item, float):
        return f"{item:.6g}"
    if isinstance(item, dict | list | tuple):
        return terminal_safe(json.dumps(item, ensure_ascii=False))
    return terminal_safe(str(item))


def metric(item: Any) -> str:
    """A measured value: losses and rates to 4 places, counts with thousands separators."""
    if isinstance(item, int) and not isinstance(item, bool):
        return f"{item:,}"
    if isinstance(item, float):
        return f"{item:,.0f}" if abs(item) >= 1e4 else f"{item:.4f}"
    return value(item)


def pairs_table(rows: Iterable[Sequence[Any]], *, title: str | None = None) -> Table:
    """Keys in one aligned column, values beside them (a row may carry more than one: a
    metric and its curve); values wrap, keys never do."""
    rows = list(rows)
    table = Table(title=title and terminal_safe(title), title_justify="left",
                  title_style="bold", show_header=False,
                  box=None, padding=(0, 2, 0, 0), pad_edge=False)
    table.add_column(no_wrap=True, style="dim")
    for _ in range(max((len(row) for row in rows), default=2) - 1):
        table.add_column(overflow="fold")
    for key, *items in rows:
        table.add_row(key, *(item if isinstance(item, Text) else Text(value(item))
                             for item in items))
    return table


# curves ----------------------------------------------------------------------------------
def sparkline(values: Sequence[float], width: int = SPARK_WIDTH) -> str:
    """A curve in block characters, low ▁ to high █, scaled to its own min and max. More
    points than `width` are averaged in equal buckets, so the shape survives."""
    points = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not points:
        return ""
    if len(points) > width:
        edges = [round(i * len(points) / width) for i in range(width + 1)]
        points = [sum(points[a:b]) / (b - a) for a, b in zip(edges, edges[1:], strict=False)]
    low, high = min(points), max(points)
    if high == low:
        return SPARK_BARS[len(SPARK_BARS) // 2] * len(points)
    top = len(SPARK_BARS) - 1
    return "".join(SPARK_BARS[round((p - low) / (high - low) * top)] for p in points)


def curve(values: Sequence[float]) -> str:
    """`▇▅▄▃▂▁ 2.9500 → 1.5500, 29 points`: the sparkline, where it started and ended."""
    points = [v for v in values if v is not None and math.isfinite(v)]
    if len(points) < 2:
        return ""  # one point is no curve
    return f"{sparkline(points)} {metric(points[0])} → {metric(points[-1])}, {len(points)} points"


# listings --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Col:
    """A column of `fitted_table`. `key`: never cut (ids, model names a user copies);
    `wrap`: may wrap down to `min_width`; `drop`: the order in which columns leave when
    even wrapped they do not fit (higher leaves first; 0 never leaves)."""

    header: str
    key: bool = False
    wrap: bool = False
    min_width: int = 10
    drop: int = 0


GAP = 2  # between columns: one space of right padding, one of SIMPLE_HEAD's blank rule


def fitted_table(columns: Sequence[Col], rows: Sequence[Sequence[str]], width: int, *,
                 title: str | None = None) -> Table:
    """A table no wider than `width` in which no `key` cell is ever cut."""
    rows = [[terminal_safe(cell) for cell in row] for row in rows]  # widths as shown
    natural = [max([cell_len(col.header), *(cell_len(row[i]) for row in rows)])
               for i, col in enumerate(columns)]
    least = [min(natural[i], col.min_width) if col.wrap else natural[i]
             for i, col in enumerate(columns)]
    keep = list(range(len(columns)))

    def needed(widths: list[int]) -> int:
        return sum(widths[i] for i in keep) + GAP * (len(keep) - 1)

    while needed(least) > width and any(columns[i].drop for i in keep):
        keep.remove(max(keep, key=lambda i: columns[i].drop))
    widths = _spread(keep, columns, natural, least, width - needed(least))
    table = Table(title=title and terminal_safe(title), title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False,
                  show_edge=False, padding=(0, 1, 0, 0))
    for i in keep:
        col = columns[i]
        # A key wider than the whole terminal folds onto a second line rather than lose
        # its tail to "…": it stays whole, if not on one line.
        table.add_column(col.header, width=widths[i], no_wrap=not (col.wrap or col.key),
                         overflow="fold")
    for row in rows:
        table.add_row(*(Text(row[i]) for i in keep))
    return table


def _spread(keep: list[int], columns: Sequence[Col], natural: list[int], least: list[int],
            spare: int) -> dict[int, int]:
    """Every kept column's width: its least, plus the spare room handed to the wrapping
    columns, the most important first, each up to its natural width. Explicit widths keep
    rich from shrinking a key column itself."""
    widths = {i: least[i] for i in keep}
    for i in sorted(keep, key=lambda i: columns[i].drop):
        if columns[i].wrap and spare > 0:
            grow = min(spare, natural[i] - widths[i])
            widths[i] += grow
            spare -= grow
    # Even at their least the columns are too wide (a key alone is wider than the
    # terminal): the widest folding column folds further, onto more lines.
    foldable = [i for i in keep if columns[i].key or columns[i].wrap]
    if spare < 0 and foldable:
        widest = max(foldable, key=lambda i: widths[i])
        widths[widest] = max(8, widths[widest] + spare)
    return widths
