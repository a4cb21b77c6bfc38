"""What the server and the dashboard promise after the second hardening round (issue 26,
items 3, 4, 5, 6, 11, 13, 16, 25, 26, 27 and 28).

The API is driven over real HTTP (the app under uvicorn on a loopback port, worker off, so
jobs stay queued) with httpx or the openai SDK; the dashboard through FastAPI's TestClient,
as tests/test_dashboard.py drives it. No test trains or loads a model: jobs are registry rows.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from faultproxy import dialogues, serve_in_thread
from test_dashboard import add_job, csrf_of
from test_server_hardening import counting, wait_until
from tunelab.registry import SERVER, Checkpoint, open_registry
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


# 5. The new-run page's model ---------------------------------------------------------------
def upload_on_page(http: TestClient, tmp_path: Path) -> tuple[str, str]:
    token = csrf_of(http.get("/new").text)
    data = dialogues(tmp_path / "train.jsonl")
    uploaded = http.post("/new/upload", headers={"X-CSRF-Token": token},
                         files={"file": ("train.jsonl", data.read_bytes())},
                         data={"purpose": "fine-tune"}).json()
    return token, uploaded["id"]


def test_the_new_run_model_is_a_listed_base_model_never_a_path(tmp_path: Path) -> None:
    """The page resolved its model field as a server path: "/etc" and "/nonexistent" got
    different errors, and any model folder on the disk could be trained on."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    with dashboard() as http:
        token, file_id = upload_on_page(http, tmp_path)
        page = http.get(f"/new?file={file_id}&provider=local").text
        assert re.findall(r'<option value="([^"]+)" label="base model">', page) == [MODEL]
        said = set()
        for step in ("dry-run", "start"):
            for name in ("/etc", "/nonexistent", str(folder), "../..", "gpt2"):
                answer = http.post(f"/new/{step}", data={"csrf": token, "file": file_id,
                                                         "provider": "local", "model": name})
                assert answer.status_code == 400, (step, name, answer.status_code)
                failure = re.search(r'id="failure">([^<]*)<', answer.text).group(1)
                said.add(failure.replace(name[:80], "NAME"))
        assert len(said) == 1 and "GET /v1/models" in said.pop()
        with open_registry() as registry:
            assert registry.list_jobs() == []
        started = http.post("/new/start", data={"csrf": token, "file": file_id,
                                                "provider": "local", "model": MODEL})
        assert started.status_code == 303, started.text


# 6. The compare form's models and judge ----------------------------------------------------
class FakeComparison:
    def __init__(self, models: list[str]) -> None:
        self.models = models

    def to_dict(self) -> dict[str, Any]:
        return {"models": [{"label": m, "metrics": {}, "answers": []} for m in self.models],
                "items": [], "examples": 0, "eval_file": "valid.jsonl",
                "settings": {"max_new_tokens": 8}, "judge": None}


