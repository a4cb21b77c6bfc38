"""The one door (tunelab.runs): every face gets the same checks in the same order.

The cloud faces here talk to a recording stand-in over real HTTP, so "nothing was sent" is
what the stand-in saw, not what a mock was told.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from faultproxy import dialogues, serve_in_thread
from tunelab import runs
from tunelab.cli.app import main
from tunelab.config import resolve_config
from tunelab.errors import UsageError
from tunelab.registry import open_registry
from tunelab.runs.checks import CostEstimate


class Recording:
    """A reporter that records what the door asked, in order."""

    def __init__(self, *, refuse: bool = False) -> None:
        self.refuse, self.said = refuse, []

    def event(self, event: dict) -> None:
        self.said.append(("event", event.get("type")))

    def step(self, step: runs.LaunchStep) -> None:
        self.said.append(("step", step.name))

    def warn(self, message: str) -> None:
        self.said.append(("warn", message))

    def confirm_cost(self, estimate: CostEstimate) -> None:
        self.said.append(("cost", estimate.dollars))
        if self.refuse:
            raise UsageError("training not started", fix="lower --epochs")


@pytest.fixture
def endpoint(tunelab_home: Path):
    """An OpenAI-compatible stand-in that records every request it gets; a profile `lab`
    points at it. The profile can chat and cannot fine-tune."""
    seen: list[str] = []
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST", "DELETE"])
    async def anything(request: Request, path: str) -> JSONResponse:
        seen.append(f"{request.method} /{path}")
        return JSONResponse({"error": {"message": "not here"}}, status_code=404)

    with serve_in_thread(app) as port:
        tunelab_home.mkdir(parents=True, exist_ok=True)
        (tunelab_home / "providers.yaml").write_text(
            f"lab:\n  base_url: http://127.0.0.1:{port}/v1\n  key_env: LAB_KEY\n"
            "  capabilities: {fine_tuning: false, chat: true, files: true}\n")
        yield seen


def _request(tmp_path: Path, provider: str, **labels: str) -> runs.RunRequest:
    config = resolve_config(flags={"train_file": str(dialogues(tmp_path / "t.jsonl")),
                                   "model": "m"})
    return runs.RunRequest(config=config, target=runs.Target(provider), labels=labels,
                           intent=runs.Intent(wait=False))


def test_a_chat_only_endpoint_is_refused_before_pricing_or_upload(
        endpoint: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_KEY", "sk-lab")
    reporter = Recording()
    with pytest.raises(UsageError, match="no fine-tuning"):
        runs.start_many([_request(tmp_path, "lab", trial="0"),
                         _request(tmp_path, "lab", trial="1")], reporter)
    assert reporter.said == []  # no check, no price, no question
    assert endpoint == []  # and not one request reached the endpoint


def test_a_cloud_sweep_on_a_chat_only_endpoint_sends_nothing(
        endpoint: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LAB_KEY", "sk-lab")
    train, valid = dialogues(tmp_path / "t.jsonl"), dialogues(tmp_path / "v.jsonl", 4)
    code = main(["sweep", str(train), "--validation-file", str(valid), "--provider", "lab",
                 "--model", "m", "--learning-rate", "1,2", "--yes"])
    assert code == 2
    captured = capsys.readouterr()
    assert "no fine-tuning" in captured.err and "Estimated" not in captured.err
    assert endpoint == []
    with open_registry() as registry:
        assert registry.list_jobs() == []


def test_a_refused_cost_uploads_nothing(tmp_path: Path, tunelab_home: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The order of the steps: checked, then (with the key) the cost question; a refusal
    there leaves no upload and no job. The endpoint is one that can fine-tune."""
    seen: list[str] = []
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def anything(request: Request, path: str) -> JSONResponse:
        seen.append(f"{request.method} /{path}")
        return JSONResponse({"object": "list", "data": []})

    with serve_in_thread(app) as port:
        tunelab_home.mkdir(parents=True, exist_ok=True)
        (tunelab_home / "providers.yaml").write_text(
            f"lab:\n  base_url: http://127.0.0.1:{port}/v1\n  key_env: LAB_KEY\n")
        monkeypatch.setenv("LAB_KEY", "sk-lab")
        reporter = Recording(refuse=True)
        with pytest.raises(UsageError, match="not started"):
            runs.start(_request(tmp_path, "lab"), reporter)
    assert [kind for kind, _ in reporter.said] == ["step", "cost"]
    assert not any(line.startswith("POST") for line in seen)  # no upload, no create
    with open_registry() as registry:
        assert registry.list_jobs() == []


def test_a_preset_on_a_cloud_target_is_refused_by_the_door(tmp_path: Path) -> None:
    config = resolve_config(preset="quick",
                            flags={"train_file": str(dialogues(tmp_path / "t.jsonl"))})
    with pytest.raises(UsageError, match="preset"):
        runs.start(runs.RunRequest(config=config, target=runs.Target("openai")), Recording())


def test_a_queued_local_job_gets_its_id_from_the_registry(tmp_path: Path) -> None:
    request = _request(tmp_path, "local", team="coach")
    job = runs.start(request, Recording()).job
    assert job is not None and job.id.startswith("ftjob-") and len(job.id) == 30
    assert (job.status, job.metadata) == ("queued", {"team": "coach"})
    cancelled, outcome = runs.cancel(job.id)
    assert (cancelled.status, outcome) == ("cancelled", "cancelled")
    assert runs.cancel(job.id)[1] == "finished"


def test_a_resume_queued_for_the_worker_needs_a_checkpoint(tmp_path: Path) -> None:
    job = runs.start(_request(tmp_path, "local"), Recording()).job
    runs.cancel(job.id)
    with open_registry() as registry:
        job = registry.get_job(job.id)
    with pytest.raises(Exception, match="no checkpoint"):
        runs.resume(job, reporter=Recording(), wait=False)


def test_the_door_loads_no_trainer_for_a_cloud_job() -> None:
    """torch and transformers load only when a local job runs: a cloud start or a cancel
    through the door starts fast."""
    import subprocess
    import sys

    code = ("import sys, tunelab.runs, tunelab.cli.train_run; "
            "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "[]"
