"""A local stand-in for Fireworks AI's REST API, for tests/test_fireworks.py.

Served by uvicorn (faultproxy.serve_in_thread) and spoken to through the real `fireworks-ai`
SDK with its base URL pointed here. The shapes are Fireworks' documented ones
(docs.fireworks.ai/api-reference, and the SDK's types):

- POST /v1/accounts/A/datasets {"datasetId", "dataset": {...}} creates a dataset in state
  UPLOADING (409 ALREADY_EXISTS when the id is taken); POST .../datasets/ID:upload
  (multipart `file`) stores the bytes and makes it READY; GET .../datasets/ID reads it;
- POST .../supervisedFineTuningJobs?supervisedFineTuningJobId=ID and .../dpoJobs?dpoJobId=ID
  create jobs named accounts/A/<collection>/ID; a job advances one state per read
  (JOB_STATE_CREATING, JOB_STATE_RUNNING, JOB_STATE_COMPLETED), or fails on a dataset holding
  the word FAIL; POST .../ID:cancel cancels; GET lists ({"supervisedFineTuningJobs" | "dpoJobs",
  "nextPageToken"});
- GET .../models/M:getDownloadEndpoint answers {"filenameToSignedUrls"} pointing at
  /signed/..., which serves the adapter files `adapter` holds (a real PEFT folder), without
  the key, as a signed URL does;
- POST /v1/chat/completions answers for a trained model.

`created` counts datasets, uploads and jobs, so retry tests prove nothing was made twice.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile

ACCOUNT = "acme-ai"
PROGRESS = ("JOB_STATE_RUNNING", "JOB_STATE_COMPLETED")
ENDED = {"JOB_STATE_COMPLETED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"}
COLLECTIONS = {"supervisedFineTuningJobs": "supervisedFineTuningJobId", "dpoJobs": "dpoJobId"}


@dataclass
class Account:
    key: str
    adapter: Path | None = None  # the folder getDownloadEndpoint serves
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    contents: dict[str, bytes] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # by short id
    bodies: list[dict[str, Any]] = field(default_factory=list)  # job creates, as received
    created: Counter = field(default_factory=Counter)
    reads: Counter = field(default_factory=Counter)
    downloads: Counter = field(default_factory=Counter)


def _when(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(status: int, code: str, message: str) -> HTTPException:
    return HTTPException(status, {"code": code, "message": message})


def create_app(account: Account) -> FastAPI:
    app = FastAPI()
    clock = itertools.count(1_800_000_000, 60)
    root = f"/v1/accounts/{ACCOUNT}"

    @app.middleware("http")
    async def key_required(request: Request, call_next: Any) -> Any:
        if not request.url.path.startswith("/signed/") and \
                request.headers.get("authorization") != f"Bearer {account.key}":
            return JSONResponse({"error": {"code": 401, "status": "UNAUTHENTICATED",
                                           "message": "invalid API key"}}, status_code=401)
        return await call_next(request)

    @app.exception_handler(HTTPException)
    def as_gateway_error(_request: Request, error: HTTPException) -> JSONResponse:
        detail = error.detail if isinstance(error.detail, dict) else {"code": "UNKNOWN",
                                                                      "message": error.detail}
        return JSONResponse({"error": {"code": error.status_code, "status": detail["code"],
                                       "message": detail["message"]}},
                            status_code=error.status_code)

    def dataset_or_404(dataset_id: str) -> dict[str, Any]:
        if dataset_id not in account.datasets:
            raise _error(404, "NOT_FOUND", f"dataset {dataset_id} not found")
        return account.datasets[dataset_id]

    @app.post(f"{root}/datasets")
    async def create_dataset(request: Request) -> dict[str, Any]:
        body = await request.json()
        dataset_id = body["datasetId"]
        if dataset_id in account.datasets:
            raise _error(409, "ALREADY_EXISTS", f"dataset {dataset_id} already exists")
        account.created["datasets"] += 1
        account.datasets[dataset_id] = {
            **body["dataset"], "name": f"accounts/{ACCOUNT}/datasets/{dataset_id}",
            "state": "UPLOADING", "createTime": _when(next(clock)), "format": "CHAT"}
        return account.datasets[dataset_id]

    @app.get(f"{root}/datasets/{{dataset_id}}")
    def get_dataset(dataset_id: str) -> dict[str, Any]:
        return dataset_or_404(dataset_id)

    @app.post(f"{root}/datasets/{{dataset_id}}:upload")
    async def upload(dataset_id: str, request: Request) -> dict[str, Any]:
        dataset = dataset_or_404(dataset_id)
        form = await request.form()
        sent = form["file"]
        assert isinstance(sent, UploadFile)
        content = await sent.read()
        account.created["uploads"] += 1
        account.contents[dataset_id] = content
        dataset["state"] = "READY"
        return {"id": dataset_id, "object": "file", "bytes": len(content),
                "created_at": next(clock), "filename": sent.filename, "purpose": "fine-tune"}

    @app.get(f"{root}/models/{{model_id}}:getDownloadEndpoint")
    def download_endpoint(model_id: str, request: Request) -> dict[str, Any]:
        job = account.jobs.get(model_id)
        if job is None or job["state"] != "JOB_STATE_COMPLETED" or account.adapter is None:
            raise _error(404, "NOT_FOUND", f"model {model_id} not found")
        base = str(request.base_url).rstrip("/")
        return {"filenameToSignedUrls": {
            path.name: f"{base}/signed/{model_id}/{path.name}?X-Goog-Signature=abc123"
            for path in sorted(account.adapter.iterdir()) if path.is_file()}}

    def job_or_404(collection: str, job_id: str) -> dict[str, Any]:
        job = account.jobs.get(job_id)
        if job is None or job["_collection"] != collection:
            raise _error(404, "NOT_FOUND", f"job accounts/{ACCOUNT}/{collection}/{job_id} "
                                           "not found")
        return job

    @app.post(f"{root}/{{collection}}")
    async def create_job(collection: str, request: Request) -> dict[str, Any]:
        if collection not in COLLECTIONS:
            raise _error(404, "NOT_FOUND", "no such collection")
        body = await request.json()
        account.bodies.append({"collection": collection, **body})
        job_id = request.query_params.get(COLLECTIONS[collection])
        if not job_id:
            raise _error(400, "INVALID_ARGUMENT", "this stand-in wants a job id")
        if job_id in account.jobs:
            raise _error(409, "ALREADY_EXISTS", f"job {job_id} already exists")
        dataset = _tail(body.get("dataset"))
        if account.datasets.get(dataset, {}).get("state") != "READY":
            raise _error(400, "FAILED_PRECONDITION", f"dataset {dataset} is not READY")
        training = body.get("trainingConfig", body)
        account.created["jobs"] += 1
        job = {**body, "name": f"accounts/{ACCOUNT}/{collection}/{job_id}",
               "state": "JOB_STATE_CREATING", "createTime": _when(next(clock)),
               "createdBy": "natasha@acme.ai", "_collection": collection}
        output = f"accounts/{ACCOUNT}/models/{job_id}"
        if collection == "dpoJobs":
            job["trainingConfig"] = {**training, "outputModel": output}
        else:
            job["outputModel"] = output
        account.jobs[job_id] = job
        return _public(job)

    @app.get(f"{root}/{{collection}}")
    def list_jobs(collection: str) -> dict[str, Any]:
        jobs = [_public(job) for job in account.jobs.values()
                if job["_collection"] == collection]
        return {collection: jobs, "nextPageToken": ""}

    @app.get(f"{root}/{{collection}}/{{job_id}}")
    def get_job(collection: str, job_id: str) -> dict[str, Any]:
        return _public(_advance(account, job_or_404(collection, job_id)))

    @app.post(f"{root}/{{collection}}/{{job_id}}:cancel")
    def cancel(collection: str, job_id: str) -> dict[str, Any]:
        job = job_or_404(collection, job_id)
        if job["state"] in ENDED:
            raise _error(400, "FAILED_PRECONDITION", f"job is {job['state']}")
        job["state"] = "JOB_STATE_CANCELLED"
        return {}

    @app.get("/signed/{model_id}/{filename}")
    def signed(model_id: str, filename: str) -> Response:
        assert account.adapter is not None
        account.downloads[filename] += 1
        return Response((account.adapter / filename).read_bytes(),
                        media_type="application/octet-stream")

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict[str, Any]:
        body = await request.json()
        done = {f"accounts/{ACCOUNT}/models/{job_id}" for job_id, job in account.jobs.items()
                if job["state"] == "JOB_STATE_COMPLETED"}
        if body["model"] not in done:
            raise _error(404, "NOT_FOUND", f"Model not found, inaccessible, and/or not deployed:"
                                           f" {body['model']}")
        text = "Darling, one small step, then the next."
        return {"id": "chatcmpl-fw", "object": "chat.completion", "created": next(clock),
                "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}

    return app


def _tail(name: str | None) -> str:
    return (name or "").rsplit("/", 1)[-1]


def _advance(account: Account, job: dict[str, Any]) -> dict[str, Any]:
    """One state further per read, until the job ends."""
    if job["state"] in ENDED:
        return job
    job_id = _tail(job["name"])
    step = account.reads[job_id]
    account.reads[job_id] += 1
    state = PROGRESS[min(step, len(PROGRESS) - 1)]
    if state == "JOB_STATE_RUNNING" and b"FAIL" in account.contents[_tail(job["dataset"])]:
        job.update(state="JOB_STATE_FAILED", completedTime=_when(1_800_009_000),
                   status={"code": "INVALID_ARGUMENT",
                           "message": "dataset line 4: the last message must be from the "
                                      "assistant"})
        return job
    job["state"] = state
    job["jobProgress"] = {"percent": 50 if state == "JOB_STATE_RUNNING" else 100, "epoch": 1}
    if state == "JOB_STATE_COMPLETED":
        job.update(completedTime=_when(1_800_009_000), status={"code": "OK", "message": ""})
    return job


def _public(job: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in job.items() if not key.startswith("_")}
