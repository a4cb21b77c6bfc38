"""What the server promises about uploads and job creation (issue 13, items 1, 7, 9, 10, 22).

Each test runs the real app under uvicorn on a loopback port (worker off, so jobs stay
queued) and talks to it over HTTP, as a client would.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from faultproxy import serve_in_thread
from tunelab.server import ServeSettings, create_app

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
LIMIT = 1024 * 1024
BOUNDARY = "tunelab-test-boundary"


def counting(app, seen: list[int]):
    """`app`, noting the size of every request-body message it reads (what the server took
    off the socket for it)."""
    async def wrapped(scope, receive, send):  # type: ignore[no-untyped-def]
        async def counted():  # type: ignore[no-untyped-def]
            message = await receive()
            if message["type"] == "http.request":
                seen.append(len(message.get("body", b"")))
            return message
        await app(scope, counted if scope["type"] == "http" else receive, send)
    return wrapped


@pytest.fixture
def body_seen() -> list[int]:
    return []


@pytest.fixture
def server(tunelab_home: Path, body_seen: list[int]) -> Iterator[str]:
    settings = ServeSettings(run_worker=False, max_upload_bytes=LIMIT)
    with serve_in_thread(counting(create_app(settings), body_seen)) as port:
        yield f"http://127.0.0.1:{port}"


def multipart_stream(size: int, *, purpose: str = "fine-tune",
                     sent: list[int] | None = None) -> Iterator[bytes]:
    """A multipart body with a `size`-byte file, generated as it is sent (so chunked)."""
    yield (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n"
           f"{purpose}\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
           "filename=\"big.jsonl\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    line = b'{"messages": []}\n' * 4096
    left = size
    while left > 0:
        chunk = line[:left]
        left -= len(chunk)
        if sent is not None:
            sent.append(len(chunk))
        yield chunk
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def post_chunked(server: str, body: Iterator[bytes]) -> httpx.Response:
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    return httpx.post(server + "/v1/files", content=body, headers=headers, timeout=60)


def test_a_chunked_upload_over_the_limit_stops_at_the_limit(
        server: str, body_seen: list[int], tunelab_home: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))  # where a spooled body would go
    response = post_chunked(server, multipart_stream(16 * LIMIT))
    assert "content-length" not in response.request.headers
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "file_too_large" and error["param"] == "file"
    # The server stopped reading at the limit (plus one network chunk), not at the end.
    assert sum(body_seen) < 2 * LIMIT
    assert list((tunelab_home / "server" / "files").iterdir()) == []
    assert list(spool.iterdir()) == []
    assert httpx.get(server + "/v1/files").json()["data"] == []


def test_a_chunked_upload_under_the_limit_is_stored(server: str, tunelab_home: Path) -> None:
    sent: list[int] = []
    response = post_chunked(server, multipart_stream(LIMIT, sent=sent))
    assert response.status_code == 200, response.text
    uploaded = response.json()
    assert uploaded["bytes"] == sum(sent) == LIMIT and uploaded["purpose"] == "fine-tune"
    stored = tunelab_home / "server" / "files" / f"{uploaded['id']}.jsonl"
    assert stored.stat().st_size == LIMIT
    assert [p.name for p in stored.parent.iterdir()] == [stored.name]


def test_an_upload_with_a_bad_purpose_leaves_nothing(server: str, tunelab_home: Path) -> None:
    response = post_chunked(server, multipart_stream(1000, purpose="mystery"))
    assert response.status_code == 400 and response.json()["error"]["param"] == "purpose"
    assert list((tunelab_home / "server" / "files").iterdir()) == []
