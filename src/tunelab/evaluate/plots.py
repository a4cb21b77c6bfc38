"""Loss curves of tuned jobs, drawn from the registry's metrics as PNG bytes."""

from __future__ import annotations

import io
import math
from typing import Any

from tunelab.registry import metrics, open_registry


def loss_series(rows: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """The training and validation losses, as (step, value) points.

    One validation curve per job, local or cloud: the whole-file loss where a row has it,
    else the provider's sampled valid_loss (see registry.metrics.validation_loss).
    """
    series: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        values = {metrics.TRAIN_LOSS: row.get(metrics.TRAIN_LOSS),
                  metrics.VALID_LOSS: metrics.validation_loss(row)}
        for name, value in values.items():
            if value is not None:
                series.setdefault(name, []).append((row[metrics.STEP], float(value)))
    return series


def job_loss_series(job_id: str) -> dict[str, list[tuple[float, float]]]:
    with open_registry() as registry:
        return loss_series(registry.list_metrics(job_id))


# Above this ratio of the highest loss to the lowest, a linear axis flattens the curves that
# matter into a line at the bottom (a sweep's diverged trial reaches 10 or 1e3 against 2).
LOG_SCALE_RATIO = 4.0


def y_scale(series: dict[str, list[tuple[float, float]]]) -> str:
    """"log" when the finite values span more than LOG_SCALE_RATIO, else "linear"."""
    values = [value for points in series.values() for _, value in points
              if math.isfinite(value) and value > 0]
    return "log" if values and max(values) / min(values) > LOG_SCALE_RATIO else "linear"


def loss_curve_png(title: str, series: dict[str, list[tuple[float, float]]]) -> bytes:
    """A small line chart of the series against training step."""
    import matplotlib

    matplotlib.use("Agg")  # no display here, and none needed for a file
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(6, 3.2), dpi=100)
    axes = figure.add_subplot()
    axes.set_yscale(y_scale(series))
    for name, points in sorted(series.items()):
        steps, values = zip(*[(step, value if math.isfinite(value) else math.nan)
                              for step, value in points], strict=True)
        axes.plot(steps, values, marker="o" if len(points) < 30 else None, markersize=3,
                  label=name)
    axes.set_title(title, fontsize=10)
    axes.set_xlabel("step")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel("loss")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
