"""The compare page's runs: `tunelab compare` itself (tunelab.evaluate.compare), started in
the background, with its progress, and each finished result saved as JSON under
TUNELAB_HOME/comparisons/ (the same object `tunelab compare --json` prints), so the page
lists past comparisons after a restart.
"""

from __future__ import annotations

import json
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

MAX_MODELS = 6


def folder() -> Path:
    return home.home() / "comparisons"


@dataclass
class Run:
    id: str
    models: list[str]
    started: float = field(default_factory=time.time)
    status: str = "running"  # running | done | failed
    progress: dict[str, list[int]] = field(default_factory=dict)  # what -> [done, total]
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "models": self.models, "status": self.status,
                "progress": self.progress, "error": self.error, "started": self.started}


def choices(registry: Registry) -> list[dict[str, str]]:
    """What the page offers to compare: base, tuned jobs, recorded golden sets."""
    found = [{"value": "base", "label": "base (the embedded model)"}]
    for job in registry.list_jobs(limit=1000):
        if job.status == "succeeded" and (job.provider == "local" or job.fine_tuned_model):
            found.append({"value": job.id, "label": f"{job.fine_tuned_model or job.id} "
                                                    f"({job.provider})"})
    for header in sorted((home.home() / "golden").glob("*/header.json")):
        try:
            model = json.loads(header.read_text(encoding="utf-8"))["model"]
        except (OSError, ValueError, KeyError):
            continue
        found.append({"value": f"{RECORDED}:{model}", "label": f"{RECORDED}:{model} "
                                                               "(golden set)"})
    return found


class Comparisons:
    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}
        self._lock = threading.Lock()

    def start(self, models: list[str], *, limit: int, max_new_tokens: int,
              judge: str | None = None, eval_file: Path | None = None) -> Run:
        models = [model for model in dict.fromkeys(models) if model]
        if not 2 <= len(models) <= MAX_MODELS:
            raise UsageError(f"pick 2 to {MAX_MODELS} models to compare (got {len(models)})",
                             fix="tick at least two models")
        run = Run("cmp-" + secrets.token_hex(6), models)
        with self._lock:
            self.runs[run.id] = run
        threading.Thread(target=self._run, args=(run, limit, max_new_tokens, judge, eval_file),
                         name=f"tunelab-{run.id}", daemon=True).start()
        return run

    def _run(self, run: Run, limit: int, max_new_tokens: int, judge: str | None,
             eval_file: Path | None) -> None:
        from tunelab.evaluate.compare import compare
        from tunelab.evaluate.runner import Settings

        def advance(what: str, done: int, total: int) -> None:
            run.progress[what] = [done, total]

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

