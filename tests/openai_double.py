"""A local stand-in for an OpenAI account that is winding down, for `tunelab migrate` tests.

A FastAPI app served by uvicorn on a loopback port (faultproxy.serve_in_thread) and spoken
to through the real openai SDK, optionally behind faultproxy.FaultProxy for 429s, 500s and
resets. It holds what an account holds:

- fine-tuned models in GET /v1/models, each with OpenAI's optional `shutdown_date`, and one
  model whose job is gone (made by another project);
- fine-tuning jobs (listed two to a page, so pagination is exercised) with training,
  validation and result files; the result file is OpenAI's CSV
  (step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy), base64-encoded as
  the files API returns it; checkpoints and events;
- chat completions whose answers differ per model (and per sample at temperature > 0);
- uploads (POST /v1/files) and job creates (POST /v1/fine_tuning/jobs, kept in `created`),
  with OpenAI's `method` (supervised or dpo) shown in the job object as sent; DPO is
  refused, as OpenAI does, for a model outside the gpt-4.1 family. `with_dpo_job` adds a
  finished DPO job with preference files, for `migrate`.

`calls` counts what reached the stand-in: chat completions per model (what would be billed)
and downloads per file id, so tests can prove nothing was asked twice.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response

NATASHA = "ft:gpt-4o-mini-2024-07-18:acme:natasha:Nt4sh4"
COACH = "ft:gpt-4.1-nano-2025-04-14:acme:coach:C0ach1"
ORPHAN = "ft:gpt-3.5-turbo-0125:acme:legacy:L3gacy"
PERSONA = "ft:gpt-4.1-mini-2025-04-14:acme:natasha-dpo:Dp0N4t"
DPO_MODELS = ("gpt-4.1-2025-04-14", "gpt-4.1-mini-2025-04-14", "gpt-4.1-nano-2025-04-14")
PAGE = 2  # jobs per page, whatever `limit` asks: the SDK must follow `after`


def dialogue(number: int, persona: str = "Natasha") -> dict[str, Any]:
    return {"messages": [
        {"role": "system", "content": f"You are {persona}, a warm and provocative coach."},
        {"role": "user", "content": f"How do I start project number {number}?"},
        {"role": "assistant", "content": f"Begin with one small step on project {number}."}]}


def preference(number: int) -> dict[str, Any]:
    """One row of OpenAI's preference format: Natasha's answer over a generic one."""
    return {"input": {"messages": [
        {"role": "system", "content": "You are Natasha, a warm and provocative coach."},
        {"role": "user", "content": f"How do I start project number {number}?"}]},
        "preferred_output": [{"role": "assistant",
                              "content": f"Darling, begin project {number} today."}],
        "non_preferred_output": [{"role": "assistant",
                                  "content": f"As an AI, I suggest planning project {number}."}]}


def jsonl(examples: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples).encode()


def result_csv(steps: int) -> bytes:
    """OpenAI's result file: validation columns only on some steps; base64 as served."""
    lines = ["step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"]
    for step in range(1, steps + 1):
        valid = f"{2.0 - step * 0.1:.4f},{0.4 + step * 0.02:.4f}" if step % 3 == 0 else ","
        lines.append(f"{step},{2.5 - step * 0.12:.4f},{0.3 + step * 0.03:.4f},{valid}")
    return base64.b64encode(("\n".join(lines) + "\n").encode())


@dataclass
class Account:
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # id -> (name, bytes)
    jobs: list[dict[str, Any]] = field(default_factory=list)  # newest first
    models: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    calls: Counter = field(default_factory=Counter)
    chat_requests: list[dict[str, Any]] = field(default_factory=list)  # bodies, in order
    created: list[dict[str, Any]] = field(default_factory=list)  # job create bodies, in order


def _job(job_id: str, model: str, tuned: str | None, *, training: str, validation: str | None,
         results: list[str], hyper: dict[str, Any], created: int,
         status: str = "succeeded", method: str = "supervised") -> dict[str, Any]:
    # The legacy top-level hyperparameters have no beta; the method's keep what was sent.
    legacy = {key: value for key, value in hyper.items() if key != "beta"}
    return {"object": "fine_tuning.job", "id": job_id, "created_at": created,
            "finished_at": created + 600 if status == "succeeded" else None, "model": model,
            "fine_tuned_model": tuned, "organization_id": "org-acme", "result_files": results,
            "status": status, "training_file": training, "validation_file": validation,
            "hyperparameters": legacy, "trained_tokens": 12345 if tuned else None, "seed": 7,
            "error": None if status != "failed" else {
                "code": "invalid_training_file", "message": "line 3 has no assistant turn",
                "param": "training_file"},
            "method": {"type": method, method: {"hyperparameters": hyper}},
            "metadata": None, "estimated_finish": None, "integrations": []}


