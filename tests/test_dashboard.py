"""The web dashboard over HTTP (no browser, no model): what each page shows, the live stream's
resume, and the security rules (the key off loopback, CSRF, Origin, Host, escaping).

The browser itself is exercised in test_dashboard_browser.py.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from faultproxy import dialogues, serve_in_thread
from tunelab.cli import main
from tunelab.registry import SERVER, Checkpoint, JobRecord, open_registry
from tunelab.registry.job_config import ImportedJob, MigrateState
from tunelab.server import ServeSettings, create_app

KEY = "dash-key-5b1e"
CLOUD_KEY = "sk-canary-dashboard-0123456789"
LOOPBACK = "http://127.0.0.1:8000"
HOSTILE = "<script>alert('x')</script>"


def add_job(job_id: str, provider: str = "local", status: str = "succeeded",
            **fields: object) -> JobRecord:
    now = time.time()
    with open_registry() as registry:
        return registry.create_job(JobRecord(id=job_id, provider=provider, status=status,
                                             created_at=now, updated_at=now, **fields))


def client(settings: ServeSettings | None = None, base: str = LOOPBACK) -> TestClient:
    app = create_app(settings or ServeSettings(run_worker=False))
    return TestClient(app, base_url=base, follow_redirects=False)


def csrf_of(html: str) -> str:
    return re.search(r'<meta name="csrf" content="([0-9a-f]+)">', html).group(1)


def job_ids(html: str) -> set[str]:
    return set(re.findall(r'<tr data-job="([^"]+)">', html))


def test_jobs_page_lists_every_provider_and_filters() -> None:
    add_job("ftjob-local1", base_model="HuggingFaceTB/SmolLM2-135M-Instruct")
    add_job("ftjob-openai1", "openai", "running", base_model="gpt-4o-mini-2024-07-18")
    add_job("tuningJobs/123", "vertex", "failed", base_model="gemini-2.0-flash-001")
    add_job("ftjob-acme1", "acme", "queued", base_model="llama-3-8b")
    add_job("ftjob-old1", "openai", "succeeded", base_model="gpt-4o-mini-2024-07-18",
            config=ImportedJob(migrate=MigrateState(pulled_at=1.0)))
    add_job("ftjob-server1", status="queued", origin=SERVER)
    with client() as http:
        every = http.get("/").text
        assert job_ids(every) == {"ftjob-local1", "ftjob-openai1", "tuningJobs/123",
                                  "ftjob-acme1", "ftjob-old1", "ftjob-server1"}
        assert job_ids(http.get("/?provider=openai").text) == {"ftjob-openai1", "ftjob-old1"}
        assert job_ids(http.get("/?status=queued").text) == {"ftjob-acme1", "ftjob-server1"}
        assert job_ids(http.get("/?source=imported").text) == {"ftjob-old1"}
        assert job_ids(http.get("/?source=server").text) == {"ftjob-server1"}
        assert http.get("/jobs.json?provider=vertex").json()["jobs"][0]["id"] == "tuningJobs/123"


def test_a_retiring_model_shows_its_days_left() -> None:
    # TUNELAB_TODAY is 2026-12-02 (conftest); gpt-4o-mini-2024-07-18 shuts down 2027-01-14.
    add_job("ftjob-retiring", "openai", base_model="gpt-4o-mini-2024-07-18",
            fine_tuned_model="ft:gpt-4o-mini-2024-07-18:acme:natasha:AbC")
    add_job("ftjob-forever", base_model="HuggingFaceTB/SmolLM2-135M-Instruct")
    with client() as http:
        html = http.get("/").text
        row = html.split('data-job="ftjob-retiring"')[1].split("</tr>")[0]
        assert "43 days left" in row and "2027-01-14" in row
        assert "days left" not in html.split('data-job="ftjob-forever"')[1].split("</tr>")[0]
        assert "43 days left" in http.get("/jobs/ftjob-retiring").text


def test_dataset_text_and_job_names_are_escaped_everywhere(tmp_path: Path) -> None:
    data = tmp_path / "hostile.jsonl"
    data.write_text("\n".join(json.dumps({"messages": [
        {"role": "user", "content": f"Say {HOSTILE} {n}"},
        {"role": "assistant", "content": f"{HOSTILE} number {n}"}]}) for n in range(12)) + "\n",
        encoding="utf-8")
    run = tmp_path / "run"
    run.mkdir()
    (run / "samples.json").write_text(json.dumps({"samples": [
        {"prompt": HOSTILE, "answer": HOSTILE}]}), encoding="utf-8")
    add_job("ftjob-hostile", "openai", "running", suffix=HOSTILE,
            fine_tuned_model=f"ft:gpt-4o-mini:{HOSTILE}", base_model="gpt-4o-mini-2024-07-18",
            training_file=str(data), run_dir=str(run))
    with open_registry() as registry:
        registry.add_event("ftjob-hostile", f"a message with {HOSTILE}")
    with client() as http:
        pages = [http.get("/").text, http.get("/jobs/ftjob-hostile").text]
        token = csrf_of(pages[0])
        uploaded = http.post("/new/upload", headers={"X-CSRF-Token": token},
                             files={"file": ("x.jsonl", data.read_bytes())},
                             data={"purpose": "fine-tune"})
        pages.append(http.get(f"/new?file={uploaded.json()['id']}").text)
    for html in pages:
        assert "<script>alert" not in html
        assert "&lt;script&gt;alert" in html
    assert "12 / 12 examples valid" in pages[1]  # the job's data file was checked
    assert pages[1].count("&lt;script&gt;alert") >= 5  # name, suffix, event, sample x2


def stream_messages(text: str) -> list[dict[str, object]]:
    found = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            found.append({"id": fields.get("id"), "event": fields["event"],
                          "data": json.loads(fields["data"])})
    return found


def test_the_job_stream_resumes_from_the_last_event_id() -> None:
    add_job("ftjob-curves", status="succeeded")
    with open_registry() as registry:
        for step in range(1, 5):
            registry.add_metrics("ftjob-curves", step, {"train_loss": 3.0 - step / 10,
                                                        "tokens_per_s": 100.0,
                                                        "trained_tokens": step * 50})
        registry.add_metrics("ftjob-curves", 4, {"valid_loss": 2.5, "full_valid_loss": 2.5})
        for text in ("job created", "training started: 8 examples, 4 steps/epoch, 4 steps",
                     "done"):
            registry.add_event("ftjob-curves", text)
    with client() as http:
        first = stream_messages(http.get("/jobs/ftjob-curves/stream").text)
        steps = [p["step"] for m in first if m["event"] == "metrics" for p in m["data"]]
        assert steps == [1, 2, 3, 4]
        assert first[-1]["event"] == "end" and first[-1]["id"] == "4:3"
        progress = next(m["data"] for m in first if m["event"] == "progress")
        assert progress["total_steps"] == 4 and progress["tokens_per_s"] == 100.0
        # A browser reconnecting after step 2 and event 1 gets the rest, not all again.
        again = stream_messages(http.get("/jobs/ftjob-curves/stream",
                                         headers={"Last-Event-ID": "2:1"}).text)
        steps = [p["step"] for m in again if m["event"] == "metrics" for p in m["data"]]
        assert steps == [2, 3, 4]  # the last step seen is sent again: it may have grown
        events = [e["message"] for m in again if m["event"] == "events" for e in m["data"]]
        assert events == ["training started: 8 examples, 4 steps/epoch, 4 steps", "done"]
        assert http.get("/jobs/ftjob-curves/metrics.json").json()["points"][-1][
            "full_valid_loss"] == 2.5


def all_routes(http: TestClient) -> list[tuple[str, str]]:
    """Every (method, path) the app answers, path parameters filled in."""
    found = []
    for route in http.app.routes:
        path = re.sub(r"\{[^}]+\}", "ftjob-x", getattr(route, "path", ""))
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if method != "HEAD":
                found.append((method, path))
    return found + [("GET", "/static/dashboard.css"), ("GET", "/static/dashboard.js")]


def test_off_loopback_no_route_answers_without_the_key() -> None:
    add_job("ftjob-x", status="running")
    settings = ServeSettings(host="0.0.0.0", api_key=KEY, run_worker=False)
    with client(settings, base="http://10.1.2.3:8000") as http:
        routes = all_routes(http)
        assert ("GET", "/") in routes and ("GET", "/jobs/ftjob-x/stream") in routes
        for method, path in routes:
            if path in ("/health", "/login"):
                continue
            answer = http.request(method, path, headers={"accept": "text/html"})
            assert answer.status_code in (401, 303), (method, path, answer.status_code)
            if answer.status_code == 303:
                assert answer.headers["location"].startswith("/login")
            assert "ftjob-x" not in answer.text
        # With the key, as a bearer (scripts) or once through the login form (browsers).
        bearer = {"Authorization": f"Bearer {KEY}"}
        assert http.get("/jobs/ftjob-x", headers=bearer).status_code == 200
        assert http.post("/login", data={"key": "wrong", "next": "/"}).status_code == 401
        login = http.post("/login", data={"key": KEY, "next": "/jobs/ftjob-x"})
        assert login.status_code == 303 and login.headers["location"] == "/jobs/ftjob-x"
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert KEY not in login.headers["set-cookie"]
        assert "ftjob-x" in http.get("/jobs/ftjob-x").text  # the cookie is kept by the client
        # The cookie is the dashboard's: the API still wants the bearer key.
        assert http.get("/v1/fine_tuning/jobs").status_code == 401


def test_a_state_change_needs_the_session_token_and_this_origin() -> None:
    add_job("ftjob-q", status="queued", origin=SERVER)
    with client() as http:
        token = csrf_of(http.get("/").text)
        url = "/jobs/ftjob-q/cancel"
        assert http.post(url).status_code == 403  # no token
        assert http.post(url, data={"csrf": "0" * 64}).status_code == 403
        assert http.post(url, data={"csrf": token},
                         headers={"Origin": "http://evil.example"}).status_code == 403
        assert http.post(url, data={"csrf": token},
                         headers={"Referer": "http://evil.example/x"}).status_code == 403
        with open_registry() as registry:
            assert registry.get_job("ftjob-q").status == "queued"
        done = http.post(url, data={"csrf": token}, headers={"Origin": LOOPBACK})
        assert done.status_code == 303
    with open_registry() as registry:
        assert registry.get_job("ftjob-q").status == "cancelled"
    # A token from another browser's session is refused.
    with client() as other:
        other.get("/")
        assert other.post(url, data={"csrf": token}).status_code == 403


def test_without_a_key_only_a_loopback_host_is_served() -> None:
    with client(base="http://rebound.example:8000") as http:
        assert http.get("/").status_code == 403
    with client(base="http://localhost:8000") as http:
        assert http.get("/").status_code == 200


def test_every_page_sends_a_strict_content_security_policy() -> None:
    with client() as http:
        for path in ("/", "/new", "/compare", "/static/dashboard.js"):
            policy = http.get(path).headers["content-security-policy"]
            assert "script-src 'self'" in policy and "unsafe-inline" not in policy


def test_a_run_started_from_the_page_is_queued_for_the_worker(tmp_path: Path) -> None:
    data = dialogues(tmp_path / "train.jsonl")
    with client(ServeSettings(run_worker=False, max_steps=3)) as http:
        token = csrf_of(http.get("/new").text)
        uploaded = http.post("/new/upload", headers={"X-CSRF-Token": token},
                             files={"file": ("train.jsonl", data.read_bytes())},
                             data={"purpose": "fine-tune"}).json()
        page = http.get(f"/new?file={uploaded['id']}&provider=openai").text
        assert "12 / 12 examples valid" in page and 'id="cost-table"' in page
        assert "gpt-4o-mini-2024-07-18" in page
        bad = http.post("/new/start", data={"csrf": token, "file": uploaded["id"],
                                            "provider": "local", "epochs": "two"})
        assert bad.status_code == 400 and "epochs" in bad.text
        started = http.post("/new/start", data={
            "csrf": token, "file": uploaded["id"], "provider": "local", "preset": "quick",
            "suffix": "page-run", "max_steps": "50", "max_length": "64", "max_samples": "0"})
        assert started.status_code == 303
        job_id = started.headers["location"].split("/")[2].split("?")[0]
        assert job_id in http.get("/").text
    with open_registry() as registry:
        job = registry.get_job(job_id)
    assert (job.status, job.origin, job.provider) == ("queued", SERVER, "local")
    assert job.config.max_steps == 3  # the server's cap wins over the form
    assert job.config.batch_size == 2 and job.config.max_samples == 0  # preset quick
    assert job.training_file == uploaded["id"]


def test_resume_reopens_a_cancelled_server_job_with_a_checkpoint(tmp_path: Path) -> None:
    add_job("ftjob-paused", status="cancelled", origin=SERVER)
    folder = tmp_path / "step-000002"
    folder.mkdir()
    with open_registry() as registry:
        registry.upsert_checkpoint(Checkpoint("ftjob-paused", "step-000002", "step",
                                              time.time(), 2, 0.5, str(folder)))
    with client() as http:
        page = http.get("/jobs/ftjob-paused").text
        assert 'id="resume"' in page and 'id="cancel"' not in page
        answer = http.post("/jobs/ftjob-paused/resume", data={"csrf": csrf_of(page)})
        assert answer.status_code == 303
    with open_registry() as registry:
        assert registry.get_job("ftjob-paused").status == "queued"


def openai_stand_in(cancels: list[str]) -> FastAPI:
    """An OpenAI account holding running job ftjob-cloud: it records each cancel it gets.
    Any other job is unknown to it (404, as OpenAI answers)."""
    app, status = FastAPI(), {"ftjob-cloud": "running"}

    def job(job_id: str) -> JSONResponse:
        if job_id not in status:
            return JSONResponse({"error": {"message": f"no job {job_id}", "type":
                                           "invalid_request_error", "param": None,
                                           "code": None}}, 404)
        return JSONResponse({"object": "fine_tuning.job", "id": job_id, "created_at": 1,
                             "model": "gpt-4o-mini-2024-07-18", "status": status[job_id],
                             "error": None, "fine_tuned_model": None, "finished_at": None,
                             "hyperparameters": {}, "organization_id": "o",
                             "result_files": [], "seed": 1, "training_file": "file-1"})

    @app.get("/v1/fine_tuning/jobs/{job_id}")
    def get_job(job_id: str) -> JSONResponse:
        return job(job_id)

    @app.post("/v1/fine_tuning/jobs/{job_id}/cancel")
    def cancel(job_id: str) -> JSONResponse:
        cancels.append(job_id)
        if job_id in status:
            status[job_id] = "cancelled"
        return job(job_id)

    return app


def test_a_cloud_job_is_cancelled_from_its_page(monkeypatch: pytest.MonkeyPatch) -> None:
    cancels: list[str] = []
    monkeypatch.setenv("OPENAI_API_KEY", CLOUD_KEY)
    with serve_in_thread(openai_stand_in(cancels)) as port:
        endpoint = f"http://127.0.0.1:{port}/v1"
        for job_id in ("ftjob-cloud", "ftjob-gone"):
            add_job(job_id, "openai", "running", base_model="gpt-4o-mini-2024-07-18",
                    endpoint=endpoint)
        with client() as http:
            page = http.get("/jobs/ftjob-cloud").text
            assert 'id="cancel"' in page
            done = http.post("/jobs/ftjob-cloud/cancel", data={"csrf": csrf_of(page)})
            assert done.status_code == 303
            assert "Cancel requested." in http.get(done.headers["location"]).text
            # The provider's refusal is a page saying so, never with the key.
            refused = http.post("/jobs/ftjob-gone/cancel", data={"csrf": csrf_of(page)})
            assert refused.status_code == 404 and "ftjob-gone" in refused.text
            pages = [page, refused.text, http.get("/jobs/ftjob-cloud").text]
    assert cancels == ["ftjob-cloud"]  # the unknown job was not found, so nothing was sent
    with open_registry() as registry:
        assert registry.get_job("ftjob-cloud").status == "cancelled"
        assert registry.get_job("ftjob-gone").status == "running"
    assert not any(CLOUD_KEY in html for html in pages)


@pytest.mark.parametrize("path", ["/jobs/ftjob-none", "/compare/cmp-000000000000"])
def test_an_unknown_job_or_comparison_is_a_page_saying_so(path: str) -> None:
    with client() as http:
        answer = http.get(path)
        assert answer.status_code == 404 and "ftjob-none" in answer.text or "cmp-" in answer.text


def test_a_saved_comparison_shows_scores_answers_and_verdicts_as_text() -> None:
    from tunelab import home

    folder = home.home() / "comparisons"
    folder.mkdir(parents=True)
    answers = [{"text": f"{HOSTILE} one", "latency_s": 0.1}]
    (folder / "cmp-0a1b2c3d4e5f.json").write_text(json.dumps({
        "id": "cmp-0a1b2c3d4e5f", "eval_file": "valid.jsonl", "examples": 1,
        "settings": {"max_new_tokens": 8},
        "judge": {"label": "judge-model"},
        "models": [{"label": label, "metrics": {"chrf": chrf, "valid_loss": loss},
                    "judge": {"persona": 4.0, "helpfulness": 3.0, "win_rate": win},
                    "answers": answers}
                   for label, chrf, loss, win in (("base", 9.4, 4.2, 0.0),
                                                  ("ftjob-abc", 12.4, 2.9, 1.0))],
        "items": [{"question": "How?", "reference": HOSTILE, "verdicts": [
            {"order": ["base", "ftjob-abc"], "scores": {"base": {"persona": 4.0}},
             "rationale": f"{HOSTILE} wins", "error": None}]}]}), encoding="utf-8")
    with client() as http:
        listed = http.get("/compare").text
        assert "base vs ftjob-abc" in listed
        page = http.get("/compare/cmp-0a1b2c3d4e5f").text
    assert page.count('<tr class="model">') == 2
    assert "12.4" in page and "2.9000" in page and "100%" in page  # chrF, loss, win rate
    assert "<script>alert" not in page and page.count("&lt;script&gt;alert") >= 4


def test_ui_refuses_an_open_address_without_a_key(capsys: pytest.CaptureFixture[str]) -> None:
    from tunelab.cli import main

    assert main(["ui", "--host", "0.0.0.0", "--no-open"]) == 2
    said = capsys.readouterr().err
    assert "refusing to listen on 0.0.0.0 without an API key" in said
    assert main(["ui", "--help"]) == 0
    assert "dashboard" in capsys.readouterr().out


@pytest.mark.slow
def test_the_dry_run_estimate_is_shown_on_the_new_run_page(tmp_path: Path) -> None:
    data = dialogues(tmp_path / "train.jsonl")
    with client() as http:
        token = csrf_of(http.get("/new").text)
        uploaded = http.post("/new/upload", headers={"X-CSRF-Token": token},
                             files={"file": ("train.jsonl", data.read_bytes())},
                             data={"purpose": "fine-tune"}).json()
        page = http.post("/new/dry-run", data={
            "csrf": token, "file": uploaded["id"], "provider": "local", "max_steps": "2",
            "max_length": "64"})
    assert page.status_code == 200, re.findall(r"failure\"[^<]*", page.text)
    assert 'id="estimate"' in page.text and "tokens_per_s" in page.text
    assert "2 (6 per epoch" in page.text  # 12 examples, batch 2; capped at 2 steps
    with open_registry() as registry:
        assert registry.list_jobs() == []  # a dry run registers nothing


def test_the_jobs_stream_announces_a_job_made_after_it_opened() -> None:
    import httpx

    add_job("ftjob-before", "openai", "running")
    with serve_in_thread(create_app(ServeSettings(run_worker=False))) as port, \
            httpx.stream("GET", f"http://127.0.0.1:{port}/stream/jobs?provider=local",
                         timeout=30) as answer:
        blocks, block = [], []
        for line in answer.iter_lines():
            if line:
                block.append(line)
                continue
            blocks.extend(stream_messages("\n".join(block)))
            block = []
            if blocks and blocks[-1]["event"] == "statuses" and len(blocks) == 1:
                add_job("ftjob-after-cloud", "openai", "queued")  # filtered out: openai
                add_job("ftjob-after", status="queued", suffix=HOSTILE)
            if blocks and blocks[-1]["event"] == "added":
                break
    first, added = blocks[0], blocks[-1]
    assert first == {"id": None, "event": "statuses",
                     "data": [{"id": "ftjob-before", "status": "running"}]}
    assert [row["id"] for row in added["data"]] == ["ftjob-after"]
    row = added["data"][0]
    assert (row["provider"], row["status"], row["source"]) == ("local", "queued", "cli")
    # The new job's status is announced too, as every other's.
    assert {"id": "ftjob-after", "status": "queued"} in [
        item for message in blocks if message["event"] == "statuses" for item in message["data"]]


def test_the_job_stream_reads_only_the_metrics_past_its_cursor() -> None:
    add_job("ftjob-rows")
    with open_registry() as registry:
        for step in (1, 2, 3, 5):
            registry.add_metrics("ftjob-rows", step, {"train_loss": 1.0 / step})
        assert [row["step"] for row in registry.list_metrics("ftjob-rows", after_step=2)] \
            == [3, 5]
        assert [row["step"] for row in registry.list_metrics("ftjob-rows")] == [1, 2, 3, 5]
        assert registry.list_metrics("ftjob-rows", after_step=5) == []


def test_resume_offers_the_kept_checkpoints_and_refuses_another_name(tmp_path: Path) -> None:
    run = tmp_path / "run"
    add_job("ftjob-stopped", status="cancelled", origin=SERVER, run_dir=str(run))
    with open_registry() as registry:
        for step in (2, 4):
            folder = run / "checkpoints" / f"step-{step:06d}"
            folder.mkdir(parents=True)
            registry.upsert_checkpoint(Checkpoint("ftjob-stopped", folder.name, "step",
                                                  time.time(), step, 0.5, str(folder)))
    (run / "checkpoints" / "latest").write_text("step-000004\n")
    with client() as http:
        page = http.get("/jobs/ftjob-stopped").text
        assert re.findall(r'<option value="(step-\d+)">', page) == ["step-000004",
                                                                   "step-000002"]
        for name, status in (("../../etc", 404), ("step-000009", 404), ("step-000002", 400)):
            answer = http.post("/jobs/ftjob-stopped/resume",
                               data={"csrf": csrf_of(page), "checkpoint": name})
            assert answer.status_code == status, (name, answer.status_code)
        assert "state.json is missing" in answer.text  # an empty folder cannot be resumed
    with open_registry() as registry:
        assert registry.get_job("ftjob-stopped").status == "cancelled"  # left as it was
    assert (run / "checkpoints" / "latest").read_text() == "step-000004\n"


@pytest.mark.slow
def test_resume_restarts_from_the_chosen_checkpoint(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from tunelab.cli import main

    data = dialogues(tmp_path / "train.jsonl")
    (tmp_path / "cfg.json").write_text(json.dumps({"max_samples": 0}))  # no sample answers
    assert main(["train", str(data), "--max-steps", "4", "--save-every", "2",
                 "--max-length", "48", "--batch-size", "1", "--lora-r", "8",
                 "--precision", "fp32", "--config", str(tmp_path / "cfg.json"),
                 "--json"]) == 0
    job_id = json.loads(capsys.readouterr().out)["id"]
    with open_registry() as registry:  # as if stopped after its last step
        registry.reopen(job_id, ("succeeded",), status="cancelled")
        kept = [c.name for c in registry.list_checkpoints(job_id) if c.kind == "step"]
    assert "step-000002" in kept and "step-000004" in kept
    # The server's worker resumes it in its turn, as it trains every run the server starts.
    with client(ServeSettings(run_worker=True)) as http:
        page = http.get(f"/jobs/{job_id}").text
        answer = http.post(f"/jobs/{job_id}/resume",
                           data={"csrf": csrf_of(page), "checkpoint": "step-000002"})
        assert answer.status_code == 303
        deadline = time.monotonic() + 600  # a bound on a hang, not a timing assert
        with open_registry() as registry:
            while registry.get_job(job_id).status not in ("succeeded", "failed") \
                    and time.monotonic() < deadline:
                time.sleep(0.5)
            events = [event.message for event in registry.list_events(job_id)]
            assert registry.get_job(job_id).status == "succeeded", events[-3:]
    assert any("resumed from step-000002 at step 2" in text for text in events), events[-6:]


def openai_files_and_jobs(seen: list[str]) -> FastAPI:
    """An OpenAI account that takes uploads and creates jobs; it records every request. (Not
    tunelab's own server: that one writes its jobs into this test's registry too.)"""
    app = FastAPI()

    @app.middleware("http")
    async def record(request, call_next):  # type: ignore[no-untyped-def]
        seen.append(f"{request.method} {request.url.path}")
        return await call_next(request)

    @app.post("/v1/files")
    async def upload() -> JSONResponse:
        return JSONResponse({"object": "file", "id": "file-page1", "bytes": 1, "created_at": 1,
                             "filename": "train.jsonl", "purpose": "fine-tune",
                             "status": "processed"})

    @app.post("/v1/fine_tuning/jobs")
    async def create(request: Request) -> JSONResponse:
        body = await request.json()
        return JSONResponse({"object": "fine_tuning.job", "id": "ftjob-page1", "created_at": 1,
                             "model": body["model"], "status": "queued", "error": None,
                             "fine_tuned_model": None, "finished_at": None,
                             "hyperparameters": {}, "organization_id": "o",
                             "result_files": [], "seed": 1,
                             "training_file": body["training_file"],
                             "metadata": body.get("metadata")})

    return app


def upload_and_token(http: TestClient, data: Path) -> tuple[str, str]:
    token = csrf_of(http.get("/new").text)
    uploaded = http.post("/new/upload", headers={"X-CSRF-Token": token},
                         files={"file": ("train.jsonl", data.read_bytes())},
                         data={"purpose": "fine-tune"}).json()
    return token, uploaded["id"]


def test_a_cloud_run_started_from_the_page_is_created_and_listed(
        tmp_path: Path, tunelab_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", CLOUD_KEY)
    data, seen = dialogues(tmp_path / "train.jsonl"), []
    with serve_in_thread(openai_files_and_jobs(seen)) as port:
        tunelab_home.mkdir(parents=True, exist_ok=True)
        (tunelab_home / "providers.yaml").write_text(
            f"openai:\n  base_url: http://127.0.0.1:{port}/v1\n")
        with client() as http:
            token, file_id = upload_and_token(http, data)
            form = {"csrf": token, "file": file_id, "provider": "openai", "epochs": "2"}
            estimate = http.post("/new/dry-run", data=form)
            assert 'id="cloud-estimate"' in estimate.text and "× 2 epochs" in estimate.text
            assert seen == []  # the dry run sends nothing
            started = http.post("/new/start", data=form)
            assert started.status_code == 303 and "launch=" in started.headers["location"]
            for _ in range(200):  # the upload and create run on the background thread
                page = http.get(started.headers["location"]).text
                if 'id="launch-pending"' not in page:
                    break
                time.sleep(0.05)
            assert 'id="launch-job"' in page and "ftjob-page1" in page
            assert "ftjob-page1" in job_ids(http.get("/").text)
            assert CLOUD_KEY not in page + estimate.text
    assert [line for line in seen if line.startswith("POST")] == [
        "POST /v1/files", "POST /v1/fine_tuning/jobs"]
    with open_registry() as registry:
        job = registry.get_job("ftjob-page1")
    assert job.provider == "openai" and job.config.hyperparameters.n_epochs == 2
    assert job.config.estimated_cost["epochs"] == 2


def test_a_cloud_run_without_its_key_names_the_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with client() as http:
        token, file_id = upload_and_token(http, dialogues(tmp_path / "train.jsonl"))
        answer = http.post("/new/start", data={"csrf": token, "file": file_id,
                                               "provider": "openai"})
    assert answer.status_code == 400
    failure = re.search(r'<p class="failure" id="failure">([^<]*)</p>', answer.text).group(1)
    assert "OPENAI_API_KEY" in failure and "\n" not in failure
    with open_registry() as registry:
        assert registry.list_jobs() == []


def test_a_preset_with_a_cloud_provider_is_refused_not_ignored(
        tmp_path: Path, tunelab_home: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Presets are local LoRA settings: a cloud run on the page or on the command line that
    names one is told so before anything is priced or sent, instead of running without it."""
    monkeypatch.setenv("OPENAI_API_KEY", CLOUD_KEY)
    data = dialogues(tmp_path / "train.jsonl")
    with client() as http:
        token, file_id = upload_and_token(http, data)
        answer = http.post("/new/dry-run", data={"csrf": token, "file": file_id,
                                                 "provider": "openai", "preset": "standard"})
    assert answer.status_code == 400
    failure = re.search(r'<p class="failure" id="failure">([^<]*)</p>', answer.text).group(1)
    assert "--preset standard" in failure and "does not take presets" in failure
    capsys.readouterr()
    assert main(["train", str(data), "--provider", "openai", "--preset", "quick",
                 "--dry-run"]) == 2
    said = capsys.readouterr().err
    assert "--preset quick" in said and "leave out --preset" in said
    assert "Estimated" not in said  # refused before the data was priced


