"""Loss charts stay readable when one curve runs away (a sweep's diverged trial)."""

from __future__ import annotations

import math

from tunelab.evaluate.plots import loss_curve_png, y_scale

GOOD = {"#0 lr 5e-4": [(40, 2.27), (80, 2.21), (120, 2.21)],
        "#1 lr 1e-3": [(40, 2.23), (80, 2.20)]}


def test_close_curves_keep_a_linear_axis() -> None:
    assert y_scale(GOOD) == "linear"


def test_a_diverged_trial_moves_the_axis_to_log_scale() -> None:
    assert y_scale({**GOOD, "#3 lr 1.0 (pruned)": [(40, 11.4), (80, 96.0)]}) == "log"


def test_non_finite_losses_neither_decide_the_scale_nor_break_the_chart() -> None:
    series = {**GOOD, "#2 lr 4e-3 (pruned)": [(40, math.inf), (80, math.nan)]}
    assert y_scale(series) == "linear"
    assert loss_curve_png("sweep", series)[:4] == b"\x89PNG"
