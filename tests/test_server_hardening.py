"""What the server promises about uploads and job creation (issue 13, items 1, 7, 9, 10, 22).

Each test runs the real app under uvicorn on a loopback port (worker off, so jobs stay
queued) and talks to it over HTTP, as a client would.
"""

from __future__ import annotations

import json
import socket
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from faultproxy import dialogues, serve_in_thread
from tunelab.data.stream_check import count_examples
from tunelab.errors import DataError
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


# job creation --------------------------------------------------------------------------
def upload(server: str, content: bytes, name: str = "t.jsonl") -> str:
    response = httpx.post(server + "/v1/files", files={"file": (name, content)},
                          data={"purpose": "fine-tune"})
    assert response.status_code == 200, response.text
    return response.json()["id"]


@pytest.fixture
def training(server: str, tmp_path: Path) -> str:
    return upload(server, dialogues(tmp_path / "t.jsonl").read_bytes())


def create_job(server: str, **body: object) -> httpx.Response:
    return httpx.post(server + "/v1/fine_tuning/jobs", json={"model": MODEL, **body},
                      timeout=60)


def refused(response: httpx.Response, status: int = 400) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    return error


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "m" * 5000}, "model"),
    ({"hyperparameters": {"learning_rate_multiplier": "abc"}},
     "hyperparameters.learning_rate_multiplier"),
    ({"hyperparameters": {"learning_rate_multiplier": [1]}},
     "hyperparameters.learning_rate_multiplier"),
    ({"hyperparameters": {"learning_rate_multiplier": 0}},
     "hyperparameters.learning_rate_multiplier"),
    ({"hyperparameters": {"n_epochs": True}}, "hyperparameters.n_epochs"),
    ({"hyperparameters": {"n_epochs": 0}}, "hyperparameters.n_epochs"),
    ({"hyperparameters": {"batch_size": "many"}}, "hyperparameters.batch_size"),
    ({"hyperparameters": {"warmup": 3}}, "hyperparameters.warmup"),
    ({"hyperparameters": "fast"}, "hyperparameters"),
    ({"method": {"type": "supervised", "supervised": "yes"}}, "method.supervised"),
    ({"method": {"type": "reinforcement"}}, "method.type"),
    ({"method": {"type": "dpo", "supervised": {}}}, "method"),
    ({"method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0}}}},
     "method.dpo.hyperparameters.beta"),
    ({"method": {"supervised": {"hyperparameters": {"n_epochs": "abc"}}}},
     "method.supervised.hyperparameters.n_epochs"),
    ({"seed": 2**70}, "seed"),
    ({"seed": -1}, "seed"),
    ({"seed": "7"}, "seed"),
    ({"metadata": {"k": ["not", "a", "string"]}}, "metadata.k"),
])
def test_a_bad_job_value_is_a_400_naming_it(server: str, training: str, body: dict,
                                             param: str) -> None:
    error = refused(create_job(server, training_file=training, **body))
    assert error["param"] == param
    assert error["message"].startswith(param + ": ")
    assert httpx.get(server + "/v1/fine_tuning/jobs").json()["data"] == []


def test_the_suffix_error_shows_its_pattern_as_written(server: str, training: str) -> None:
    error = refused(create_job(server, training_file=training, suffix="no spaces!"))
    assert error["param"] == "suffix" and "[A-Za-z0-9_.-]" in error["message"]


def test_a_good_job_echoes_what_it_was_given(server: str, training: str) -> None:
    response = create_job(server, training_file=training, seed=2**32 - 1,
                          hyperparameters={"n_epochs": "auto",
                                           "learning_rate_multiplier": 2})
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["seed"] == 2**32 - 1 and job["status"] == "queued"
    assert job["hyperparameters"]["learning_rate_multiplier"] == 2


def test_cheap_checks_come_before_the_file_is_read(server: str, tmp_path: Path) -> None:
    broken = upload(server, b"{broken\n" * 1000)
    error = refused(create_job(server, training_file=broken, model="/no/such/model"))
    assert error["param"] == "model"
    error = refused(create_job(server, training_file=broken, seed=2**70))
    assert error["param"] == "seed"
    error = refused(create_job(server, training_file=broken))  # then the file, by line
    assert error["param"] == "training_file" and "line 1" in error["message"]


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_an_empty_training_file_is_refused_at_creation(server: str, content: bytes) -> None:
    error = refused(create_job(server, training_file=upload(server, content)))
    assert error["param"] == "training_file" and "no examples" in error["message"]
    assert httpx.get(server + "/v1/fine_tuning/jobs").json()["data"] == []