@pytest.fixture
def compared(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """tunelab.evaluate.compare.compare replaced: it records what it was asked and how many
    ran at once, and each waits for `release` (set, so none waits, unless a test clears it)."""
    compare_module = importlib.import_module("tunelab.evaluate.compare")  # not the function
    seen: dict[str, Any] = {"calls": [], "now": 0, "most": 0, "lock": threading.Lock(),
                            "release": threading.Event()}
    seen["release"].set()

    def fake(models: list[str], **options: Any) -> FakeComparison:
        with seen["lock"]:
            seen["calls"].append((list(models), options.get("judge")))
            seen["now"] += 1
            seen["most"] = max(seen["most"], seen["now"])
        try:
            assert seen["release"].wait(30)
            return FakeComparison(models)
        finally:
            with seen["lock"]:
                seen["now"] -= 1

    monkeypatch.setattr(compare_module, "compare", fake)
    return seen


def test_the_compare_form_takes_only_the_models_it_offers(tmp_path: Path,
                                                          compared: dict[str, Any]) -> None:
    """The compare form took paths, hub ids and cloud models (an adapter from another home
    loaded; a cloud model or judge would spend the operator's keys)."""
    add_job("ftjob-mine", fine_tuned_model=f"ft:{MODEL}:mine:ftjob-mine",
            run_dir=str(tmp_path / "run"))
    add_job("ftjob-cloud", "openai", fine_tuned_model="ft:gpt-4o-mini-2024-07-18:acme::x1")
    adapter = tmp_path / "elsewhere" / "adapter"
    adapter.mkdir(parents=True)
    with dashboard() as http:
        page = http.get("/compare").text
        offered = set(re.findall(r'name="model" value="([^"]+)"', page))
        assert offered == {"base", "ftjob-mine"}
        judges = set(re.findall(r'<option value="([^"]+)">', page))
        assert judges == {MODEL, "ftjob-mine"}
        token = csrf_of(page)
        for models, judge in ((["base", str(adapter)], ""), (["base", "ftjob-cloud"], ""),
                              (["base", "ft:gpt-4o-mini-2024-07-18:acme::x1"], ""),
                              (["base", "openai:gpt-4o-mini"], ""),
                              (["base", "HuggingFaceTB/SmolLM2-360M-Instruct"], ""),
                              (["base", "ftjob-mine"], "openai:gpt-4o"),
                              (["base", "ftjob-mine"], str(adapter)),
                              (["base", "ftjob-mine"], "base")):
            answer = http.post("/compare", data={"csrf": token, "model": models,
                                                 "judge": judge})
            assert answer.status_code == 400, (models, judge, answer.status_code)
            assert "GET /v1/models" in answer.text
        assert compared["calls"] == []
        answer = http.post("/compare", data={"csrf": token, "model": ["base", "ftjob-mine"],
                                             "judge": "ftjob-mine"})
        assert answer.status_code == 303, answer.text
        wait_until(lambda: compared["calls"] == [(["base", "ftjob-mine"], "ftjob-mine")])


# 16. Comparisons queue ---------------------------------------------------------------------
def test_comparisons_started_together_run_one_at_a_time(tmp_path: Path,
                                                        compared: dict[str, Any]) -> None:
    """Three started at once all ran (1.38 GB), and two failed with an ImportError."""
    add_job("ftjob-mine", fine_tuned_model=f"ft:{MODEL}:mine:ftjob-mine",
            run_dir=str(tmp_path / "run"))
    compared["release"].clear()
    with dashboard() as http:
        token = csrf_of(http.get("/compare").text)
        ids = []
        for _ in range(3):
            answer = http.post("/compare", data={"csrf": token,
                                                 "model": ["base", "ftjob-mine"]})
            assert answer.status_code == 303
            ids.append(answer.headers["location"].rsplit("/", 1)[1])
        wait_until(lambda: compared["now"] == 1)
        time.sleep(0.3)  # room for a second one to start, if one could
        statuses = [http.get(f"/compare/{run}/status.json").json()["status"] for run in ids]
        assert statuses == ["running", "queued", "queued"]
        listing = http.get("/compare").text
        assert listing.count("queued") >= 2
        assert "queued" in http.get(f"/compare/{ids[2]}").text
        compared["release"].set()
        wait_until(lambda: all(http.get(f"/compare/{run}/status.json").json()["status"]
                             == "done" for run in ids))
    assert compared["most"] == 1 and len(compared["calls"]) == 3


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


# 25. A damaged server-job row --------------------------------------------------------------
def damage(job_id: str, home: Path) -> None:
    with sqlite3.connect(home / "registry.sqlite") as db:
        db.execute("UPDATE jobs SET metadata_json = '{not json' WHERE id = ?", (job_id,))


def test_a_damaged_server_job_row_is_skipped_and_no_path_is_shown(
        keyless: tuple[str, int], tunelab_home: Path, caplog: pytest.LogCaptureFixture) -> None:
    """One damaged row broke GET /v1/fine_tuning/jobs for every client with a 400 that
    showed the server's absolute registry path."""
    server, _ = keyless
    add_job("ftjob-good", status="queued", origin=SERVER, base_model=MODEL)
    add_job("ftjob-bad", status="queued", origin=SERVER, base_model=MODEL)
    damage("ftjob-bad", tunelab_home)
    client = openai.OpenAI(api_key="unused", base_url=server + "/v1", max_retries=0)
    with caplog.at_level(logging.WARNING):
        listed = client.fine_tuning.jobs.list()
    assert [job.id for job in listed.data] == ["ftjob-good"]
    assert any("ftjob-bad" in record.getMessage() for record in caplog.records)
    one = httpx.get(server + "/v1/fine_tuning/jobs/ftjob-bad")
    assert 400 <= one.status_code < 500
    assert str(tunelab_home) not in one.text and str(tunelab_home.resolve()) not in one.text
    assert "TUNELAB_HOME" in one.text


# 26. A Last-Event-ID past what a number holds ----------------------------------------------
def test_an_overflowing_last_event_id_starts_over(caplog: pytest.LogCaptureFixture) -> None:
    """`99999999999999999999:0` logged an OverflowError and sent an empty stream."""
    add_job("ftjob-curves")
    with open_registry() as registry:
        for step in (1, 2, 3):
            registry.add_metrics("ftjob-curves", step, {"train_loss": 3.0 - step / 10})
        registry.add_event("ftjob-curves", "done")
    with dashboard() as http, caplog.at_level(logging.WARNING):
        for cursor in ("99999999999999999999:0", "0:99999999999999999999",
                       "9223372036854775808:1", "9" * 5000 + ":1"):
            for query, headers in (("", {"Last-Event-ID": cursor}), (f"?after={cursor}", {})):
                text = http.get(f"/jobs/ftjob-curves/stream{query}", headers=headers).text
                steps = [point["step"] for block in text.split("\n\n")
                         if "event: metrics" in block
                         for point in json.loads(block.split("data: ", 1)[1])]
                assert steps == [1, 2, 3], (cursor[:30], query[:30])
                assert "event: end" in text
    assert not any("Overflow" in record.getMessage() for record in caplog.records)


# 27. Resume with an over-long checkpoint name ----------------------------------------------
def test_resume_with_a_very_long_checkpoint_name_is_a_4xx(tmp_path: Path) -> None:
    """A 5,000-character checkpoint name answered 500 (the name is too long for a path)."""
    run = tmp_path / "run"
    (run / "checkpoints" / "step-000002").mkdir(parents=True)
    add_job("ftjob-stopped", status="cancelled", origin=SERVER, run_dir=str(run))
    with open_registry() as registry:
        registry.upsert_checkpoint(Checkpoint("ftjob-stopped", "step-000002", "step",
                                              time.time(), 2, 0.5,
                                              str(run / "checkpoints" / "step-000002")))
    with dashboard(raise_server_exceptions=False) as http:
        token = csrf_of(http.get("/jobs/ftjob-stopped").text)
        for name in ("step-" + "0" * 5000, "epoch-" + "9" * 300, "step-" + "é" * 200):
            answer = http.post("/jobs/ftjob-stopped/resume",
                               data={"csrf": token, "checkpoint": name})
            assert answer.status_code == 404, (len(name), answer.status_code)
            assert "no checkpoint" in answer.text
    with open_registry() as registry:
        assert registry.get_job("ftjob-stopped").status == "cancelled"


# 28. Home-relative paths on the dashboard --------------------------------------------------
def test_dashboard_error_text_shows_home_relative_paths(tunelab_home: Path,
                                                        tmp_path: Path) -> None:
    """The API showed TUNELAB_HOME/...; the dashboard showed the server's absolute paths."""
    run = tunelab_home / "runs" / "ftjob-broken"
    add_job("ftjob-broken", status="failed", run_dir=str(run),
            error={"message": f"cannot read {run}/checkpoints/step-000002/state.json",
                   "code": "bad"})
    with open_registry() as registry:
        registry.add_event("ftjob-broken", f"checkpoint written to {run}/checkpoints",
                           level="error")
    with dashboard() as http:
        texts = [http.get("/jobs/ftjob-broken").text,
                 http.get("/jobs/ftjob-broken/stream").text]
        token = csrf_of(http.get("/new").text)
        few = b'{"messages": [{"role": "user", "content": "hi"}]}\n' * 3
        file_id = http.post("/new/upload", headers={"X-CSRF-Token": token},
                            files={"file": ("few.jsonl", few)},
                            data={"purpose": "fine-tune"}).json()["id"]
        for step in ("dry-run", "start"):  # the data check's error names the upload's path
            answer = http.post(f"/new/{step}", data={"csrf": token, "file": file_id,
                                                     "provider": "openai"})
            assert answer.status_code == 400
            texts.append(answer.text)
    for text in texts:
        assert str(tunelab_home) not in text and str(tunelab_home.resolve()) not in text
    assert "TUNELAB_HOME/runs/ftjob-broken/checkpoints/step-000002/state.json" in texts[0]
    assert "TUNELAB_HOME/runs/ftjob-broken/checkpoints" in texts[0]  # the event
    assert "TUNELAB_HOME/runs/ftjob-broken/checkpoints" in texts[1]
    assert all(f"TUNELAB_HOME/server/files/{file_id}.jsonl" in text for text in texts[2:])


def test_one_function_makes_paths_home_relative(tunelab_home: Path) -> None:
    from tunelab.server.errors import home_relative

    tunelab_home.mkdir(parents=True, exist_ok=True)
    inside = tunelab_home.resolve() / "runs" / "x"
    assert home_relative(f"at {inside} and {tunelab_home}/y", tunelab_home) \
        == "at TUNELAB_HOME/runs/x and TUNELAB_HOME/y"
