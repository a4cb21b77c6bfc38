"""What the dashboard's pages show, as plain dicts, read from the layers below.

Nothing here renders HTML: the templates do (with Jinja's autoescape), so a dataset's text
or a job's name is always shown as text. Times are readable local dates here; the JSON
routes keep the registry's numbers.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

from tunelab.config import TrainConfig
from tunelab.data import lifecycle
from tunelab.errors import TunelabError
from tunelab.evaluate.job_files import job_file
from tunelab.migrate.state import REPLACES, RETRAIN_OF
from tunelab.registry import SERVER, JobRecord, Registry
from tunelab.registry import metrics as vocab
from tunelab.registry.job_config import IMPORTED, CloudJob
from tunelab.registry.store import STATUSES, TERMINAL

JOB_LIMIT = 1000
CURVES = (vocab.TRAIN_LOSS, vocab.VALID_LOSS, vocab.FULL_VALID_LOSS, *vocab.CURVE_METRICS)
# The trainer's start message: "training started: 160 examples, 80 steps/epoch, 80 steps".
_TOTAL_STEPS = re.compile(r"(\d+) steps$")
SOURCES = ("cli", "server", "imported")
SMALL_FILE = "too_few_examples"  # data/check.py's code for a file under its minimum


def when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)) if stamp else "-"


def source(job: JobRecord) -> str:
    """Who made the row: a migrate import, the server (API or dashboard) or the CLI."""
    if job.kind == IMPORTED:
        return "imported"
    return "server" if job.origin == SERVER else "cli"


def name(job: JobRecord) -> str:
    return job.fine_tuned_model or (f"{job.base_model} ({job.suffix})" if job.suffix
                                    else job.base_model or job.id)


def days_left(job: JobRecord) -> dict[str, Any] | None:
    """The model's retirement, when its provider's calendar dates it."""
    for model in (job.fine_tuned_model, job.base_model):
        if not model:
            continue
        life = lifecycle.lifecycle(job.provider, model)
        if life is not None and life.shutdown is not None:
            left = lifecycle.days_left(life.shutdown)
            return {"days": left, "shutdown": life.shutdown.isoformat(),
                    "source": life.source}
    return None


def job_row(job: JobRecord) -> dict[str, Any]:
    return {"id": job.id, "name": name(job), "provider": job.provider, "status": job.status,
            "source": source(job), "base_model": job.base_model or "-",
            "created": when(job.created_at), "retirement": days_left(job)}


def job_rows(registry: Registry, *, provider: str = "", status: str = "",
             origin: str = "") -> tuple[list[dict[str, Any]], list[str]]:
    """The rows that pass the filters, newest first, and every provider seen (for the menu)."""
    jobs = registry.list_jobs(limit=JOB_LIMIT)
    providers = sorted({job.provider for job in jobs})
    kept = [job for job in jobs if (not provider or job.provider == provider)
            and (not status or job.status == status) and (not origin or source(job) == origin)]
    return [job_row(job) for job in kept], providers


def filters() -> dict[str, tuple[str, ...]]:
    return {"statuses": STATUSES, "sources": SOURCES}


# one job ------------------------------------------------------------------------------
def linked(registry: Registry, job: JobRecord) -> list[dict[str, str]]:
    """Jobs this one retrains or replaces, and the ones that retrain it."""
    found = []
    meta = job.metadata or {}
    if meta.get(RETRAIN_OF):
        found.append({"relation": "retrain of", "id": meta[RETRAIN_OF]})
    if meta.get(REPLACES):
        old = registry.find_job_by_model(meta[REPLACES])
        found.append({"relation": "replaces", "id": old.id if old else "",
                      "model": meta[REPLACES]})
    for other in registry.list_jobs(limit=JOB_LIMIT):
        if (other.metadata or {}).get(RETRAIN_OF) == job.id:
            found.append({"relation": "retrained as", "id": other.id})
    return found


def samples(job: JobRecord) -> list[dict[str, str]]:
    if not job.run_dir:
        return []
    path = Path(job.run_dir) / "samples.json"
    try:
        return list(json.loads(path.read_text(encoding="utf-8")).get("samples") or [])
    except (OSError, ValueError, AttributeError):
        return []


# The settings of a local run that a job's page shows.
SHOWN_SETTINGS = frozenset({"model", "epochs", "max_steps", "learning_rate", "lr_scheduler",
                            "batch_size", "grad_accum", "max_length", "full", "lora_r",
                            "lora_alpha", "precision", "seed", "eval_every", "save_every"})


def hyperparameters(job: JobRecord) -> dict[str, Any]:
    """What the job trained with: a local run's resolved settings; else what the provider
    echoed or a trial varied (the row's hyperparameters); else what tunelab asked for."""
    config = job.config
    if isinstance(config, TrainConfig):
        return config.model_dump(mode="json", include=SHOWN_SETTINGS, exclude_none=True)
    if job.hyperparameters or not isinstance(config, CloudJob):
        return dict(job.hyperparameters or {})
    asked = config.hyperparameters.model_dump(exclude_none=True) if config.hyperparameters \
        else {}
    return {**asked, **({"seed": config.seed} if config.seed is not None else {})}


def data_files(job: JobRecord, checks: DataChecks) -> list[dict[str, Any]]:
    files = []
    for role, recorded in (("training", job.training_file),
                           ("validation", job.validation_file)):
        if not recorded:
            continue
        path = job_file(job, "training_file" if role == "training" else "validation_file")
        model = job.base_model if job.provider == "local" else None
        summary = checks.summary(path, job.provider, model) if path else None
        if summary and role == "validation" and "errors" in summary:
            # The minimum example count is a rule for training files only.
            errors = [e for e in summary["errors"] if e["code"] != SMALL_FILE]
            summary = {**summary, "errors": errors, "ok": not errors}
        files.append({"role": role, "name": recorded, "summary": summary})
    return files


def cost(job: JobRecord, checks: DataChecks) -> dict[str, Any]:
    """The estimate from the data (the cost table's row for this model) against what the
    provider billed (trained tokens at the table's price), where either is known."""
    from tunelab.data.pricing import find_price

    if job.provider == "local":
        return {"local": True, "seconds": job.metrics.get(vocab.TRAIN_SECONDS)}
    model = job.base_model or ""
    estimate = None
    path = job_file(job, "training_file")
    report = checks.report(path, job.provider, model) if path else None
    if report is not None:
        rows = [row for row in report.get("cost", []) if row["model"] == model]
        estimate = rows[0]["training_cost"] if rows else None
    price = find_price(job.provider, model)
    tokens = job.metrics.get(vocab.TRAINED_TOKENS)
    actual = tokens * price.training_per_1m / 1e6 if tokens and price and \
        price.training_per_1m is not None else None
    return {"local": False, "estimate": estimate, "actual": actual, "tokens": tokens}


class DataChecks:
    """`tunelab data check` of the files the pages show, kept while the file is unchanged:
    a check reads the whole file, a page is drawn again on every visit."""

    def __init__(self) -> None:
        self._done: dict[tuple[str, str, str, float, int], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def report(self, path: Path, provider: str, model: str | None = None) -> dict[str, Any]:
        from tunelab.data.check import check_file

        target = provider if provider not in ("local", "server") else "openai"
        try:
            stat = path.stat()
        except OSError as error:
            return {"error": f"cannot read it ({error.strerror})"}
        key = (str(path), provider, model or "", stat.st_mtime, stat.st_size)
        with self._lock:
            if key in self._done:
                return self._done[key]
        # A local job counts with its base model's own tokenizer and chat template, when
        # they are here (never downloaded for a page); else with OpenAI's, as its label says.
        tokenizer = _local_tokenizer(model) if provider == "local" else None
        if tokenizer is not None:
            target = "local"
        try:
            found = check_file(path, provider=target, model=model or None, workers=1,
                               tokenizer=tokenizer).as_dict()
        except TunelabError as error:
            found = {"error": error.render()}
        with self._lock:
            self._done[key] = found
        return found

    def summary(self, path: Path, provider: str, model: str | None = None) -> dict[str, Any]:
        report = self.report(path, provider, model)
        if "error" in report:
            return report
        return {key: report[key] for key in ("ok", "examples", "valid_examples", "tokens",
                                             "errors", "warnings", "tokenizer")}


def _local_tokenizer(model: str | None) -> Any:
    """The counting tokenizer of a local job's base model, if its files are here (no torch)."""
    from tunelab.local.chat_tokens import for_model

    try:
        return for_model(model)
    except (OSError, ValueError, TunelabError):  # unreadable files: count as OpenAI would
        return None


PREVIEW_EXAMPLES, PREVIEW_CHARS = 3, 400


def preview(path: Path) -> list[dict[str, Any]]:
    """The file's first few examples (line and messages, each text cut short), to see what
    was picked before training on it."""
    from itertools import islice

    from tunelab.data.reader import iter_records

    shown = []
    try:
        for record in islice(iter_records(path), PREVIEW_EXAMPLES):
            example = record.example if isinstance(record.example, dict) else {}
            messages = [{"role": str(m.get("role")), "content": _cut(m.get("content"))}
                        for m in example.get("messages") or [] if isinstance(m, dict)]
            shown.append({"line": record.line, "messages": messages})
    except TunelabError:  # unreadable: the data check beside it says why
        return []
    return shown


def _cut(content: Any) -> str:
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "…"


def total_steps(events: list[dict[str, Any]], job: JobRecord) -> int | None:
    """How many steps the run plans: the worker's metric events say, else the trainer's
    start message, else the config's cap."""
    for event in reversed(events):
        data = event.get("data") or {}
        if data.get("total_steps"):
            return int(data["total_steps"])
        match = _TOTAL_STEPS.search(event["message"]) if \
            event["message"].startswith("training ") else None
        if match:
            return int(match.group(1))
    return job.config.max_steps if isinstance(job.config, TrainConfig) else None


def progress(points: list[dict[str, Any]], total: int | None, status: str) -> dict[str, Any]:
    """Throughput and the time left, from the metric rows alone (so a reconnect, a reload or
    a job the server did not start shows the same): seconds per step is the tokens of a
    step over the tokens per second the trainer measured."""
    step = max((int(p["step"]) for p in points), default=0)
    speed = next((p[vocab.TOKENS_PER_S] for p in reversed(points)
                  if p.get(vocab.TOKENS_PER_S)), None)
    tokens = next((p[vocab.TRAINED_TOKENS] for p in reversed(points)
                   if p.get(vocab.TRAINED_TOKENS)), None)
    eta = None
    if speed and tokens and step and total and status not in TERMINAL:
        eta = max(total - step, 0) * (tokens / step) / speed
    return {"step": step, "total_steps": total, "tokens_per_s": speed, "eta_s": eta,
            "status": status}


def event_dict(event: Any) -> dict[str, Any]:
    return {"seq": event.seq, "time": when(event.created_at), "level": event.level,
            "message": event.message, "data": event.data}


def curve_points(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The metric rows as chart points: the step and the values a curve draws."""
    keep = (vocab.STEP, *CURVES, vocab.TOKENS_PER_S, vocab.TRAINED_TOKENS)
    return [{key: row[key] for key in keep if row.get(key) is not None} for row in rows]


def job_page(registry: Registry, job: JobRecord, checks: DataChecks) -> dict[str, Any]:
    events = [event_dict(event) for event in registry.list_events(job.id)]
    checkpoints = registry.list_checkpoints(job.id)
    return {
        "job": job, "row": job_row(job), "hyper": hyperparameters(job),
        "files": data_files(job, checks), "cost": cost(job, checks), "events": events,
        "last_seq": events[-1]["seq"] if events else 0,
        "checkpoints": [{"name": c.name, "kind": c.kind, "step": c.step,
                         "epoch": c.epoch, "metrics": c.metrics,
                         "created": when(c.created_at)} for c in checkpoints],
        "samples": samples(job), "linked": linked(registry, job),
        "created": when(job.created_at), "finished": when(job.finished_at),
        "summary": {key: value for key, value in (job.metrics or {}).items()
                    if isinstance(value, (int, float))},
        "can_cancel": not job.is_terminal,
        "can_resume": job.provider == "local" and job.status in ("cancelled", "failed")
        and any(c.kind not in ("latest", "best") for c in checkpoints),
        # The kept checkpoints a resume may start from, newest first (pointers are not).
        "resumable": [c.name for c in reversed(checkpoints)
                      if c.kind not in ("latest", "best")],
        "can_export": job.provider == "local" and job.status == "succeeded",
        "error": (job.error or {}).get("message"),
    }
