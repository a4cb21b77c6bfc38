"""End to end over real HTTP: `tunelab train --provider openai --base-url ...` against a
`tunelab serve` subprocess training the embedded model, through a proxy that injects 429s,
500s, resets and lost answers. One upload per file, one job, a finished watch with train and
validation losses, an auto-test, and the canary key nowhere on disk, in logs or in output.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import openai
import pytest

from faultproxy import FaultPlan, FaultProxy, dialogues, free_socket, serve_process
from tunelab.cli import main
from tunelab.registry import open_registry

CANARY = "sk-canary-e2e-5f1c0ffee9d2b7a4"
MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"



@pytest.fixture
def served(tmp_path: Path, shared_cache: Path):
    """`tunelab serve` in a subprocess with its own home; yields (port, home, log path)."""
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    home, log = tmp_path / "server-home", tmp_path / "server.log"
    env = {**os.environ, "TUNELAB_HOME": str(home), "TUNELAB_CACHE_DIR": str(shared_cache),
           "TUNELAB_SERVE_API_KEY": CANARY}
    env.pop("OPENAI_API_KEY", None)
    with serve_process(["--port", str(port), "--max-steps", "3", "--max-length", "64"],
                       base_url=f"http://127.0.0.1:{port}", env=env, log=log):
        yield port, home, log


def files_containing(root: Path, needle: bytes) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file() and needle in path.read_bytes()]


@pytest.mark.slow
def test_train_through_a_faulty_network_against_tunelab_serve(
        served, tmp_path: Path, tunelab_home: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    port, server_home, server_log = served
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    train = dialogues(tmp_path / "train.jsonl")
    valid = dialogues(tmp_path / "valid.jsonl", count=10)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("How do I start?\n", encoding="utf-8")
    plan = FaultPlan(rate_429=0.1, rate_500=0.1, rate_reset=0.05, rate_drop_answer=0.1,
                     seed=11, script={"POST /v1/files": ["drop_answer"],
                                      "POST /v1/fine_tuning/jobs": ["drop_answer"]})
    with FaultProxy(port, plan) as proxy:
        code = main(["train", str(train), "--provider", "openai", "--base-url",
                     f"http://127.0.0.1:{proxy.port}/v1", "--model", MODEL, "--epochs", "1",
                     "--suffix", "e2e", "--yes", "--interval", "0.5", "--json",
                     "--validation-file", str(valid),
                     "--prompts", str(prompts)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert result["status"] == "succeeded"
    assert result["fine_tuned_model"] == f"ft:SmolLM2-135M-Instruct:e2e:{result['id']}" \
        or result["fine_tuned_model"].endswith(f":e2e:{result['id']}")
    assert result["samples"] and not result["samples"][0]["answer"].startswith("(no answer")
    assert sum(plan.log[name] for name in ("429", "500", "reset", "drop_answer")) >= 4

    client = openai.OpenAI(api_key=CANARY, base_url=f"http://127.0.0.1:{port}/v1")
    assert len(client.files.list().data) == 2  # training and validation, once each
    assert [job.id for job in client.fine_tuning.jobs.list()] == [result["id"]]

    with open_registry() as registry:
        record = registry.get_job(result["id"])
        metrics = registry.list_metrics(result["id"])
    assert record.provider == "openai" and record.status == "succeeded"
    assert record.fine_tuned_model == result["fine_tuned_model"]
    assert [row["step"] for row in metrics] == [1, 2, 3]
    assert all("train_loss" in row for row in metrics) and "valid_loss" in metrics[-1]

    secret = CANARY.encode()
    assert CANARY not in captured.out + captured.err
    assert files_containing(tunelab_home, secret) == []
    assert files_containing(server_home, secret) == []
    assert secret not in server_log.read_bytes()
