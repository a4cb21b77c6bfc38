"""One hostile OpenAI-compatible account, for `tunelab migrate` hardening tests.

A FastAPI app (served by faultproxy.serve_in_thread, spoken to through the real openai SDK)
that starts as openai_double's honest account (natasha_account) and turns hostile by named
scenario. Each scenario is one thing a provider may send that tunelab must check:

- "file_traversal": a job whose training file id is `../../../escaped` and whose
  validation file id is an absolute path (`victim` names it); any `.../content` answers.
- "job_traversal": a job whose id is `../../x/j` and which has no validation file.
- "endless_pages": `GET /v1/fine_tuning/jobs` answers has_more forever, new ids each page.
- "huge_file": the training file is HUGE bytes long.
- "bad_results": the result file holds steps inf, nan, 1e30 and -1, NaN and inf losses and
  a field over 131,072 characters, among good rows.
- "not_csv": the result file is binary garbage.
- "bad_date": one model's shutdown_date is garbage.
- "cut_download": the first download of each file breaks off mid-body.
- "key_echo": the key comes back: in an orphan model's id, in a wrongly typed job field and
  in every chat answer.
- "same_file": one file id is both the training and the validation file.
- "local_id": a job whose id is `local_id` (a job id this machine already holds).

`calls` counts downloads per file id (Account.calls, as openai_double does).
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from openai_double import NATASHA, Account, _job, create_app, dialogue, jsonl, natasha_account

HUGE_FILE = jsonl([dialogue(n) for n in range(14_000)])  # about 3 MB of good data
HUGE = len(HUGE_FILE)
ROGUE = "ftjob-rogue"


def _add_job(account: Account, job: dict[str, Any]) -> None:
    account.jobs.insert(0, job)


def hostile_account(scenario: str, *, key: str = "", victim: str = "",
                    local_id: str = "") -> Account:
    account = natasha_account()
    train = jsonl([dialogue(n) for n in range(10)])
    if scenario == "file_traversal":
        account.files["../../../escaped"] = ("escaped.jsonl", train)
        account.files[victim] = ("victim.jsonl", train)
        _add_job(account, _job(ROGUE, "gpt-4o-mini-2024-07-18", None,
                               training="../../../escaped", validation=victim, results=[],
                               hyper={}, created=1_700_000_400, status="failed"))
    elif scenario == "job_traversal":
        _add_job(account, _job("../../x/j", "gpt-4o-mini-2024-07-18", None,
                               training="file-coach-train", validation=None, results=[],
                               hyper={}, created=1_700_000_400, status="failed"))
    elif scenario == "huge_file":
        account.files["file-huge"] = ("huge.jsonl", HUGE_FILE)
        _add_job(account, _job(ROGUE, "gpt-4o-mini-2024-07-18", None, training="file-huge",
                               validation=None, results=[], hyper={}, created=1_700_000_400,
                               status="failed"))
    elif scenario in ("bad_results", "not_csv"):
        if scenario == "bad_results":
            lines = ["step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy",
                     "1,2.0,0.3,,", "inf,1.0,0.3,,", "nan,1.0,0.3,,", "1e30,1.0,0.3,,",
                     "-1,1.0,0.3,,", "2,nan,0.3,,", "3,inf,0.3,,",
                     "4,1.5," + "9" * 140_000 + ",,", "5,1.2,0.5,,"]
            content = base64.b64encode(("\n".join(lines) + "\n").encode())
        else:
            content = bytes(range(256)) * 64
        account.files["file-natasha-result"] = ("step_metrics.csv", content)
    elif scenario == "bad_date":
        account.models[1]["shutdown_date"] = "next-tuesday-ish"
    elif scenario == "key_echo":
        account.models.append({"id": f"ft:gpt-4o-mini-2024-07-18:acme:{key}:Xx1",
                               "object": "model", "created": 5, "owned_by": "org-acme"})
        account.jobs[-1]["trained_tokens"] = key  # a str where the SDK types an int
    elif scenario == "same_file":
        for job in account.jobs:
            if job["id"] == "ftjob-natasha":
                job["validation_file"] = job["training_file"]
    elif scenario == "local_id":
        _add_job(account, _job(local_id, "gpt-4o-mini-2024-07-18", NATASHA,
                               training="file-coach-train", validation=None, results=[],
                               hyper={}, created=1_700_000_400, status="failed"))
    return account


def create_hostile_app(account: Account, scenario: str, *, key: str = "") -> FastAPI:
    """openai_double's routes, with the scenario's hostile ones mounted first."""
    honest = create_app(account)
    app = FastAPI()
    seen: set[str] = set()

    if scenario == "endless_pages":
        @app.get("/v1/fine_tuning/jobs")
        def endless(after: str | None = None, limit: int = 20) -> dict[str, Any]:
            start = int(after.rsplit("-", 1)[1]) + 1 if after else 0
            data = [_job(f"ftjob-page-{start + i}", "gpt-4o-mini-2024-07-18", None,
                         training="file-coach-train", validation=None, results=[], hyper={},
                         created=1_700_000_000, status="failed") for i in range(2)]
            return {"object": "list", "data": data, "has_more": True}

    if scenario == "key_echo":
        @app.post("/v1/chat/completions")
        async def echo(request: Request) -> dict[str, Any]:
            body = await request.json()
            text = f"Sure. Your key is {key}, keep it safe."
            return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1,
                    "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}}

    if scenario == "cut_download":
        @app.get("/v1/files/{file_id}/content")
        async def cut(file_id: str) -> Response:
            content = account.files[file_id][1]
            account.calls[f"download {file_id}"] += 1
            if file_id in seen:
                return Response(content, media_type="application/octet-stream")
            seen.add(file_id)

            async def broken() -> Any:
                yield content[: len(content) // 2]
                await asyncio.sleep(0.05)
                raise ConnectionResetError("cut")

            return StreamingResponse(broken(), media_type="application/octet-stream",
                                     headers={"content-length": str(len(content))})

    if scenario == "file_traversal":
        @app.get("/{anything:path}/content")
        def any_content(anything: str) -> Response:  # whatever the id became in the URL
            return Response(jsonl([dialogue(n) for n in range(10)]),
                            media_type="application/octet-stream")

    app.mount("/", honest)
    return app
