"""OpenAI's result file: per-step training metrics, read into the one metric vocabulary.

The file is CSV, `step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy`
(newer jobs add full_valid_loss and full_valid_mean_token_accuracy), and the files API hands
it back base64-encoded. Validation columns are empty on steps without a validation pass.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
from typing import Any

from tunelab.errors import DataError
from tunelab.registry import metrics

# OpenAI's column names that differ from the vocabulary's.
RENAMED = {"train_accuracy": metrics.TRAIN_ACCURACY}


def _text(raw: bytes, where: str) -> str:
    text = raw.decode("utf-8", errors="replace").lstrip("\ufeff")
    if text.lstrip().startswith("step"):
        return text
    try:
        return base64.b64decode(raw, validate=False).decode("utf-8").lstrip("\ufeff")
    except (binascii.Error, UnicodeDecodeError):
        raise DataError("not a result file (neither CSV nor base64 CSV)", path=where,
                        fix="pull it again: `tunelab migrate pull JOB`") from None


def _number(value: str | None) -> float | None:
    value = (value or "").strip()
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def parse(raw: bytes, where: str = "result file") -> list[dict[str, Any]]:
    """One row per step, `step` first, vocabulary names only, missing values left out."""
    rows = []
    for line in csv.DictReader(io.StringIO(_text(raw, where))):
        values = {RENAMED.get(name.strip(), name.strip()): _number(value)
                  for name, value in line.items() if name}
        step = values.get(metrics.STEP)
        if step is None:
            continue
        rows.append({**metrics.step_metrics(values), metrics.STEP: int(step)})
    return rows


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
