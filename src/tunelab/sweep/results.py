"""The end of a sweep: the winner, every trial's validation curve, the winner's config, and
the losers' weights let go.

The winner is the succeeded trial with the lowest best validation loss. A pruned trial never
wins: its config, trained again, would not stop where its best loss was. `winner.yaml` is the
winner's resolved config, exactly what `tunelab train FILE --config winner.yaml` takes.
Unless --keep-all, every other local trial keeps its metrics, log and config but not its
adapter and checkpoints (a LoRA checkpoint holds optimizer state too: megabytes per trial).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tunelab.config import TrainConfig, save_config
from tunelab.errors import command
from tunelab.evaluate.plots import loss_curve_png
from tunelab.registry import open_registry
from tunelab.sweep import plan as plans
from tunelab.sweep.board import Board, TrialRow
from tunelab.sweep.pruning import validation_curve
from tunelab.sweep.space import label


def winner(board: Board) -> TrialRow | None:
    ranked = [row for row in board.ordered()
              if row.status == "succeeded" and row.best_valid_loss is not None]
    return min(ranked, key=lambda row: row.best_valid_loss or 0.0) if ranked else None


def write_curves(plan: plans.SweepPlan, board: Board) -> Path | None:
    """One PNG with every trial's validation loss against step."""
    series = {}
    for row in board.ordered():
        curve = validation_curve(row.job_id) if row.job_id else []
        if curve:
            series[f"#{row.index} {label(row.params)} ({row.status})"] = curve
    if not series:
        return None
    path = plan.folder / "curves.png"
    path.write_bytes(loss_curve_png(f"{plan.id}: validation loss per trial", series))
    return path


def write_winner_config(plan: plans.SweepPlan, best: TrialRow) -> Path | None:
    """The winner's resolved config as YAML (local trials; a cloud job has no TrainConfig)."""
    if plan.provider != "local" or best.job_id is None:
        return None
    with open_registry() as registry:
        job = registry.get_job(best.job_id)
    if not isinstance(job.config, TrainConfig):
        return None
    return save_config(job.config, plan.folder / "winner.yaml", force=True)


def let_go_of_losers(plan: plans.SweepPlan, board: Board, best: TrialRow | None) -> list[str]:
    """Delete every other local trial's weights; the jobs ids whose weights went."""
    if plan.keep_all or plan.provider != "local":
        return []
    gone = []
    with open_registry() as registry:
        for row in board.ordered():
            if row is best or not row.job_id or not row.run_dir:
                continue
            run_dir = Path(row.run_dir)
            if not (run_dir / "adapter").exists() and not (run_dir / "checkpoints").exists():
                continue
            for checkpoint in registry.list_checkpoints(row.job_id):
                registry.delete_checkpoint(row.job_id, checkpoint.name)
            for folder in ("adapter", "model", "checkpoints"):
                shutil.rmtree(run_dir / folder, ignore_errors=True)
            # No weights, no model: the server must not list a name it cannot load.
            registry.update_job(row.job_id, fine_tuned_model=None)
            registry.add_event(row.job_id, f"weights removed at the end of {plan.id} (not "
                                           "its winner); metrics, log and config kept")
            row.fine_tuned_model = None
            gone.append(row.job_id)
    return gone


def summary(plan: plans.SweepPlan, board: Board, ended: str, best: TrialRow | None,
            files: dict[str, Path | None]) -> dict[str, Any]:
    """The sweep's --json object, also saved as summary.json."""
    result: dict[str, Any] = {
        "sweep": plan.id, "provider": plan.provider, "mode": plan.mode, "ended": ended,
        "base_valid_loss": board.base_valid_loss,
        "winner": best.as_dict() if best else None,
        "trials": [row.as_dict() for row in board.ordered()],
        **{name: str(path) if path else None for name, path in files.items()},
    }
    if best is not None and board.base_valid_loss:
        change = (best.best_valid_loss or 0.0) / board.base_valid_loss - 1
        result["winner_vs_base"] = round(change, 4)
    if files.get("winner_config") and plan.base.get("train_file"):
        result["train_command"] = command("tunelab", "train", plan.base["train_file"],
                                          "--config", files["winner_config"])
    (plan.folder / "summary.json").write_text(json.dumps(result, indent=2, default=str),
                                              encoding="utf-8")
    return result
