"""Did fine-tuning help? `compare base JOB` on a real tiny local run, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import SYSTEM, TINY_STEPS, VALID
from test_inference import one_torch_thread  # noqa: F401 (an autouse fixture, shared)
from tunelab.cli import main

pytestmark = pytest.mark.slow

# The session's tiny job (conftest.tiny_run): a real 2-step LoRA run on the persona, stopped
# inside its first epoch, at a max length that cuts the first validation example inside its
# answer: the validation loss must score it whole all the same, as compare does.
MAX_STEPS = TINY_STEPS


@pytest.fixture
def job(tiny_job: dict) -> dict:
    """The trained job, in this test's own (fresh) TUNELAB_HOME: a clean answer cache."""
    return tiny_job


def _json(capsys, argv: list[str]) -> dict:
    code = main([*argv, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_compare_base_with_the_tuned_run_then_rerun_from_the_cache(job, capsys, tmp_path):
    report = tmp_path / "report.html"
    argv = ["compare", "base", job["id"], "--max-new-tokens", "8", "--report", str(report)]
    first = _json(capsys, argv)
    assert first["eval_file"].endswith("valid.jsonl")  # the job's validation file
    base, tuned = first["models"]
    assert base["label"] == "base" and tuned["label"] == job["id"]
    assert base["spec"]["provider"] == tuned["spec"]["provider"] == "local"
    for model in (base, tuned):
        assert len(model["answers"]) == len(VALID)
        assert all(0 < a["completion_tokens"] <= 8 for a in model["answers"])
        assert model["metrics"]["cost_per_1k_requests"] == 0.0
        assert model["metrics"]["perplexity"] == pytest.approx(2.718281828 **
                                                               model["metrics"]["valid_loss"])
        assert 0 < model["metrics"]["valid_mean_token_accuracy"] < 1
    # two steps on the persona already lower its held-out loss
    assert tuned["metrics"]["valid_loss"] < base["metrics"]["valid_loss"]

    html = report.read_text(encoding="utf-8")
    assert "base" in html and job["id"] in html and VALID[0][1] in html
    assert html.count("data:image/png;base64,") == 1  # the tuned job's loss curve

    again = _json(capsys, argv)
    assert again["cache"] == {"hits": 2 * len(VALID) + 2, "misses": 0}  # answers + losses
    assert [m["answers"] for m in again["models"]] == [
        [{**a, "cached": True} for a in m["answers"]] for m in first["models"]]


def test_train_and_compare_give_one_validation_loss_for_one_file(job, capsys):
    """The run stopped inside its epoch still ends with a validation loss, and compare
    measures the same adapter on the same file to the same number (within 0.1%)."""
    assert job["metrics"]["steps"] == MAX_STEPS
    trained_loss = job["metrics"]["valid_loss"]
    assert trained_loss is not None and job["metrics"]["full_valid_loss"] == trained_loss
    rows = [json.loads(line) for line in
            (Path(job["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows if "valid_loss" in row] == [MAX_STEPS]
    compared = _json(capsys, ["compare", job["id"], "--max-new-tokens", "1"])
    [tuned] = compared["models"]
    assert tuned["metrics"]["valid_loss"] == pytest.approx(trained_loss, rel=1e-3)
    assert tuned["metrics"]["valid_mean_token_accuracy"] == pytest.approx(
        job["metrics"]["valid_mean_token_accuracy"], abs=0.025)  # one token in ~50


def test_test_and_chat_one_shot_with_the_tuned_run(job, capsys, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Я потерялась.\n", encoding="utf-8")
    tested = _json(capsys, ["test", job["id"], "--prompts", str(prompts), "--system", SYSTEM,
                            "--max-new-tokens", "4"])
    assert [row["prompt"] for row in tested["results"]] == ["Я потерялась."]
    chatted = _json(capsys, ["chat", job["fine_tuned_model"], "-m", "Привет",
                             "--max-new-tokens", "4"])
    assert chatted["model"]["provider"] == "local" and chatted["completion_tokens"] <= 4
    assert main(["chat", "local:default", "-m", "Привет", "--max-new-tokens", "4"]) == 0
