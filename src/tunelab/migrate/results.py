"""OpenAI's result file: per-step training metrics, read into the one metric vocabulary.

The file is CSV, `step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy`
(newer jobs add full_valid_loss and full_valid_mean_token_accuracy), and the files API hands
it back base64-encoded. Validation columns are empty on steps without a validation pass.

What the provider sends is checked row by row: a row whose step is no whole number from 0
to metrics.MAX_STEP, whose value is no finite number, or that holds a field over MAX_FIELD_CHARS is
skipped and counted; content that is no CSV at all is one skipped row. The rest is kept.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import math
from dataclasses import dataclass, field
from typing import Any

from tunelab.errors import DataError
from tunelab.registry import metrics

# OpenAI's column names that differ from the vocabulary's.
RENAMED = {"train_accuracy": metrics.TRAIN_ACCURACY}
MAX_FIELD_CHARS = 1024  # a number needs far fewer; csv's own limit (131,072) aborts instead


@dataclass
class Parsed:
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0  # rows (or a whole file) that were not metrics


def _text(raw: bytes, where: str) -> str:
    text = raw.decode("utf-8", errors="replace").lstrip("\ufeff")
    if text.lstrip().startswith("step"):
        return text
    try:
        return base64.b64decode(raw, validate=False).decode("utf-8").lstrip("\ufeff")
    except (binascii.Error, UnicodeDecodeError):
        raise DataError("not a result file (neither CSV nor base64 CSV)", path=where,
                        fix="pull it again: `tunelab migrate pull JOB`") from None


class _BadRow(ValueError):
    pass


def _number(value: str | None) -> float | None:
    value = (value or "").strip()
    if not value:
        return None
    if len(value) > MAX_FIELD_CHARS:
        raise _BadRow(value[:20])
    try:
        number = float(value)
    except ValueError:
        return None
    if not math.isfinite(number):
        raise _BadRow(value)
    return number


def _row(line: dict[str | None, Any]) -> dict[str, Any]:
    """One step's metrics; _BadRow for a line without a good step or with a bad value."""
    if None in line:  # more fields than the header names
        raise _BadRow("extra fields")
    values = {RENAMED.get(name.strip(), name.strip()): _number(value)
              for name, value in line.items() if name}
    step = values.get(metrics.STEP)
    if step is None or not step.is_integer() or not 0 <= step <= metrics.MAX_STEP:
        raise _BadRow(str(step))
    return {**metrics.step_metrics(values), metrics.STEP: int(step)}


def parse(raw: bytes, where: str = "result file") -> Parsed:
    """One row per step, `step` first, vocabulary names only, missing values left out; bad
    rows skipped and counted (a file that is no result file at all counts as one)."""
    found = Parsed()
    try:
        text = _text(raw, where)
    except DataError:
        return Parsed(skipped=1)
    reader = csv.DictReader(io.StringIO(text))
    while True:
        try:
            line = next(reader)
        except StopIteration:
            return found
        except csv.Error:  # a field past csv's own limit: that line is lost, not the file
            found.skipped += 1
            continue
        try:
            row = _row(line)
        except _BadRow:
            found.skipped += 1
            continue
        found.rows.append(row)


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A job's final metrics from its steps, named as the vocabulary's summary."""
    if not rows:
        return {}
    train = [row[metrics.TRAIN_LOSS] for row in rows if metrics.TRAIN_LOSS in row]
    valid = [loss for loss in map(metrics.validation_loss, rows) if loss is not None]

    def last(name: str) -> Any:
        return next((row[name] for row in reversed(rows) if name in row), None)

    found = {metrics.STEPS: max(row[metrics.STEP] for row in rows),
             metrics.TRAIN_LOSS: sum(train) / len(train) if train else None,
             metrics.LAST_TRAIN_LOSS: train[-1] if train else None,
             metrics.VALID_LOSS: last(metrics.VALID_LOSS),
             metrics.FULL_VALID_LOSS: last(metrics.FULL_VALID_LOSS),
             metrics.BEST_VALID_LOSS: min(valid) if valid else None,
             metrics.TRAIN_ACCURACY: last(metrics.TRAIN_ACCURACY),
             metrics.VALID_ACCURACY: last(metrics.VALID_ACCURACY)}
    return {name: value for name, value in found.items() if value is not None}
