"""Loopback network plumbing for the provider and server tests.

`FaultProxy`: a small asyncio HTTP proxy that gives every request its own verdict: forward it,
answer 429 (with Retry-After) or 500 itself, reset the connection, or forward it and then drop
the answer (the ambiguous failure: the server acted, the client never hears). It closes each
connection after one response, so a kept-alive connection cannot carry a request past it.

`serve_in_thread`: run an ASGI app under uvicorn on a free loopback port.
`serve_process`: run the real `tunelab serve` command in a subprocess.
`dialogues`: a tiny valid training file for the provider and server tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

FAULTS = ("ok", "429", "500", "reset", "drop_answer")


@dataclass
class FaultPlan:
    """Share of requests for each fault; the rest are forwarded intact. Seeded, so repeatable."""

    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_reset: float = 0.0
    rate_drop_answer: float = 0.0
    seed: int = 0
    only_paths: tuple[str, ...] = ()  # empty: any path may be hit
    # "METHOD /path" -> verdicts for its next requests, before the random ones apply
    script: dict[str, list[str]] = field(default_factory=dict)
    log: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def verdict(self, method: str, path: str) -> str:
        queued = self.script.get(f"{method} {path.split('?')[0]}")
        if queued:
            return queued.pop(0)
        roll = self._random.random()
        if self.only_paths and not any(part in path for part in self.only_paths):
            return "ok"
        for name, rate in (("429", self.rate_429), ("500", self.rate_500),
                           ("reset", self.rate_reset), ("drop_answer", self.rate_drop_answer)):
            if roll < rate:
                return name
            roll -= rate
        return "ok"


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
        if name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
            raise ValueError("chunked request bodies are not supported by this proxy")
    body = await reader.readexactly(length) if length else b""
    return _force_close(head) + body


def _force_close(head: bytes) -> bytes:
    lines = [line for line in head.split(b"\r\n") if line and
             not line.lower().startswith(b"connection:")]
    return b"\r\n".join(lines + [b"Connection: close"]) + b"\r\n\r\n"


def _canned(status: str) -> bytes:
    reason = {"429": "Too Many Requests", "500": "Internal Server Error"}[status]
    body = (b'{"error": {"message": "injected fault", "type": "server_error", '
            b'"param": null, "code": "injected_' + status.encode() + b'"}}')
    extra = b"Retry-After: 0.2\r\n" if status == "429" else b""
    return (f"HTTP/1.1 {status} {reason}\r\n".encode() + extra +
            b"Content-Type: application/json\r\nConnection: close\r\n" +
            f"Content-Length: {len(body)}\r\n\r\n".encode() + body)


class FaultProxy:
    def __init__(self, upstream_port: int, plan: FaultPlan) -> None:
        self.upstream_port, self.plan = upstream_port, plan
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await _read_request(reader)
            method, path = request.decode("latin-1").split(" ", 2)[:2]
            verdict = self.plan.verdict(method, path)
            self.plan.log[verdict] += 1
            self.plan.log[f"{method} {path.split('?')[0]}"] += 1
            if verdict in ("429", "500"):
                writer.write(_canned(verdict))
            elif verdict == "reset":
                writer.transport.abort()
                return
            else:
                answer = await self._forward(request)
                if verdict == "drop_answer":
                    writer.transport.abort()
                    return
                writer.write(answer)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _forward(self, request: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        writer.write(request)
        await writer.drain()
        answer = await reader.read()  # upstream closes: we asked for Connection: close
        writer.close()
        return answer


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.contextmanager
def serve_in_thread(app: object) -> Iterator[int]:
    """Run `app` under uvicorn on a free loopback port; yields the port."""
    import uvicorn

    sock = free_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        threading.Event().wait(0.02)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(180)  # the worker stops its job at a checkpoint first
        sock.close()


@contextlib.contextmanager
def serve_process(args: list[str], *, base_url: str, env: dict[str, str],
                  log: Path) -> Iterator[subprocess.Popen]:
    """`tunelab serve ARGS` in a subprocess logging to `log`; yields once base_url/health
    answers, and stops it with Ctrl-C (SIGINT) afterwards, as a user would."""
    import httpx

    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "tunelab", "serve", *args], env=env,
                                   stdout=sink, stderr=sink)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(base_url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("tunelab serve did not start: "
                                     + log.read_text(errors="replace"))
            time.sleep(0.2)
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def dialogues(path: Path, count: int = 12) -> Path:
    """`count` short coaching dialogues as OpenAI chat JSONL, one per line."""
    lines = [json.dumps({"messages": [
        {"role": "system", "content": "You are Natasha, a warm and provocative coach."},
        {"role": "user", "content": f"How do I start project number {number}?"},
        {"role": "assistant", "content": f"Begin with one small step on project {number}."}]})
        for number in range(count)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
