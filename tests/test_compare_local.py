"""Did fine-tuning help? `compare base JOB` on a real tiny local run, end to end."""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
from pathlib import Path

import pytest

from test_inference import one_torch_thread  # noqa: F401 (an autouse fixture, shared)
from tunelab.cli import main

pytestmark = pytest.mark.slow

SYSTEM = "Ты Наташа, коуч."
TRAIN = [
    ("Я потерялась.", "Потерялась? Значит, старая карта больше не ведёт. Нарисуй новую."),
    ("Как начать бизнес?", "С вопроса: чью боль ты хочешь снять? Деньги придут следом."),
    ("I feel stuck.", "Stuck is a door you keep pushing. Try pulling."),
    ("Он меня не слышит.", "А ты себя слышишь? Начни с этого."),
    ("Что такое осознанность?", "Это когда ты замечаешь, что опять бежишь, и останавливаешься."),
    ("I am afraid of change.", "Fear is excitement that forgot to breathe. Breathe."),
]
VALID = [
    ("Мне скучно жить.", "Скука — это голод души. Чем ты её кормишь?"),
    ("Why do I procrastinate?", "Because the task asks you to be someone new. Who?"),
]


def _write(path: Path, pairs: list[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"messages": [
        {"role": "system", "content": SYSTEM}, {"role": "user", "content": question},
        {"role": "assistant", "content": answer}]}, ensure_ascii=False) + "\n"
        for question, answer in pairs), encoding="utf-8")
    return path


# 6 examples in batches of 2 make 3 steps an epoch: 2 steps stop the run inside the epoch,
# and no --eval-every, so the only validation is the one every run ends with. A max length
# of 56 tokens cuts the first validation example inside its answer (81 tokens whole): the
# validation loss must score it whole all the same, as compare does.
MAX_STEPS, MAX_LENGTH = 2, 56


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_cache):
    """A real 2-step LoRA run of `tunelab train` on the embedded model, in its own
    TUNELAB_HOME (one torch thread: the autouse fixture runs first)."""
    root = tmp_path_factory.mktemp("trained")
    home = root / "home"
    config = root / "tiny.json"  # what has no flag: no samples after training, no checkpoints
    config.write_text(json.dumps({"max_samples": 0, "save_every": None}), encoding="utf-8")
    argv = ["train", str(_write(root / "train.jsonl", TRAIN)), "--validation-file",
            str(_write(root / "valid.jsonl", VALID)), "--config", str(config),
            "--max-steps", str(MAX_STEPS), "--batch-size", "2", "--max-length",
            str(MAX_LENGTH), "--lora-r", "4", "--learning-rate", "5e-3", "--precision", "fp32",
            "--seed", "0", "--json", "--yes"]
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:  # module scope runs before conftest's env
        for name, value in {"TUNELAB_HOME": home, "TUNELAB_CACHE_DIR": shared_cache,
                            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}.items():
            patch.setenv(name, str(value))
        with contextlib.redirect_stdout(out):
            assert main(argv) == 0
    result = json.loads(out.getvalue())
    assert result["status"] == "succeeded"
    return home, result


@pytest.fixture
def job(trained, tunelab_home) -> dict:
    """The trained job, in this test's own (fresh) TUNELAB_HOME: a clean answer cache."""
    home, result = trained
    tunelab_home.mkdir(parents=True, exist_ok=True)
    # sqlite's backup, not a file copy: the registry is in WAL mode, recent rows in -wal
    source = sqlite3.connect(home / "registry.sqlite")
    target = sqlite3.connect(tunelab_home / "registry.sqlite")
    source.backup(target)
    source.close(), target.close()
    return result


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
