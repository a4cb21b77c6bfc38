"""A local stand-in for Together AI's fine-tuning API, spoken to through the real `together` SDK.

A FastAPI app (faultproxy.serve_in_thread), optionally behind faultproxy.FaultProxy. It
follows the shapes the SDK (together 3.1.1) sends and parses:

- files: POST /v1/files (multipart: purpose, file_name, file_type, checksum) answers 302
  with `Location` (where to PUT the bytes) and `X-Together-File-Id`, or 409 with the
  `file_id` of a file with the same checksum; PUT the bytes; POST /v1/files/ID/preprocess;
  GET /v1/files/ID;
- fine-tunes: GET /v1/fine-tunes/models/limits, POST /v1/fine-tunes/estimate-price,
  POST /v1/fine-tunes, GET /v1/fine-tunes[/ID[/events|/metrics|/checkpoints]],
  POST .../ID/cancel.
  Each read of a job moves it one status on (pending, queued, running, completed); a job
  whose suffix is "fail" ends in `error` with a `job_error` event, as Together reports one;
- GET /v1/finetune/download?ft_id=ID&checkpoint=adapter|merged: `weights[kind]`, a real
  folder, packed as Together packs it: a zstd-compressed tar (the SDK names it .tar.zst);
- POST /v1/chat/completions, OpenAI-shaped.

Every request needs `Authorization: Bearer KEY`; a wrong key gets a 401 that echoes it (as
some APIs do), so tests can prove it never reaches the user. `created` holds the job create
bodies in order, so a test can prove a retried create made one job.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response

KEY = "tgp_v1_canary-together-0123456789abcdef"
STEPS = ("pending", "queued", "running", "completed")


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def pack(folder: Path, top: str) -> bytes:
    """`folder` as a zstd-compressed tar whose files sit under `top/`."""
    import zstandard

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=f"{top}/{path.name}")
    return zstandard.ZstdCompressor().compress(raw.getvalue())


@dataclass
class Account:
    key: str = KEY
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    uploads: dict[str, bytes] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    weights: dict[str, Path] = field(default_factory=dict)  # kind -> folder served
    created: list[dict[str, Any]] = field(default_factory=list)  # create bodies, in order
    calls: Counter = field(default_factory=Counter)
    user_limit: float = 100.0
    price_per_token: float = 1e-6


def _event(kind: str, message: str, level: str = "info", **extra: Any) -> dict[str, Any]:
    return {"object": "fine-tune-event", "created_at": _iso(time.time()), "type": kind,
            "message": message, "level": level, **extra}


def create_app(account: Account) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def authorise(request: Request, call_next: Any) -> Any:
        account.calls[f"{request.method} {request.url.path}"] += 1
        given = request.headers.get("authorization", "").removeprefix("Bearer ")
        if request.url.path.startswith("/upload/"):  # a presigned URL: no key
            return await call_next(request)
        if given != account.key:
            return JSONResponse({"error": {"message": f"Invalid API key provided: {given}",
                                           "type": "invalid_request_error",
                                           "code": "invalid_api_key"}}, status_code=401)
        return await call_next(request)

    @app.exception_handler(HTTPException)
    def as_error(_request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"error": {"message": error.detail, "type": "invalid_request_error"}},
                            status_code=error.status_code)

    def job_or_404(job_id: str) -> dict[str, Any]:
        if job_id not in account.jobs:
            raise HTTPException(404, f"Fine-tune job {job_id} not found")
        return account.jobs[job_id]

    # files --------------------------------------------------------------------------------
    @app.post("/v1/files")
    async def start_upload(request: Request) -> Response:
        form = await request.form()
        for found in account.files.values():
            if found["checksum"] == form["checksum"]:
                return JSONResponse({"file_id": found["id"], "message": "file exists"},
                                    status_code=409)
        file_id = f"file-{len(account.files) + 1:04d}"
        account.files[file_id] = {
            "id": file_id, "object": "file", "bytes": 0, "created_at": int(time.time()),
            "filename": form["file_name"], "FileType": form["file_type"],
            "purpose": form["purpose"], "processing_status": "PENDING",
            "checksum": form["checksum"]}
        where = str(request.base_url).rstrip("/") + f"/upload/{file_id}"
        return Response(status_code=302, headers={"Location": where,
                                                  "X-Together-File-Id": file_id})

    @app.put("/upload/{file_id}")
    async def put_bytes(file_id: str, request: Request) -> Response:
        account.uploads[file_id] = await request.body()
        return Response(status_code=200)

    def file_json(file_id: str) -> dict[str, Any]:
        if file_id not in account.files:
            raise HTTPException(404, f"File {file_id} not found")
        return {key: value for key, value in account.files[file_id].items()
                if key != "checksum"}

    @app.post("/v1/files/{file_id}/preprocess")
    def preprocess(file_id: str) -> dict[str, Any]:
        found = account.files.get(file_id)
        if found is None or file_id not in account.uploads:
            raise HTTPException(404, f"File {file_id} was never uploaded")
        found.update(bytes=len(account.uploads[file_id]), processing_status="COMPLETED")
        return file_json(file_id)

    @app.get("/v1/files/{file_id}")
    def get_file(file_id: str) -> dict[str, Any]:
        return file_json(file_id)

    # fine-tunes ---------------------------------------------------------------------------
    @app.get("/v1/fine-tunes/models/limits")
    def limits(model_name: str) -> dict[str, Any]:
        return {"model_name": model_name, "default_gradient_accumulation_steps": 1,
                "lora_training": {"default_rank": 64, "max_batch_size": 96,
                                  "max_batch_size_dpo": 48, "max_rank": 64, "min_batch_size": 8,
                                  "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
                "full_training": {"max_batch_size": 96, "max_batch_size_dpo": 48,
                                  "min_batch_size": 8},
                "max_learning_rate": 1.0, "min_learning_rate": 1e-8, "max_num_checkpoints": 10,
                "max_num_epochs": 20, "max_num_evals": 10, "max_seq_length_dpo": 8192,
                "max_seq_length_sft": 8192, "merge_output_lora": True, "min_max_seq_length": 64,
                "supports_full_training": True}

    @app.post("/v1/fine-tunes/estimate-price")
    async def estimate(request: Request) -> dict[str, Any]:
        body = await request.json()
        found = account.files.get(body["training_file"])
        if found is None:
            return {"estimation_available": False, "unavailable_reason": "train_file_invalid"}
        tokens = found["bytes"] // 4 * int(body.get("n_epochs") or 1)
        price = tokens * account.price_per_token
        return {"estimation_available": True, "allowed_to_proceed": price <= account.user_limit,
                "estimated_total_price": price, "estimated_train_token_count": tokens,
                "estimated_eval_token_count": 0, "user_limit": account.user_limit}

    @app.post("/v1/fine-tunes")
    async def create(request: Request) -> dict[str, Any]:
        body = await request.json()
        if body["training_file"] not in account.files:
            raise HTTPException(400, f"training_file {body['training_file']} does not exist")
        account.created.append(body)
        job_id = f"ft-{len(account.jobs) + 1:04d}-5e1f"
        now = time.time()
        suffix = body.get("suffix")
        account.jobs[job_id] = {
            "id": job_id, "status": "pending", "created_at": _iso(now),
            "updated_at": _iso(now), "model": body["model"], "user_id": "user-acme",
            "training_file": body["training_file"],
            "validation_file": body.get("validation_file") or "",
            "model_output_name": f"acme/{body['model'].split('/')[-1]}-{suffix or 'tuned'}"
                                 f"-{job_id[3:7]}",
            "n_epochs": body["n_epochs"], "learning_rate": body["learning_rate"],
            "batch_size": body.get("batch_size"), "training_type": body.get("training_type"),
            "training_method": body.get("training_method"), "token_count": None,
            "suffix": suffix}
        account.events[job_id] = [_event("job_pending", "Fine tune request created")]
        return account.jobs[job_id]

    def advance(job: dict[str, Any]) -> None:
        if job["status"] not in STEPS or job["status"] == "completed":
            return
        following = STEPS[STEPS.index(job["status"]) + 1]
        events = account.events[job["id"]]
        if following == "running":
            events.append(_event("training_start", "Training started", step=0, total_steps=4))
        elif following == "completed" and job.get("suffix") == "fail":
            job["status"] = "error"
            events.append(_event("job_error", "Training failed: the loss became NaN at step 3; "
                                              "lower the learning rate", level="error"))
            return
        elif following == "completed":
            events.append(_event("checkpoint_save", "Checkpoint saved at step 4", step=4))
            events.append(_event("job_complete", "Fine-tuning job completed"))
            job["token_count"] = 4096
        job["status"] = following
        job["updated_at"] = _iso(time.time())

    @app.get("/v1/fine-tunes")
    def list_jobs() -> dict[str, Any]:
        return {"data": list(account.jobs.values())}

    @app.get("/v1/fine-tunes/{job_id}")
    def get_job(job_id: str) -> dict[str, Any]:
        job = job_or_404(job_id)
        advance(job)
        return job

    @app.get("/v1/fine-tunes/{job_id}/events")
    def events(job_id: str) -> dict[str, Any]:
        job_or_404(job_id)
        return {"data": account.events[job_id]}

    @app.get("/v1/fine-tunes/{job_id}/metrics")
    def metrics(job_id: str) -> dict[str, Any]:
        """Two training steps while running, four once done, and with a validation file an
        evaluation at the end (its loss lower the more epochs: a sweep has a winner)."""
        job = job_or_404(job_id)
        steps = {"running": 2, "completed": 4}.get(job["status"], 0)
        rows: list[dict[str, Any]] = [
            {"timestamp": time.time_ns(), "train/global_step": step, "train/epoch": step / 4,
             "train/loss": round(2.0 - 0.3 * step, 4), "train/learning_rate": 1e-5}
            for step in range(1, steps + 1)]
        if steps == 4 and job["validation_file"]:
            rows.append({"timestamp": time.time_ns(), "eval/global_step": 4,
                         "eval/loss": round(1.5 - 0.1 * job["n_epochs"], 4)})
        return {"metrics": rows}

    @app.get("/v1/fine-tunes/{job_id}/checkpoints")
    def checkpoints(job_id: str) -> dict[str, Any]:
        job = job_or_404(job_id)
        if job["status"] != "completed":
            return {"data": []}
        return {"data": [{"checkpoint_type": "Final", "created_at": job["updated_at"],
                          "path": f"s3://together-ft/{job_id}/final", "step": 4,
                          "checkpoint": "adapter",
                          "object_name": job["model_output_name"] + "-adapter"}]}

    @app.post("/v1/fine-tunes/{job_id}/cancel")
    def cancel(job_id: str) -> dict[str, Any]:
        job = job_or_404(job_id)
        if job["status"] not in ("completed", "error", "cancelled"):
            job["status"] = "cancelled"
            account.events[job_id].append(_event("cancel_requested", "Job cancelled by user"))
        return job

    @app.get("/v1/finetune/download")
    def download(ft_id: str, checkpoint: str = "merged") -> Response:
        job = job_or_404(ft_id)
        if job["status"] != "completed" or checkpoint not in account.weights:
            raise HTTPException(400, f"Fine-tune {ft_id} has no {checkpoint} to download")
        data = pack(account.weights[checkpoint], job["model_output_name"].split("/")[-1])
        return Response(data, media_type="application/octet-stream")

    # chat ---------------------------------------------------------------------------------
    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict[str, Any]:
        body = await request.json()
        question = next((m["content"] for m in reversed(body["messages"])
                         if m["role"] == "user"), "")
        text = f"[{body['model']}] You asked: {question}"
        return {"id": "chat-" + hashlib.sha1(text.encode()).hexdigest()[:8],
                "object": "chat.completion", "created": int(time.time()),
                "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20}}

    return app
