"""Server-sent events: a job's curves, events and status live, and the jobs list's statuses.

A job's stream sends each message with `id: STEP:SEQ`, the last metric step and event seq
sent. A browser that reconnects sends that back as Last-Event-ID and the stream carries on
from there: nothing missed, no full reload. The last step is sent again on each read (a
validation loss lands on a step after its training loss), and the page merges by step.

A stream ends on its own after MAX_S (the browser reconnects at once, resuming as above), so
a stream never holds up a server that is stopping; and when the job is finished.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from tunelab.registry import Registry
from tunelab.registry.metrics import finite
from tunelab.server.dashboard import views

POLL_S = 0.5
MAX_S = 60.0
RETRY_MS = 1000
CURSOR_MAX = 2**63 - 1  # what the registry (SQLite INTEGER) holds


@dataclass
class Cursor:
    step: int = 0
    seq: int = 0

    @classmethod
    def parse(cls, value: str | None) -> Cursor:
        """"STEP:SEQ" as sent in an id; anything else (a number past what the registry
        holds included: no stream ever sent it) starts from the beginning."""
        step, _, seq = (value or "").partition(":")
        try:
            cursor = cls(max(int(step), 0), max(int(seq), 0))
        except ValueError:  # not numbers, or over Python's 4,300 digits
            return cls()
        return cursor if max(cursor.step, cursor.seq) <= CURSOR_MAX else cls()

    def __str__(self) -> str:
        return f"{self.step}:{self.seq}"


def message(event: str, data: Any, cursor: Cursor | None = None) -> str:
    head = f"id: {cursor}\n" if cursor is not None else ""
    # Strict JSON: a browser's JSON.parse throws on NaN (a row from before the registry
    # refused non-finite numbers).
    body = json.dumps(finite(data), ensure_ascii=False, allow_nan=False)
    return f"{head}event: {event}\ndata: {body}\n\n"


@dataclass
class Sent:
    """What this connection has sent: the last step's values and the job's status."""

    last_point: dict[str, Any] | None = None
    status: str | None = None


def job_updates(registry: Registry, job_id: str, cursor: Cursor,
                sent: Sent) -> tuple[list[str], Cursor, bool]:
    """The messages past `cursor`, the new cursor, and whether the job is finished."""
    job = registry.get_job(job_id)
    # From the cursor's step on: the last step seen is read again, it may have grown.
    rows = views.curve_points(registry.list_metrics(job_id, after_step=cursor.step - 1))
    fresh = rows[1:] if rows and rows[0] == sent.last_point else rows
    events = [views.event_dict(event) for event in registry.list_events(job_id, cursor.seq)]
    new = Cursor(rows[-1]["step"] if rows else cursor.step,
                 events[-1]["seq"] if events else cursor.seq)
    out = []
    if fresh:
        out.append(message("metrics", fresh, new))
    if events:
        out.append(message("events", events, new))
    if fresh or events or job.status != sent.status:
        every = [views.event_dict(event) for event in registry.list_events(job_id)]
        out.append(message("progress", views.progress(rows, views.total_steps(every, job),
                                                      job.status), new))
        out.append(message("status", {"id": job.id, "status": job.status}, new))
    sent.last_point = rows[-1] if rows else sent.last_point
    sent.status = job.status
    return out, new, job.is_terminal


async def job_stream(request: Request, registry: Registry, job_id: str,
                     cursor: Cursor) -> AsyncIterator[str]:
    yield f"retry: {RETRY_MS}\n\n"
    started, sent = time.monotonic(), Sent()
    while time.monotonic() - started < MAX_S:
        out, cursor, finished = await run_in_threadpool(job_updates, registry, job_id,
                                                        cursor, sent)
        for text in out:
            yield text
        if finished:
            yield message("end", {"id": job_id}, cursor)
            return
        if await request.is_disconnected():
            return
        await asyncio.sleep(POLL_S)


def jobs_updates(registry: Registry, known: dict[str, str] | None,
                 filters: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The statuses that changed since `known` (all of them on the first read, None), and
    the rows of jobs made since then that pass the page's filters, newest first."""
    jobs = registry.list_jobs(None, views.JOB_LIMIT)
    seen = known or {}
    changed = [{"id": job.id, "status": job.status} for job in jobs
               if seen.get(job.id) != job.status]
    out = [message("statuses", changed)] if changed else []
    if known is not None and any(job.id not in known for job in jobs):
        rows, _ = views.job_rows(registry, **filters)
        added = [row for row in rows if row["id"] not in known]
        if added:
            out.append(message("added", added))
    return out, {job.id: job.status for job in jobs}


async def jobs_stream(request: Request, registry: Registry,
                      filters: dict[str, str]) -> AsyncIterator[str]:
    """Each job's status when it changes (all of them at first), and each new job's row
    (`filters` are the page's: provider, status, origin) so the page can insert it."""
    yield f"retry: {RETRY_MS}\n\n"
    started, known = time.monotonic(), None
    while time.monotonic() - started < MAX_S:
        out, known = await run_in_threadpool(jobs_updates, registry, known, filters)
        for text in out:
            yield text
        if await request.is_disconnected():
            return
        await asyncio.sleep(POLL_S * 2)
