"""A local stand-in for an Azure OpenAI resource's v1 API (/openai/v1/...), for test_azure.py.

Served by uvicorn (faultproxy.serve_in_thread) and spoken to through the real openai SDK, as
Azure's docs do: `OpenAI(api_key=..., base_url="https://RESOURCE.openai.azure.com/openai/v1/")`
(the key as a bearer token). It keeps Azure's differences from OpenAI:

- a job body may carry `trainingType` (Standard, GlobalStandard, developerTier), refused
  otherwise; a suffix over 18 characters or with a dot is a 400;
- fine-tuned models are named `BASE.ft-JOBHEX`, checkpoints `BASE.ft-JOBHEX:ckpt-step-N`;
- uploads are kept byte for byte, so a test sees the UTF-8 byte-order mark the docs ask for;
- the control plane's deployment PUT (.../deployments/NAME?api-version=2024-10-01), with its
  own Azure AD token, not the key.

A job advances one status per read (validating_files, running, succeeded); a training file
holding the word FAIL makes it fail with an error, as a bad file does. `created` counts what
was made (files and jobs): the retry tests prove nothing was made twice.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

ROOT = "/openai/v1"
TRAINING_TYPES = {"Standard", "GlobalStandard", "developerTier"}
PROGRESS = ("running", "succeeded")


@dataclass
class Resource:
    key: str
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    contents: dict[str, bytes] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    bodies: list[dict[str, Any]] = field(default_factory=list)  # job creates, as received
    created: Counter = field(default_factory=Counter)
    reads: Counter = field(default_factory=Counter)  # per job: how far it has advanced
    chats: list[dict[str, Any]] = field(default_factory=list)
    # the control plane (management.azure.com): its AAD token, and the deployments PUT there
    management_token: str = "aad-canary-token-5e5e5e5e"
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)


def _error(status: int, message: str, code: str | None = None) -> HTTPException:
    return HTTPException(status, {"message": message, "code": code})


def create_app(resource: Resource) -> FastAPI:
    app = FastAPI()
    clock = itertools.count(1_800_000_000)

    @app.middleware("http")
    async def key_required(request: Request, call_next: Any) -> Any:
        wanted = resource.management_token if request.url.path.startswith("/subscriptions/") \
            else resource.key
        if request.headers.get("authorization") != f"Bearer {wanted}":
            return JSONResponse({"error": {"code": "401", "message": "Access denied due to "
                                           "invalid subscription key or wrong API endpoint."}},
                                status_code=401)
        return await call_next(request)

    @app.exception_handler(HTTPException)
    def as_azure_error(_request: Request, error: HTTPException) -> JSONResponse:
        detail = error.detail if isinstance(error.detail, dict) else {"message": error.detail}
        return JSONResponse({"error": {"message": detail["message"],
                                       "code": detail.get("code"), "param": None,
                                       "type": "invalid_request_error"}},
                            status_code=error.status_code)

    def job_or_404(job_id: str) -> dict[str, Any]:
        if job_id not in resource.jobs:
            raise _error(404, f"fine-tuning job {job_id} not found", "NotFound")
        return resource.jobs[job_id]

    @app.put("/subscriptions/{subscription}/resourceGroups/{group}/providers/"
             "Microsoft.CognitiveServices/accounts/{account}/deployments/{name}")
    async def deploy(subscription: str, group: str, account: str, name: str,
                     request: Request) -> dict[str, Any]:
        if request.query_params.get("api-version") != "2024-10-01":
            raise _error(400, "unsupported api-version", "InvalidApiVersion")
        body = await request.json()
        resource.deployments[name] = {"path": (subscription, group, account), **body}
        return {"id": f"/subscriptions/{subscription}/.../deployments/{name}", "name": name,
                "sku": body["sku"], "properties": {**body["properties"],
                                                   "provisioningState": "Creating"}}

    @app.post(f"{ROOT}/files")
    async def upload(request: Request) -> dict[str, Any]:
        form = await request.form()
        sent = form["file"]
        assert isinstance(sent, UploadFile)
        content = await sent.read()
        file_id = f"file-{uuid.uuid4().hex}"
        resource.created["files"] += 1
        resource.contents[file_id] = content
        resource.files[file_id] = {"object": "file", "id": file_id, "bytes": len(content),
                                   "created_at": next(clock), "filename": sent.filename,
                                   "purpose": form.get("purpose"), "status": "processed"}
        return resource.files[file_id]

    @app.get(f"{ROOT}/files")
    def list_files(purpose: str | None = None) -> dict[str, Any]:
        data = [info for info in reversed(resource.files.values())
                if purpose is None or info["purpose"] == purpose]
        return {"object": "list", "data": data, "has_more": False}

    @app.get(f"{ROOT}/files/{{file_id}}")
    def file_info(file_id: str) -> dict[str, Any]:
        if file_id not in resource.files:
            raise _error(404, "file not found", "NotFound")
        return resource.files[file_id]

    @app.post(f"{ROOT}/fine_tuning/jobs")
    async def create_job(request: Request) -> dict[str, Any]:
        body = await request.json()
        resource.bodies.append(body)
        suffix = body.get("suffix") or ""
        if len(suffix) > 18 or "." in suffix:
            raise _error(400, "suffix must be at most 18 characters and contain no '.'",
                         "invalidPayload")
        if "trainingType" in body and body["trainingType"] not in TRAINING_TYPES:
            raise _error(400, f"unknown trainingType {body['trainingType']}", "invalidPayload")
        if body["training_file"] not in resource.files:
            raise _error(400, "training_file not found", "invalidPayload")
        hexid = uuid.uuid4().hex
        job_id = f"ftjob-{hexid}"
        resource.created["jobs"] += 1
        method = body.get("method") or {"type": "supervised", "supervised": {}}
        resource.jobs[job_id] = {
            "object": "fine_tuning.job", "id": job_id, "created_at": next(clock),
            "finished_at": None, "model": body["model"], "fine_tuned_model": None,
            "organization_id": "", "result_files": [], "status": "validating_files",
            "training_file": body["training_file"],
            "validation_file": body.get("validation_file"),
            "hyperparameters": (method.get(method["type"]) or {}).get("hyperparameters", {}),
            "method": method, "trained_tokens": None, "seed": body.get("seed") or 42,
            "suffix": suffix or None, "error": None, "metadata": body.get("metadata"),
            "estimated_finish": None, "integrations": [],
            "trainingType": body.get("trainingType"), "_hex": hexid}
        return _public(resource.jobs[job_id])

    @app.get(f"{ROOT}/fine_tuning/jobs")
    def list_jobs(limit: int = 20, after: str | None = None) -> dict[str, Any]:
        jobs = sorted(resource.jobs.values(), key=lambda job: -job["created_at"])
        return {"object": "list", "data": [_public(job) for job in jobs[:limit]],
                "has_more": False}

    @app.get(f"{ROOT}/fine_tuning/jobs/{{job_id}}")
    def get_job(job_id: str) -> dict[str, Any]:
        return _public(_advance(resource, job_or_404(job_id)))

    @app.post(f"{ROOT}/fine_tuning/jobs/{{job_id}}/cancel")
    def cancel(job_id: str) -> dict[str, Any]:
        job = job_or_404(job_id)
        if job["status"] in ("succeeded", "failed", "cancelled"):
            raise _error(400, f"job is {job['status']}", "invalidPayload")
        job["status"] = "cancelled"
        return _public(job)

    @app.get(f"{ROOT}/fine_tuning/jobs/{{job_id}}/events")
    def events(job_id: str, limit: int = 20, after: str | None = None) -> dict[str, Any]:
        job = job_or_404(job_id)
        found = [{"object": "fine_tuning.job.event", "id": f"ftevent-{job['_hex']}-0",
                  "created_at": job["created_at"], "level": "info", "type": "message",
                  "message": "Job enqueued. Waiting for jobs ahead to complete."}]
        if job["status"] in ("running", "succeeded"):
            found.append({"object": "fine_tuning.job.event", "id": f"ftevent-{job['_hex']}-1",
                          "created_at": job["created_at"] + 1, "level": "info",
                          "type": "metrics", "message": "Step 1: training loss=1.25",
                          "data": {"step": 1, "train_loss": 1.25,
                                   "train_mean_token_accuracy": 0.5}})
        if job["status"] in ("succeeded", "failed", "cancelled"):
            found.append({"object": "fine_tuning.job.event", "id": f"ftevent-{job['_hex']}-2",
                          "created_at": job["created_at"] + 2, "level": "info",
                          "type": "message", "message": f"Job {job['status']}."})
        return {"object": "list", "data": list(reversed(found)), "has_more": False}

    @app.get(f"{ROOT}/fine_tuning/jobs/{{job_id}}/checkpoints")
    def checkpoints(job_id: str) -> dict[str, Any]:
        job = job_or_404(job_id)
        data = [] if job["status"] != "succeeded" else [
            {"object": "fine_tuning.job.checkpoint", "id": f"ftchkpt-{job['_hex']}-{step}",
             "created_at": job["created_at"] + step, "fine_tuning_job_id": job_id,
             "step_number": step,
             "fine_tuned_model_checkpoint": f"{job['fine_tuned_model']}:ckpt-step-{step}",
             "metrics": {"step": step, "train_loss": 1.0 / step}} for step in (2, 1)]
        return {"object": "list", "data": data, "has_more": False}

    @app.post(f"{ROOT}/chat/completions")
    async def chat(request: Request) -> dict[str, Any]:
        body = await request.json()
        tuned = {job["fine_tuned_model"] for job in resource.jobs.values()}
        if body["model"] not in tuned:  # Azure answers through a deployment of that name
            raise _error(404, f"The API deployment {body['model']} does not exist",
                         "DeploymentNotFound")
        resource.chats.append(body)
        text = "Darling, begin with one small step."
        return {"id": f"chatcmpl-{len(resource.chats)}", "object": "chat.completion",
                "created": int(time.time()), "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15}}

    return app


def _advance(resource: Resource, job: dict[str, Any]) -> dict[str, Any]:
    """One status further per read, until the job ends."""
    if job["status"] in ("succeeded", "failed", "cancelled"):
        return job
    step = resource.reads[job["id"]]
    resource.reads[job["id"]] += 1
    status = PROGRESS[min(step, len(PROGRESS) - 1)]
    if status == "running" and b"FAIL" in resource.contents[job["training_file"]]:
        job.update(status="failed", finished_at=job["created_at"] + 60, error={
            "code": "invalid_training_file", "param": "training_file",
            "message": "The job failed due to an invalid training file: line 13 has no "
                       "assistant message."})
        return job
    job["status"] = status
    if status == "succeeded":
        job.update(finished_at=job["created_at"] + 600, trained_tokens=4321,
                   fine_tuned_model=f"{job['model']}.ft-{job['_hex']}")
    return job


def _public(job: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in job.items() if not key.startswith("_")}


def preference_rows(count: int) -> str:
    """OpenAI's DPO rows (Azure takes them as they are)."""
    return "".join(json.dumps({
        "input": {"messages": [{"role": "user", "content": f"How do I start project {n}?"}]},
        "preferred_output": [{"role": "assistant", "content": f"One small step on {n}."}],
        "non_preferred_output": [{"role": "assistant", "content": "Wait for inspiration."}]})
        + "\n" for n in range(count))
