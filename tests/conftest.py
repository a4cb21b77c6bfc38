"""Every test gets its own TUNELAB_HOME; converted models are cached once per session, and
one tiny trained job is shared by the tests that use a trained model without testing the
training (`tiny_run`, `tiny_job`)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One conversion of the embedded GGUF for the whole run (about 20 s), not one per test.
    path = Path(os.environ.get("TUNELAB_TEST_CACHE") or tmp_path_factory.mktemp("cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(autouse=True)
def tunelab_home(tmp_path: Path, shared_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("TUNELAB_HOME", str(home))
    monkeypatch.setenv("TUNELAB_CACHE_DIR", str(shared_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    # Lifecycle dates (OpenAI's wind-down) are compared with today: pin the clock so a test
    # means the same after 2027-01-06 as today. Tests about other days set their own.
    monkeypatch.setenv("TUNELAB_TODAY", "2026-12-02")
    for key in ("OPENAI_API_KEY", "MOONSHOT_API_KEY", "KIMI_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    return home


@pytest.fixture(scope="session")
def random_lora(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> Path:
    """A LoRA adapter folder on the embedded model with random weights: it answers differently
    from its base, without the cost of training."""
    import torch
    from peft import LoraConfig, get_peft_model

    from tunelab.local import model_source

    torch.manual_seed(0)
    with pytest.MonkeyPatch.context() as patch:  # runs before the per-test environment
        patch.setenv("TUNELAB_CACHE_DIR", str(shared_cache))
        patch.setenv("HF_HUB_OFFLINE", "1")
        base = model_source.load_model(None)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=64, init_lora_weights=False,
                                            target_modules=["q_proj", "v_proj"]))
    folder = tmp_path_factory.mktemp("lora") / "adapter"
    model.save_pretrained(folder)
    return folder


# One tiny trained job for the session --------------------------------------------------------
# A persona in Russian and English (6 training pairs, 2 held out). Tests that train
# themselves write it with `write_chats`.
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
# 6 examples in batches of 2 make 3 steps an epoch: 2 steps stop the run inside the epoch,
# and no --eval-every, so the only validation is the one every run ends with. A max length
# of 56 tokens cuts the first validation example inside its answer (81 tokens whole).
TINY_STEPS, TINY_MAX_LENGTH = 2, 56


def write_chats(path: Path, pairs: list[tuple[str, str]]) -> Path:
    """`pairs` as a .jsonl of system + user + assistant chats under the SYSTEM persona."""
    path.write_text("".join(json.dumps({"messages": [
        {"role": "system", "content": SYSTEM}, {"role": "user", "content": question},
        {"role": "assistant", "content": answer}]}, ensure_ascii=False) + "\n"
        for question, answer in pairs), encoding="utf-8")
    return path


@dataclass(frozen=True)
class TinyRun:
    home: Path  # the TUNELAB_HOME it was trained in: leave it as it is
    result: dict[str, Any]  # what `tunelab train --json` printed: id, run_dir, metrics, ...


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> TinyRun:
    """A real 2-step LoRA run of `tunelab train` on the embedded model (TRAIN, validated on
    VALID, fp32, seed 0, a final checkpoint, no sample answers), made once for the session.
    For tests of what a trained job is used for (compare, chat, test, serve, export); tests
    of training itself train their own. Use `tiny_job` in a test, `copy_registry` for a
    module's home; treat the run folder as read-only: every test shares it."""
    from tunelab.cli import main

    root = tmp_path_factory.mktemp("tiny-run")
    config = root / "tiny.json"  # what has no flag: no sample answers after training
    config.write_text(json.dumps({"max_samples": 0}), encoding="utf-8")
    argv = ["train", str(write_chats(root / "train.jsonl", TRAIN)), "--validation-file",
            str(write_chats(root / "valid.jsonl", VALID)), "--config", str(config),
            "--max-steps", str(TINY_STEPS), "--batch-size", "2", "--max-length",
            str(TINY_MAX_LENGTH), "--lora-r", "4", "--learning-rate", "5e-3",
            "--precision", "fp32", "--seed", "0", "--json", "--yes"]
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:  # session scope runs before the per-test env
        for name, value in {"TUNELAB_HOME": root / "home", "TUNELAB_CACHE_DIR": shared_cache,
                            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}.items():
            patch.setenv(name, str(value))
        with contextlib.redirect_stdout(out):
            code = main(argv)
    assert code == 0, out.getvalue()[-2000:]
    result = json.loads(out.getvalue().strip().splitlines()[-1])
    assert result["status"] == "succeeded"
    return TinyRun(root / "home", result)


def copy_registry(source_home: Path, target_home: Path) -> None:
    """`source_home`'s registry (jobs, events, metrics, checkpoints) as `target_home`'s,
    replacing what was there. sqlite's backup, not a file copy: the registry is in WAL mode,
    so recent rows may still be in -wal. Run folders stay where they are: the registry names
    them relative to its home, so each is linked into target_home/runs."""
    target_home.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(source_home / "registry.sqlite")) as source, \
            contextlib.closing(sqlite3.connect(target_home / "registry.sqlite")) as target:
        source.backup(target)
    if (source_home / "runs").is_dir():
        (target_home / "runs").mkdir(exist_ok=True)
        for run in (source_home / "runs").iterdir():
            link = target_home / "runs" / run.name
            if not link.exists():
                link.symlink_to(run, target_is_directory=True)


@pytest.fixture
def tiny_job(tiny_run: TinyRun, tunelab_home: Path) -> dict[str, Any]:
    """The session's tiny trained job, recorded in this test's own (fresh) TUNELAB_HOME: a
    clean answer cache and registry each time. What `tunelab train --json` printed for it."""
    copy_registry(tiny_run.home, tunelab_home)
    return tiny_run.result