def test_an_empty_validation_file_is_refused_too(server: str, training: str) -> None:
    error = refused(create_job(server, training_file=training,
                               validation_file=upload(server, b"")))
    assert error["param"] == "validation_file"


def test_file_checks_are_capped(tmp_path: Path) -> None:
    app = create_app(ServeSettings(run_worker=False))
    slots = app.state.file_checks.slots
    with serve_in_thread(app) as port:
        server = f"http://127.0.0.1:{port}"
        file_id = upload(server, dialogues(tmp_path / "t.jsonl").read_bytes())
        held = 0
        while slots.acquire(blocking=False):  # every check slot busy, as under a flood
            held += 1
        busy = create_job(server, training_file=file_id)
        for _ in range(held):
            slots.release()
        assert busy.status_code == 503 and busy.headers["retry-after"].isdigit()
        assert busy.json()["error"]["code"] == "server_busy"
        assert create_job(server, training_file=file_id).status_code == 200


def test_the_file_check_holds_one_line_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    dialogues(path, count=20_000)  # about 4 MB of examples
    tracemalloc.start()
    try:
        assert count_examples(path) == 20_000
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < path.stat().st_size / 8


def test_a_line_over_the_cap_is_refused_by_number(tmp_path: Path) -> None:
    path = dialogues(tmp_path / "t.jsonl", count=3)
    long_line = json.dumps({"messages": [{"role": "user", "content": "x" * 5000},
                                         {"role": "assistant", "content": "ok"}]})
    path.write_text(path.read_text() + long_line + "\n")
    with pytest.raises(DataError) as caught:
        count_examples(path, max_line_bytes=4096)
    assert caught.value.line == 4 and "line_too_long" in caught.value.message


# error shapes ---------------------------------------------------------------------------
def test_a_json_syntax_error_names_no_field(server: str) -> None:
    response = httpx.post(server + "/v1/fine_tuning/jobs", content=b'{"model": 1,, }',
                          headers={"Content-Type": "application/json"})
    error = refused(response)
    assert error["param"] is None and "not valid JSON" in error["message"]


def test_a_missing_field_is_named(server: str) -> None:
    error = refused(create_job(server))
    assert error["param"] == "training_file"


def test_a_declared_length_over_the_limit_is_refused_unread(server: str) -> None:
    body = b"".join(multipart_stream(16 * LIMIT))
    response = httpx.post(server + "/v1/files", content=body, timeout=60,
                          headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert response.request.headers["content-length"] == str(len(body))
    # Refused on its declared length; closing the connection is what stops the server from
    # reading (and dropping) the rest of the body before it answers.
    assert response.status_code == 413 and response.headers["connection"] == "close"


def test_a_client_that_hangs_up_mid_upload_leaves_nothing(server: str, body_seen: list[int],
                                                          tunelab_home: Path) -> None:
    host, port = server.removeprefix("http://").split(":")
    head = b"".join(multipart_stream(0))[:-len(f"\r\n--{BOUNDARY}--\r\n")]
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                     b"Content-Type: multipart/form-data; boundary=" + BOUNDARY.encode()
                     + b"\r\n\r\n")
        part = head + b"x" * 100_000
        sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        folder = tunelab_home / "server" / "files"
        wait_until(lambda: sum(body_seen) >= len(part))  # the server is mid-file now
        assert [p.suffix for p in folder.iterdir()] == [".part"]
    wait_until(lambda: not list(folder.iterdir()))  # gone once the client is


def wait_until(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def test_a_job_model_is_a_listed_base_model_never_a_path(server: str, training: str,
                                                          tmp_path: Path) -> None:
    """Job creation used to accept server folders, .gguf paths and cached hub ids, and
    answered "/etc" with "folder has no model config.json": a probe of the filesystem."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    messages = set()
    for name in ("/etc", "/nonexist/x", str(folder), "../..", "gpt2"):
        error = refused(create_job(server, model=name, training_file=training))
        assert error["param"] == "model" and error["code"] == "model_not_available"
        messages.add(error["message"].replace(repr(name[:80]), "NAME"))
    assert len(messages) == 1 and "config" not in messages.pop()
    assert create_job(server, model=MODEL, training_file=training).status_code == 200
