"""A LoRA job and a --full job, each through every door that loads weights: `tunelab serve`
chat, `tunelab chat`, `compare base JOB` and `export`. Real tiny runs on the embedded model.

The --full case is the bug this guards: its run folder holds a training config.json, and
serve once loaded that folder as a model and answered 500.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from conftest import SYSTEM, TRAIN, VALID, TinyRun, copy_registry, write_chats
from test_inference import one_torch_thread  # noqa: F401 (an autouse fixture, shared)
from tunelab.cli import main
from tunelab.local.weights import Kind, resolve
from tunelab.registry.metrics import VALID_LOSS

pytestmark = pytest.mark.slow

KEY = "weights-e2e-key"
PROMPT = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": TRAIN[0][0]}]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_cache, tiny_run: TinyRun) -> dict:
    """Two real runs in one TUNELAB_HOME: the session's tiny LoRA job (2 steps on
    conftest's persona) and 2 --full steps on the same persona, rates high enough to move
    the tuned answers."""
    root = tmp_path_factory.mktemp("weights")
    copy_registry(tiny_run.home, root / "home")  # the LoRA job, recorded here too
    config = root / "tiny.json"  # what has no flag: no samples after training, no checkpoints
    config.write_text(json.dumps({"max_samples": 0, "save_every": None}), encoding="utf-8")
    argv = ["train", str(write_chats(root / "train.jsonl", TRAIN)), "--validation-file",
            str(write_chats(root / "valid.jsonl", VALID)), "--config", str(config),
            "--max-steps", "2", "--batch-size", "2", "--max-length", "96",
            "--precision", "fp32", "--seed", "0", "--json", "--yes",
            "--full", "--learning-rate", "1e-4"]
    with pytest.MonkeyPatch.context() as patch:  # module scope runs before conftest's env
        for name, value in {"TUNELAB_HOME": root / "home", "TUNELAB_CACHE_DIR": shared_cache,
                            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}.items():
            patch.setenv(name, str(value))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(argv) == 0, out.getvalue()
    full = json.loads(out.getvalue().strip().splitlines()[-1])
    assert full["status"] == "succeeded"
    return {"home": root / "home", "lora": tiny_run.result, "full": full}


@pytest.fixture(params=["lora", "full"])
def job(request, trained, tunelab_home, monkeypatch) -> dict:
    """One of the two jobs, with TUNELAB_HOME pointing at the home that trained it."""
    monkeypatch.setenv("TUNELAB_HOME", str(trained["home"]))
    return {**trained[request.param], "kind": request.param}


def _json(capsys, argv: list[str]) -> dict:
    code = main([*argv, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out.strip().splitlines()[-1])


def test_the_resolver_tells_the_two_jobs_apart(job) -> None:
    weights = resolve(job["fine_tuned_model"])
    run = Path(job["run_dir"])
    if job["kind"] == "lora":
        assert (weights.kind, weights.path) == (Kind.ADAPTER, run / "adapter")
    else:
        assert (weights.kind, weights.path) == (Kind.FULL, run / "model")
    assert weights.job_id == job["id"]
    by_folder = resolve(str(run))
    assert (by_folder.kind, by_folder.path, by_folder.job_id) == (
        weights.kind, weights.path, weights.job_id)


def test_serve_chats_with_the_job_by_its_model_name_only(job, tmp_path) -> None:
    """Over HTTP a job answers to the name GET /v1/models lists, after --full too (its run
    folder's config.json is a training config: loading that once answered 500). The job id
    and the run folder are the CLI's names for it (test_resolve_* above); a client naming
    them, or any folder, gets the one 404 a name the server does not list gets."""
    from fastapi.testclient import TestClient

    from tunelab.server import ServeSettings, create_app

    app = create_app(ServeSettings(api_key=KEY, run_worker=False))
    with TestClient(app, headers={"Authorization": f"Bearer {KEY}"}) as client:
        listed = client.get("/v1/models").json()["data"]
        assert job["fine_tuned_model"] in [model["id"] for model in listed]
        reply = client.post("/v1/chat/completions", json={
            "model": job["fine_tuned_model"], "messages": PROMPT, "max_tokens": 4,
            "temperature": 0})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["model"] == job["fine_tuned_model"]
        assert 0 < body["usage"]["completion_tokens"] <= 4
        (tmp_path / "config.json").write_text("{}")
        for name in (job["id"], job["run_dir"], str(tmp_path)):
            reply = client.post("/v1/chat/completions", json={
                "model": name, "messages": PROMPT, "max_tokens": 4})
            assert reply.status_code == 404, reply.text
            assert reply.json()["error"]["code"] == "model_not_found"


def test_chat_and_test_answer_with_the_job(job, capsys) -> None:
    chatted = _json(capsys, ["chat", job["fine_tuned_model"], "-m", TRAIN[0][0],
                             "--max-new-tokens", "4"])
    assert chatted["model"]["provider"] == "local" and chatted["model"]["job_id"] == job["id"]
    assert chatted["system"] == SYSTEM  # the persona it was trained under
    assert 0 < chatted["completion_tokens"] <= 4
    tested = _json(capsys, ["test", job["run_dir"], "--system", SYSTEM,
                            "--max-new-tokens", "4"])  # a run folder names its weights
    assert tested["results"] and all(row["completion_tokens"] <= 4
                                     for row in tested["results"])


def test_compare_base_with_the_job(job, capsys) -> None:
    compared = _json(capsys, ["compare", "base", job["id"], "--limit", "1",
                              "--max-new-tokens", "4", "--no-cache"])
    assert compared["eval_file"].endswith("valid.jsonl")  # the job's own validation file
    base, tuned = compared["models"]
    assert (base["label"], tuned["label"]) == ("base", job["id"])
    assert base["spec"]["provider"] == tuned["spec"]["provider"] == "local"
    losses = [model["metrics"][VALID_LOSS] for model in (base, tuned)]
    # the tuned weights were loaded, not the base again (two steps at a high rate move the
    # loss, in either direction: this guards which weights load, not how well they learn)
    assert losses[1] != pytest.approx(losses[0], rel=1e-3)


def test_export_then_load_the_export_by_its_folder(job, capsys, tmp_path) -> None:
    from tunelab.local.inference import load_chat_model

    out = tmp_path / "exported"
    result = _json(capsys, ["export", job["id"], "--merge", "-o", str(out)])
    expected = {"lora": Kind.MERGED, "full": Kind.FULL}[job["kind"]]
    assert result["kind"] == expected.value and result["merged"] == (job["kind"] == "lora")
    assert not list(out.glob("adapter_*"))
    exported = resolve(str(out))
    assert (exported.kind, exported.job_id) == (expected, job["id"])
    assert exported.base == resolve("base", job=job["id"]).name
    answer = load_chat_model(str(out)).generate(PROMPT, max_new_tokens=6)
    assert answer == load_chat_model(job["id"]).generate(PROMPT, max_new_tokens=6)
