"""What the server and the dashboard promise after the second hardening round (issue 26,
items 3, 4, 11 and 13).

The API is driven over real HTTP (the app under uvicorn on a loopback port, worker off, so
jobs stay queued) with httpx or the openai SDK; the dashboard through FastAPI's TestClient,
as tests/test_dashboard.py drives it. No test trains or loads a model: jobs are registry rows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from faultproxy import serve_in_thread
from test_dashboard import add_job, csrf_of
from test_server_hardening import counting
from tunelab.registry import SERVER, open_registry
from tunelab.server import ServeSettings, create_app

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
KEY = "hardening-key-2c9d"
LOOPBACK = "http://127.0.0.1:8000"
EVIL = "http://evil.example"


def dashboard(settings: ServeSettings | None = None, *, address: str = "testclient",
              raise_server_exceptions: bool = True) -> TestClient:
    return TestClient(create_app(settings or ServeSettings(run_worker=False)),
                      base_url=LOOPBACK, follow_redirects=False, client=(address, 50000),
                      raise_server_exceptions=raise_server_exceptions)


def refused(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.text[:300])
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"} and error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


@pytest.fixture
def body_seen() -> list[int]:
    return []


@pytest.fixture
def keyless(tunelab_home: Path, body_seen: list[int]) -> Iterator[tuple[str, int]]:
    """A server without a key, as `tunelab serve` runs by default: (base URL, port)."""
    app = create_app(ServeSettings(run_worker=False))
    with serve_in_thread(counting(app, body_seen)) as port:
        yield f"http://127.0.0.1:{port}", port


# 3. Host: one guard for every route --------------------------------------------------------
def every_route() -> list[tuple[str, str]]:
    """Each (method, path) the app answers, path parameters filled in."""
    app = create_app(ServeSettings(run_worker=False))
    found = []
    for route in app.routes:
        path = re.sub(r"\{[^}]+\}", "ftjob-x", getattr(route, "path", ""))
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if method != "HEAD":
                found.append((method, path))
    return found


def test_without_a_key_every_route_refuses_a_foreign_host(keyless: tuple[str, int]) -> None:
    """A DNS-rebinding page names its own host: /v1 listed, downloaded and deleted the
    uploads for it, while the dashboard already refused it."""
    server, port = keyless
    file_id = httpx.post(server + "/v1/files", files={"file": ("t.jsonl", b"{}\n")},
                         data={"purpose": "fine-tune"}).json()["id"]
    routes = every_route()
    assert ("GET", "/v1/files") in routes and ("DELETE", "/v1/files/ftjob-x") in routes
    for method, path in routes:
        path = path.replace("ftjob-x", file_id) if path.startswith("/v1/files") else path
        for host in (f"rebound.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}"):
            answer = httpx.request(method, server + path, headers={"Host": host})
            refused(answer, 403, "host_refused")
            assert file_id not in answer.text
    assert httpx.get(server + f"/v1/files/{file_id}").status_code == 200  # not deleted
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        assert httpx.get(server + "/v1/files", headers={"Host": host}).status_code == 200


def test_with_a_key_any_host_is_served_to_the_key() -> None:
    """A key set, the key is what protects: a reverse proxy may send any Host."""
    settings = ServeSettings(host="0.0.0.0", api_key=KEY, run_worker=False)
    with TestClient(create_app(settings), base_url="http://tunelab.example.org") as http:
        assert http.get("/v1/models").status_code == 401
        assert http.get("/v1/models",
                        headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


# 4. Origin: cross-site state changes on /v1 ------------------------------------------------
def test_without_a_key_a_cross_site_post_to_v1_is_refused(keyless: tuple[str, int],
                                                          tunelab_home: Path) -> None:
    """A page on another site could upload (multipart) and cancel jobs with a plain form."""
    server, port = keyless
    add_job("ftjob-queued", status="queued", origin=SERVER)
    for headers in ({"Origin": EVIL}, {"Referer": EVIL + "/page"}, {"Origin": "null"},
                    {"Origin": f"http://127.0.0.1:{port + 1}"}):
        answer = httpx.post(server + "/v1/files", files={"file": ("t.jsonl", b"{}\n")},
                            data={"purpose": "fine-tune"}, headers=headers)
        refused(answer, 403, "csrf_refused")
        refused(httpx.post(server + "/v1/fine_tuning/jobs/ftjob-queued/cancel",
                           headers=headers), 403, "csrf_refused")
        refused(httpx.delete(server + "/v1/files/file-x", headers=headers), 403,
                "csrf_refused")
    assert list((tunelab_home / "server" / "files").iterdir()) == []
    with open_registry() as registry:
        assert registry.get_job("ftjob-queued").status == "queued"
    # The SDK (no Origin) and this server's own pages (its Origin) still work.
    client = openai.OpenAI(api_key="unused", base_url=server + "/v1", max_retries=0)
    assert client.fine_tuning.jobs.cancel("ftjob-queued").status == "cancelled"
    same = httpx.post(server + "/v1/files", files={"file": ("t.jsonl", b"{}\n")},
                      data={"purpose": "fine-tune"}, headers={"Origin": server})
    assert same.status_code == 200, same.text


# 11. Login throttle and logout -------------------------------------------------------------
def test_login_guesses_are_throttled_per_address() -> None:
    """/login took 200 guesses in 0.7 s."""
    settings = ServeSettings(host="0.0.0.0", api_key=KEY, run_worker=False)
    app = create_app(settings)
    with TestClient(app, base_url="http://10.0.0.5:8000", follow_redirects=False,
                    client=("203.0.113.7", 40000)) as guesser:
        answers = [guesser.post("/login", data={"key": f"guess-{n}", "next": "/"})
                   for n in range(12)]
        codes = [answer.status_code for answer in answers]
        assert 401 in codes and codes[-1] == 429, codes
        assert codes.index(429) <= 10 and set(codes[codes.index(429):]) == {429}
        wait = int(answers[-1].headers["retry-after"])
        assert 0 < wait <= 300
        # Throttled, even the right key waits: a guesser learns nothing more.
        right = guesser.post("/login", data={"key": KEY, "next": "/"})
        assert right.status_code == 429 and "set-cookie" not in right.headers
    with TestClient(app, base_url="http://10.0.0.5:8000", follow_redirects=False,
                    client=("198.51.100.9", 40000)) as other:  # another address is not held up
        assert other.post("/login", data={"key": KEY, "next": "/"}).status_code == 303


def test_a_logged_out_session_stops_working_at_once() -> None:
    """The cookie still worked after logout until the server restarted."""
    add_job("ftjob-x", status="running")
    settings = ServeSettings(host="0.0.0.0", api_key=KEY, run_worker=False)
    with TestClient(create_app(settings), base_url="http://10.0.0.5:8000",
                    follow_redirects=False) as http:
        assert http.post("/login", data={"key": KEY, "next": "/"}).status_code == 303
        cookie = http.cookies["tunelab_session"]
        page = http.get("/jobs/ftjob-x")
        assert page.status_code == 200 and "ftjob-x" in page.text
        out = http.post("/logout", data={"csrf": csrf_of(page.text)})
        assert out.status_code == 303
        http.cookies.clear()
        http.cookies.set("tunelab_session", cookie)  # a copy kept from before the logout
        again = http.get("/jobs/ftjob-x", headers={"accept": "application/json"})
        assert again.status_code == 401 and "ftjob-x" not in again.text
        assert http.get("/jobs.json").status_code == 401
        # A new login works.
        assert http.post("/login", data={"key": KEY, "next": "/"}).status_code == 303
        assert http.get("/jobs.json").status_code == 200


# 13. JSON bodies get their own small limit --------------------------------------------------
def test_a_json_body_over_its_limit_is_refused_before_it_is_read(
        keyless: tuple[str, int], body_seen: list[int]) -> None:
    """JSON bodies shared the upload limit (512 MB): a 200 MB chat body took the server from
    77 MB to 1.9 GB."""
    server, _ = keyless
    size = 5 * 1024 * 1024  # over the JSON limit, far under the upload limit
    body = json.dumps({"model": "nope", "messages": [{"role": "user", "content": "x" * size}]})
    declared = httpx.post(server + "/v1/chat/completions", content=body,
                          headers={"Content-Type": "application/json"})
    error = refused(declared, 413, "request_too_large")
    assert error["type"] == "invalid_request_error" and "byte limit" in error["message"]
    assert sum(body_seen) < 256 * 1024  # refused on its Content-Length, before reading

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start:start + 64 * 1024].encode()

    body_seen.clear()
    streamed = httpx.post(server + "/v1/chat/completions", content=chunks(),
                          headers={"Content-Type": "application/json"}, timeout=60)
    assert "content-length" not in streamed.request.headers
    refused(streamed, 413, "request_too_large")
    limit = ServeSettings().max_json_bytes
    assert limit <= 4 * 1024 * 1024
    assert sum(body_seen) < limit + 256 * 1024  # stopped at the limit, not at the end
    # The same goes for every JSON route; uploads keep their own (larger) limit.
    refused(httpx.post(server + "/v1/fine_tuning/jobs", content=chunks(),
                       headers={"Content-Type": "application/json"}, timeout=60), 413)
    uploaded = httpx.post(server + "/v1/files", data={"purpose": "fine-tune"},
                          files={"file": ("big.jsonl", (b"{}\n" * (size // 3)))}, timeout=60)
    assert uploaded.status_code == 200, uploaded.text
    small = httpx.post(server + "/v1/chat/completions", json={"model": "nope", "messages": [
        {"role": "user", "content": "hi"}]})
    assert small.status_code == 404  # a body under the limit goes on as before


def test_the_json_limit_is_a_setting() -> None:
    settings = ServeSettings(run_worker=False, max_json_bytes=1000)
    with TestClient(create_app(settings), base_url=LOOPBACK) as http:
        answer = http.post("/v1/fine_tuning/jobs", json={"model": "m" * 2000})
        assert answer.status_code == 413 and "1000" in answer.json()["error"]["message"]
        page = http.get("/")
        big = http.post("/logout", data={"csrf": csrf_of(page.text), "pad": "p" * 2000})
        assert big.status_code == 413


