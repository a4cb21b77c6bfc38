"""The compare page's runs: `tunelab compare` itself (tunelab.evaluate.compare), run in the
background one at a time (each loads models: several at once ran out of memory), the others
queued, with its progress, and each finished result saved as JSON under
TUNELAB_HOME/comparisons/ (the same object `tunelab compare --json` prints), so the page
lists past comparisons after a restart.

The page takes only the models it offers (`choices`): the base model and this server's
succeeded local jobs, as GET /v1/models lists them, and recorded golden sets (answers kept
on this server). A judge is a base model or one of those jobs. Never a path, a hub id or a
cloud model: the server's disk stays closed, and no click spends the operator's keys.
"""

from __future__ import annotations

import contextvars
import json
import queue
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab import home
from tunelab.errors import TunelabError, UsageError
from tunelab.evaluate.golden import RECORDED
from tunelab.registry import Registry
from tunelab.server.models import LOCAL, base_models

MAX_MODELS = 6
NOT_OFFERED = "is not one this page offers (GET /v1/models lists the models a server has)"


def folder() -> Path:
    return home.home() / "comparisons"


@dataclass
class Run:
    id: str
    models: list[str]
    started: float = field(default_factory=time.time)
    status: str = "queued"  # queued | running | done | failed
    progress: dict[str, list[int]] = field(default_factory=dict)  # what -> [done, total]
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "models": self.models, "status": self.status,
                "progress": self.progress, "error": self.error, "started": self.started}


def choices(registry: Registry) -> list[dict[str, str]]:
    """What the page offers to compare: base, this server's tuned local jobs, recorded
    golden sets."""
    found = [{"value": "base", "label": "base (the embedded model)"}, *_tuned(registry)]
    for header in sorted((home.home() / "golden").glob("*/header.json")):
        try:
            model = json.loads(header.read_text(encoding="utf-8"))["model"]
        except (OSError, ValueError, KeyError):
            continue
        found.append({"value": f"{RECORDED}:{model}", "label": f"{RECORDED}:{model} "
                                                               "(golden set)"})
    return found


def judges(registry: Registry) -> list[dict[str, str]]:
    """What the page offers as a judge: a base model, or a tuned local job."""
    return [*({"value": name, "label": f"{name} (base model)"} for name in base_models()),
            *_tuned(registry)]


def _tuned(registry: Registry) -> list[dict[str, str]]:
    return [{"value": job.id, "label": f"{job.fine_tuned_model or job.id} ({job.provider})"}
            for job in registry.list_jobs(LOCAL, limit=1000) if job.status == "succeeded"]


class Comparisons:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.runs: dict[str, Run] = {}
        self._lock = threading.Lock()
        # One at a time, in the order started, on one thread: the others wait, queued.
        self._waiting: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self, models: list[str], *, limit: int, max_new_tokens: int,
              judge: str | None = None, eval_file: Path | None = None) -> Run:
        """Queue a comparison of `models` (and `judge`), each one the page offers."""
        models = [model for model in dict.fromkeys(models) if model]
        if not 2 <= len(models) <= MAX_MODELS:
            raise UsageError(f"pick 2 to {MAX_MODELS} models to compare (got {len(models)})",
                             fix="tick at least two models")
        offered = {choice["value"] for choice in choices(self.registry)}
        for model in models:
            if model not in offered:
                raise UsageError(f"model {model[:80]!r} {NOT_OFFERED}",
                                 fix="tick the models the page lists")
        if judge and judge not in {choice["value"] for choice in judges(self.registry)}:
            raise UsageError(f"judge {judge[:80]!r} {NOT_OFFERED}",
                             fix="pick a judge from the page's list, or none")
        run = Run("cmp-" + secrets.token_hex(6), models)
        with self._lock:
            self.runs[run.id] = run
            # In this request's context: the server's pinned home goes with it.
            self._waiting.put((contextvars.copy_context(), run, limit, max_new_tokens, judge,
                               eval_file))
            if self._thread is None:  # daemon: a server stopping mid-comparison exits
                self._thread = threading.Thread(target=self._drain, name="tunelab-compare",
                                                daemon=True)
                self._thread.start()
        return run

    def _drain(self) -> None:
        while True:
            context, *queued = self._waiting.get()
            context.run(self._run, *queued)

    def _run(self, run: Run, limit: int, max_new_tokens: int, judge: str | None,
             eval_file: Path | None) -> None:
        from tunelab.evaluate.compare import compare
        from tunelab.evaluate.runner import Settings

        def advance(what: str, done: int, total: int) -> None:
            run.progress[what] = [done, total]

        run.status = "running"
        try:
            result = compare(run.models, eval_file=eval_file, limit=limit, judge=judge,
                             settings=Settings(max_new_tokens=max_new_tokens),
                             progress=advance)
            saved = {"id": run.id, "created": run.started, "models_asked": run.models,
                     **result.to_dict()}
            target = folder() / f"{run.id}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.with_suffix(".part").write_text(json.dumps(saved, ensure_ascii=False),
                                                   encoding="utf-8")
            target.with_suffix(".part").replace(target)
            run.status = "done"
        except TunelabError as error:
            run.status, run.error = "failed", error.render()
        except Exception as error:  # a bug: the page says so instead of spinning forever
            run.status, run.error = "failed", f"internal error ({type(error).__name__})"

    def get(self, run_id: str) -> Run | None:
        return self.runs.get(run_id)


def saved(run_id: str) -> dict[str, Any] | None:
    if not run_id.startswith("cmp-") or not run_id[4:].isalnum():
        return None
    try:
        return json.loads((folder() / f"{run_id}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def saved_list() -> list[dict[str, Any]]:
    found = []
    for path in sorted(folder().glob("cmp-*.json"), key=lambda p: p.stat().st_mtime,
                       reverse=True):
        data = saved(path.stem)
        if data:
            found.append({"id": data["id"], "created": data.get("created"),
                          "models": [model["label"] for model in data.get("models", [])],
                          "examples": data.get("examples")})
    return found


def side_by_side(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Each example: its question and reference, each model's answer and chrF, the judge."""
    from tunelab.evaluate.metrics import chrf

    rows = []
    for index, item in enumerate(data.get("items", [])):
        answers = []
        for model in data.get("models", []):
            answer = model["answers"][index] if index < len(model["answers"]) else {}
            text = answer.get("text") or ""
            answers.append({"label": model["label"], "text": text,
                            "chrf": chrf(text, item["reference"]) if text else None})
        rows.append({"question": item["question"], "reference": item["reference"],
                     "answers": answers, "verdicts": item.get("verdicts") or []})
    return rows