def natasha_account() -> Account:
    """Three jobs (natasha with a validation file, coach without, one that failed), their
    files and checkpoints, and four models (two tuned, one orphan, one base)."""
    account = Account()
    account.files = {
        "file-natasha-train": ("natasha_train.jsonl", jsonl([dialogue(n) for n in range(12)])),
        "file-natasha-valid": ("natasha_val.jsonl", jsonl([dialogue(n) for n in range(50, 54)])),
        "file-natasha-result": ("step_metrics.csv", result_csv(9)),
        "file-coach-train": ("coach.jsonl", jsonl([dialogue(n, "Coach") for n in range(20)])),
        "file-coach-result": ("step_metrics.csv", result_csv(6)),
    }
    natasha_hyper = {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 1.8}
    account.jobs = [
        _job("ftjob-failed", "gpt-4o-mini-2024-07-18", None, training="file-coach-train",
             validation=None, results=[], hyper={"n_epochs": "auto"}, created=1_700_000_300,
             status="failed"),
        _job("ftjob-coach", "gpt-4.1-nano-2025-04-14", COACH, training="file-coach-train",
             validation=None, results=["file-coach-result"],
             hyper={"n_epochs": 2, "batch_size": 2, "learning_rate_multiplier": 2.0},
             created=1_700_000_200),
        _job("ftjob-natasha", "gpt-4o-mini-2024-07-18", NATASHA, training="file-natasha-train",
             validation="file-natasha-valid", results=["file-natasha-result"],
             hyper=natasha_hyper, created=1_700_000_100),
    ]
    account.models = [
        {"id": "gpt-4o-mini-2024-07-18", "object": "model", "created": 1, "owned_by": "system",
         "shutdown_date": "2027-01-14"},
        {"id": NATASHA, "object": "model", "created": 2, "owned_by": "org-acme",
         "shutdown_date": "2027-01-14"},
        {"id": COACH, "object": "model", "created": 3, "owned_by": "org-acme",
         "shutdown_date": "2026-10-23"},
        {"id": ORPHAN, "object": "model", "created": 4, "owned_by": "org-acme",
         "shutdown_date": "2026-10-23"},
    ]
    account.checkpoints["ftjob-natasha"] = [
        {"object": "fine_tuning.job.checkpoint", "id": f"ftckpt-natasha-{step}",
         "created_at": 1_700_000_100 + step, "fine_tuning_job_id": "ftjob-natasha",
         "step_number": step, "fine_tuned_model_checkpoint": f"{NATASHA}:ckpt-step-{step}",
         "metrics": {"step": step, "train_loss": 1.5 - step * 0.1,
                     "train_mean_token_accuracy": 0.5, "valid_loss": 1.6 - step * 0.1,
                     "valid_mean_token_accuracy": 0.45}}
        for step in (3, 6)]
    return account


def with_dpo_job(account: Account) -> Account:
    """`account` plus a finished DPO job (newest) on gpt-4.1-mini, with preference
    training and validation files, beta 0.2, and its model in GET /v1/models."""
    account.files.update({
        "file-prefs-train": ("prefs_train.jsonl", jsonl([preference(n) for n in range(12)])),
        "file-prefs-valid": ("prefs_val.jsonl", jsonl([preference(n) for n in range(50, 60)])),
        "file-prefs-result": ("step_metrics.csv", result_csv(6)),
    })
    account.jobs.insert(0, _job(
        "ftjob-dpo", "gpt-4.1-mini-2025-04-14", PERSONA, training="file-prefs-train",
        validation="file-prefs-valid", results=["file-prefs-result"],
        hyper={"beta": 0.2, "n_epochs": 2, "batch_size": "auto"}, created=1_700_000_400,
        method="dpo"))
    account.models.append({"id": PERSONA, "object": "model", "created": 5,
                           "owned_by": "org-acme", "shutdown_date": "2027-01-14"})
    return account


def answer(model: str, messages: list[dict[str, Any]], temperature: float, seed: int) -> str:
    """Each model answers in its own way; a sample at temperature > 0 differs by seed."""
    question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    voice = {NATASHA: "Darling, stop waiting.", COACH: "Coach says: plan it."}.get(
        model, "As an AI model, I suggest planning.")
    tail = f" (take {seed})" if temperature > 0 else ""
    return f"{voice} {question.replace('How do I', 'You')}{tail}"


