"""Where a run's progress goes: train.log, metrics.jsonl, the registry and on_event.

The loop calls the Hooks methods; this class turns them into the run folder's files, the
registry's rows (events, per-step metrics, checkpoints) and plain dict events for whoever
shows progress (the CLI's rich bar, the server's event stream).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunelab.local import checkpoints
from tunelab.local.state import TrainState
from tunelab.local.trainer import Hooks
from tunelab.registry import Checkpoint, Registry

EventHandler = Callable[[dict[str, Any]], None]


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
    def on_step(self, state: TrainState, values: dict[str, Any]) -> None:
        self._emit({"type": "step", **values})
        if state.step % self.log_every and state.step != values["total_steps"]:
            return
        line = {key: values[key] for key in ("step", "epoch", "loss", "lr", "tokens",
                                             "tokens_per_s")}
        self._append_metrics(line)
        self.registry.add_metrics(self.job_id, state.step, {k: v for k, v in line.items()
                                                            if k != "step"})
        self._log(f"step {state.step}/{values['total_steps']} loss {values['loss']:.4f} "
                  f"lr {values['lr']:.2e} {values['tokens_per_s']:.0f} tok/s")

    def on_validation(self, state: TrainState, val_loss: float, is_best: bool) -> None:
        line = {"step": state.step, "epoch": state.epoch, "val_loss": round(val_loss, 6)}
        self._append_metrics(line)
        self.registry.add_metrics(self.job_id, state.step, {"val_loss": line["val_loss"]})
        best = " (best so far)" if is_best else ""
        self.message(f"step {state.step}: validation loss {val_loss:.4f}{best}",
                     data={"step": state.step, "val_loss": val_loss})
        self._emit({"type": "validation", "step": state.step, "val_loss": val_loss,
                    "best": is_best})

    def on_checkpoint(self, state: TrainState, name: str, kind: str, path: Path) -> None:
        if kind == "deleted":
            self.registry.delete_checkpoint(self.job_id, name)
            self._log(f"checkpoint {name} removed (retention)")
            return
        metrics = {"loss": state.last_loss, "val_loss": state.last_val_loss}
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

    # run-folder helpers -------------------------------------------------------------
    def truncate_metrics(self, after_step: int) -> None:
        """On resume, drop metric lines a killed run wrote past its last checkpoint."""
        path = self.run_dir / "metrics.jsonl"
        if not path.exists():
            return
        kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= after_step]
        path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def _append_metrics(self, line: dict[str, Any]) -> None:
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")

    def _log(self, text: str, level: str = "info") -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(self.run_dir / "train.log", "a", encoding="utf-8") as log:
            log.write(f"{stamp} {level.upper():5} {text}\n")

    def _emit(self, event: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(event)
