"""Where a run's progress goes: train.log, metrics.jsonl, the registry and on_event.

The loop calls the Hooks methods; this class turns them into the run folder's files, the
registry's rows (events, per-step metrics, checkpoints) and plain dict events for whoever
shows progress (the CLI's rich bar, the server's event stream). Every metric is written
with the vocabulary's names (registry/metrics.py), wherever it goes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunelab.local import checkpoints
from tunelab.local.methods import Measured
from tunelab.local.state import TrainState
from tunelab.local.trainer import Hooks, StepReport
from tunelab.registry import Checkpoint, Registry
from tunelab.registry import metrics as vocabulary

EventHandler = Callable[[dict[str, Any]], None]

# How train.log and the validation events name a method's metrics; any other metric goes by
# its vocabulary name.
LABELS = {vocabulary.TRAIN_ACCURACY: "accuracy", vocabulary.VALID_ACCURACY: "token accuracy",
          vocabulary.TRAIN_REWARD_ACCURACY: "reward accuracy",
          vocabulary.VALID_REWARD_ACCURACY: "reward accuracy"}


class RunRecorder(Hooks):
    def __init__(self, registry: Registry, job_id: str, run_dir: Path, log_every: int,
                 on_event: EventHandler | None = None) -> None:
        self.registry, self.job_id, self.run_dir = registry, job_id, run_dir
        self.log_every = log_every
        self.on_event = on_event
        run_dir.mkdir(parents=True, exist_ok=True)

    # plain messages -----------------------------------------------------------------
    def message(self, text: str, *, level: str = "info", data: dict | None = None) -> None:
        self._log(text, level)
        self.registry.add_event(self.job_id, text, level=level, data=data)
        self._emit({"type": "message", "level": level, "message": text})

    # hooks from the loop ------------------------------------------------------------
    def on_step(self, state: TrainState, report: StepReport) -> None:
        self._emit({"type": "step", **report.values()})
        if state.step % self.log_every and state.step != report.total_steps:
            return
        self._record_metrics(report.metrics())
        self._log(" ".join([
            f"step {report.step}/{report.total_steps} train_loss {report.train_loss:.4f}",
            *labelled(report.method_metrics),
            f"learning_rate {report.learning_rate:.2e} {report.tokens_per_s:.0f} tok/s"]))

    def on_validation(self, state: TrainState, result: Measured, is_best: bool) -> None:
        values = validation_metrics(result)
        self._record_metrics({vocabulary.STEP: state.step, vocabulary.EPOCH: state.epoch,
                              **values})
        said = ", ".join([f"validation loss {result.loss:.4f}", *labelled(result.metrics)])
        best = " (best so far)" if is_best else ""
        self.message(f"step {state.step}: {said}{best}",
                     data={vocabulary.STEP: state.step, **values})
        self._emit({"type": "validation", vocabulary.STEP: state.step, **values,
                    "best": is_best})

    def on_checkpoint(self, state: TrainState, name: str, kind: str, path: Path) -> None:
        if kind == "deleted":
            self.registry.delete_checkpoint(self.job_id, name)
            self._log(f"checkpoint {name} removed (retention)")
            return
        metrics = checkpoint_metrics(state)
        self.registry.upsert_checkpoint(Checkpoint(
            self.job_id, name, kind, time.time(), state.step, float(state.epoch), str(path),
            metrics))
        root = path.parent
        for pointer in checkpoints.POINTERS:
            target = checkpoints.read_pointer(root, pointer)
            if target is not None and target.name == name:
                self.registry.upsert_checkpoint(Checkpoint(
                    self.job_id, pointer, pointer, time.time(), state.step,
                    float(state.epoch), str(target), {"points_to": name, **metrics}))
        self.message(f"checkpoint {name} saved at step {state.step}",
                     data={"checkpoint": name, "kind": kind, "step": state.step})

    def on_stop(self, state: TrainState, outcome: str, why: str) -> None:
        self.message(why, data={vocabulary.STEP: state.step, "outcome": outcome})

    # run-folder helpers -------------------------------------------------------------
    def truncate_metrics(self, after_step: int) -> None:
        """On resume, drop metric lines a killed run wrote past its last checkpoint."""
        path = self.run_dir / "metrics.jsonl"
        if not path.exists():
            return
        kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= after_step]
        path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def _record_metrics(self, line: dict[str, Any]) -> None:
        """One metrics.jsonl line and the same values as the registry's row for the step."""
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")
        self.registry.add_metrics(self.job_id, line[vocabulary.STEP],
                                  {k: v for k, v in line.items() if k != vocabulary.STEP})

    def _log(self, text: str, level: str = "info") -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(self.run_dir / "train.log", "a", encoding="utf-8") as log:
            log.write(f"{stamp} {level.upper():5} {text}\n")

    def _emit(self, event: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(event)


def labelled(metrics: dict[str, float]) -> list[str]:
    """A method's metrics as a log line says them: "label value" each."""
    return [f"{LABELS.get(name, name)} {value:.3f}" for name, value in metrics.items()]


def validation_metrics(result: Measured) -> dict[str, float]:
    """A validation in the vocabulary. The local trainer scores the whole validation file,
    so `valid_loss` and `full_valid_loss` are the same number (OpenAI's valid_loss is a
    sampled batch; a reader wanting the whole-file loss finds it under its own name)."""
    loss = round(result.loss, 6)
    return {vocabulary.VALID_LOSS: loss, vocabulary.FULL_VALID_LOSS: loss,
            **{name: round(value, 6) for name, value in result.metrics.items()}}


def checkpoint_metrics(state: TrainState) -> dict[str, Any]:
    """What a checkpoint row keeps: the losses and the method's metrics at its step."""
    values = {vocabulary.TRAIN_LOSS: state.last_train_loss, **state.train_metrics,
              vocabulary.VALID_LOSS: state.valid_loss, **state.valid_metrics}
    return {name: value for name, value in values.items() if value is not None}
