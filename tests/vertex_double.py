"""A loopback stand-in for Vertex AI's tuningJobs and generateContent.

It only records what it was sent and answers with the documented REST shapes
(aiplatform v1beta1 TuningJob, GenerateContentResponse, google.rpc.Status errors). A
tuning job moves on only when a test queues its next state with `advance` (or
`lifecycle`), as the real service would between two polls. No tunelab code is imported here.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_JOBS = re.compile(r"^/v1beta1/(projects/[^/]+/locations/[^/]+)/tuningJobs$")
_JOB = re.compile(r"^/v1beta1/(projects/[^/]+/locations/[^/]+/tuningJobs/[^/:]+)$")
_CANCEL = re.compile(r"^/v1beta1/(projects/[^/]+/locations/[^/]+/tuningJobs/[^/:]+):cancel$")
_GENERATE = re.compile(r"^/v1beta1/(.+):generateContent$")
_ENDED = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}


@dataclass
class Sent:
    method: str
    path: str
    body: Any
    authorization: str | None


def _timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())


class VertexDouble:
    """Start with `with VertexDouble() as double:`; point the SDK at `double.url`."""

    def __init__(self, reply_text: str = "Привет! Я Наташа.") -> None:
        self.sent: list[Sent] = []
        self.jobs: dict[str, dict[str, Any]] = {}
        self.pending: dict[str, list[dict[str, Any]]] = {}
        self.lifecycle: list[dict[str, Any]] = []  # queued on every job created from now on
        self.reply_text = reply_text
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def __enter__(self) -> VertexDouble:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # what a test sets up or reads ----------------------------------------------------------
    def advance(self, name: str, *updates: dict[str, Any]) -> None:
        """Queue changes to a job: each later GET of it applies the next one. Jobs created
        after `lifecycle` is set start with its updates queued."""
        self.pending.setdefault(name, []).extend(updates)

    def bodies(self, method: str, suffix: str) -> list[Any]:
        return [s.body for s in self.sent if s.method == method and s.path.endswith(suffix)]

    # answers -------------------------------------------------------------------------------
    def answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        path = path.split("?", 1)[0]
        with self._lock:
            if method == "POST" and (match := _JOBS.match(path)):
                return 200, self._create(match[1], body)
            if method == "GET" and (match := _JOBS.match(path)):
                return 200, {"tuningJobs": list(reversed(self.jobs.values()))}
            if method == "GET" and (match := _JOB.match(path)) and match[1] in self.jobs:
                return 200, self._poll(match[1])
            if method == "POST" and (match := _CANCEL.match(path)) and match[1] in self.jobs:
                return self._cancel(self.jobs[match[1]])
            if method == "POST" and (match := _GENERATE.match(path)):
                return 200, self._generated(match[1])
        return 404, {"error": {"code": 404, "message": f"{path} not found",
                               "status": "NOT_FOUND"}}

    def _create(self, parent: str, body: dict[str, Any]) -> dict[str, Any]:
        name = f"{parent}/tuningJobs/{4000 + len(self.jobs) + 1}"
        now = _timestamp()
        job = {"name": name, "state": "JOB_STATE_PENDING", "createTime": now,
               "updateTime": now, **body}
        self.jobs[name] = job
        self.pending[name] = [dict(update) for update in self.lifecycle]
        return job

    def _cancel(self, job: dict[str, Any]) -> tuple[int, Any]:
        if job["state"] in _ENDED:
            return 400, {"error": {"code": 400, "status": "FAILED_PRECONDITION",
                                   "message": f"Cannot cancel a job in state {job['state']}."}}
        job.update(state="JOB_STATE_CANCELLING", updateTime=_timestamp())
        return 200, {}

    def _poll(self, name: str) -> dict[str, Any]:
        queue = self.pending.get(name)
        if queue:
            self.jobs[name].update(queue.pop(0), updateTime=_timestamp())
        return self.jobs[name]

    def _generated(self, model: str) -> dict[str, Any]:
        return {
            "candidates": [{"content": {"role": "model", "parts": [{"text": self.reply_text}]},
                            "finishReason": "STOP", "avgLogprobs": -0.1}],
            "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 7,
                              "totalTokenCount": 19},
            "modelVersion": model,
            "createTime": _timestamp(),
            "responseId": f"response-{len(self.sent)}",
        }

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body: Any = raw.decode("utf-8", "replace")
                if "json" in (self.headers.get("Content-Type") or "") and raw:
                    body = json.loads(raw)
                double.sent.append(Sent(self.command, self.path, body,
                                        self.headers.get("Authorization")))
                status, answer = double.answer(self.command, self.path, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _serve

            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

        return Handler