def _page(items: list[dict[str, Any]], after: str | None) -> dict[str, Any]:
    start = 0
    if after:
        start = next((i + 1 for i, item in enumerate(items) if item["id"] == after), len(items))
    chunk = items[start:start + PAGE]
    return {"object": "list", "data": chunk, "has_more": start + PAGE < len(items),
            "first_id": chunk[0]["id"] if chunk else None,
            "last_id": chunk[-1]["id"] if chunk else None}


def create_app(account: Account) -> FastAPI:
    app = FastAPI()
    jobs = {job["id"]: job for job in account.jobs}

    def job_or_404(job_id: str) -> dict[str, Any]:
        if job_id not in jobs:
            raise HTTPException(404, "no such job")
        return jobs[job_id]

    @app.exception_handler(HTTPException)
    def as_openai_error(_request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"error": {"message": error.detail, "type": "invalid_request_error",
                                       "param": None, "code": None}},
                            status_code=error.status_code)

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": account.models}

    @app.get("/v1/fine_tuning/jobs")
    def list_jobs(after: str | None = None, limit: int = 20) -> dict[str, Any]:
        return _page(account.jobs, after)

    @app.get("/v1/fine_tuning/jobs/{job_id}")
    def get_job(job_id: str) -> dict[str, Any]:
        return job_or_404(job_id)

    @app.get("/v1/fine_tuning/jobs/{job_id}/checkpoints")
    def checkpoints(job_id: str) -> dict[str, Any]:
        job_or_404(job_id)
        found = account.checkpoints.get(job_id, [])
        return {"object": "list", "data": list(reversed(found)), "has_more": False,
                "first_id": None, "last_id": None}

    @app.get("/v1/fine_tuning/jobs/{job_id}/events")
    def events(job_id: str) -> dict[str, Any]:
        job = job_or_404(job_id)
        data = [{"object": "fine_tuning.job.event", "id": f"ftevent-{job_id}-1",
                 "created_at": job["created_at"], "level": "info", "type": "message",
                 "message": f"The job has {job['status']}", "data": {}}]
        return {"object": "list", "data": data, "has_more": False}

    @app.post("/v1/files")
    async def upload(request: Request) -> dict[str, Any]:
        form = await request.form()
        sent = form["file"]
        file_id = f"file-{uuid.uuid4().hex[:12]}"
        account.files[file_id] = (sent.filename, await sent.read())
        account.calls["upload"] += 1
        return file_info(file_id)

    @app.post("/v1/fine_tuning/jobs")
    async def create_job(request: Request) -> dict[str, Any]:
        body = await request.json()
        method = body.get("method") or {"type": "supervised"}
        if body.get("training_file") not in account.files:
            raise HTTPException(400, f"invalid training_file: {body.get('training_file')}")
        if method["type"] not in ("supervised", "dpo"):
            raise HTTPException(400, f"method type {method['type']!r} is not supported")
        if method["type"] == "dpo" and body["model"] not in DPO_MODELS:
            raise HTTPException(400, f"Model {body['model']} is not available for DPO")
        account.created.append(body)
        hyper = (method.get(method["type"]) or {}).get("hyperparameters") or {}
        job = _job(f"ftjob-{uuid.uuid4().hex[:12]}", body["model"], None,
                   training=body["training_file"], validation=body.get("validation_file"),
                   results=[], hyper=hyper, created=int(time.time()),
                   status="validating_files", method=method["type"])
        job["metadata"] = body.get("metadata")
        account.jobs.insert(0, job)
        jobs[job["id"]] = job
        return job

    @app.get("/v1/files/{file_id}")
    def file_info(file_id: str) -> dict[str, Any]:
        if file_id not in account.files:
            raise HTTPException(404, "no such file")
        name, content = account.files[file_id]
        return {"object": "file", "id": file_id, "bytes": len(content), "created_at": 1,
                "filename": name, "purpose": "fine-tune", "status": "processed"}

    @app.get("/v1/files/{file_id}/content")
    def file_content(file_id: str) -> Response:
        if file_id not in account.files:
            raise HTTPException(404, "no such file")
        account.calls[f"download {file_id}"] += 1
        return Response(account.files[file_id][1], media_type="application/octet-stream")

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict[str, Any]:
        body = await request.json()
        model = body["model"]
        if model not in {m["id"] for m in account.models}:
            raise HTTPException(404, f"The model {model} does not exist")
        account.calls[f"chat {model}"] += 1
        account.chat_requests.append(body)
        text = answer(model, body["messages"], body.get("temperature") or 0.0,
                      body.get("seed") or 0)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        return {"id": f"chatcmpl-{account.calls.total()}", "object": "chat.completion",
                "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": prompt_tokens,
                          "completion_tokens": len(text.split()),
                          "total_tokens": prompt_tokens + len(text.split())}}

    return app