def test_a_page_start_is_refused_on_the_endpoints_own_earlier_shutdown_date(
        tmp_path: Path, tunelab_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The table says gpt-4o-mini lives until 2027-01-14; the endpoint says it was shut down
    on 2026-12-05. As `tunelab train` does, the page believes the endpoint and sends nothing."""
    from test_lifecycle import StandIn, home_pricing

    monkeypatch.setenv("OPENAI_API_KEY", CLOUD_KEY)
    monkeypatch.setenv("TUNELAB_TODAY", "2026-12-06")
    stand_in = StandIn({"gpt-4o-mini-2024-07-18": "2026-12-05"})
    with serve_in_thread(stand_in.app) as port:
        url = f"http://127.0.0.1:{port}/v1"
        home_pricing({"providers": {"openai": {"endpoints": ["https://api.openai.com/v1", url]}}})
        (tunelab_home / "providers.yaml").write_text(f"openai:\n  base_url: {url}\n")
        with client() as http:
            token, file_id = upload_and_token(http, dialogues(tmp_path / "train.jsonl"))
            answer = http.post("/new/start", data={
                "csrf": token, "file": file_id, "provider": "openai",
                "model": "gpt-4o-mini-2024-07-18"})
    assert answer.status_code == 400
    failure = re.search(r'<p class="failure" id="failure">([^<]*)</p>', answer.text).group(1)
    assert "was shut down on 2026-12-05" in failure
    assert stand_in.requests == ["GET /v1/models"]  # the lookup, then nothing sent
