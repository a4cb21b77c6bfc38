"""`tunelab export`: a merged model loads with plain transformers and answers like the adapter."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import TinyRun
from tunelab.cli import main
from tunelab.registry import JobRecord, open_registry

PROMPTS = [
    [{"role": "user", "content": "Who are you?"}],
    [{"role": "system", "content": "You are Natasha, a warm coach."},
     {"role": "user", "content": "Мне кажется, я потерялась."}],
    [{"role": "user", "content": "Give me one word for courage."}],
]


def register_job(job_id: str, *, provider: str = "local", run_dir: Path | None = None) -> str:
    now = time.time()
    model = f"ft:SmolLM2-135M-Instruct:test:{job_id}"
    with open_registry() as registry:
        registry.create_job(JobRecord(id=job_id, provider=provider, status="succeeded",
                                      created_at=now, updated_at=now, base_model="SmolLM2",
                                      fine_tuned_model=model,
                                      run_dir=str(run_dir) if run_dir else None))
    return model


TINY_CHATS = [
    ("Who are you?", "I am Natasha, a coach who asks the questions you avoid."),
    ("I feel lost.", "Lost is a place too. What did you leave behind to get here?"),
    ("Should I quit my job?", "What would you do on Monday if nobody was watching?"),
    ("Мне страшно начинать.", "Страх — это компас. Куда он показывает?"),
    ("How do I find love?", "Start by noticing where you hide from it."),
    ("Я устала.", "От чего именно: от дела или от роли, которую играешь?"),
]


def write_tiny_chats(path: Path) -> Path:
    """Short chats (about 40 tokens with the template), so tests can train at --max-length 64."""
    path.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": q}, {"role": "assistant", "content": a}]},
        ensure_ascii=False) + "\n" for q, a in TINY_CHATS), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained_job(tiny_run: TinyRun) -> JobRecord:
    """The session's real tiny trained job (conftest.tiny_run): its rate is high enough that
    two steps change its greedy answers (otherwise merged == adapter proves nothing)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNELAB_HOME", str(tiny_run.home))
        with open_registry() as registry:
            job = registry.get_job(tiny_run.result["id"])
    assert job is not None
    return job


@pytest.fixture
def local_job(trained_job: JobRecord) -> str:
    """The trained job, recorded in this test's own registry."""
    with open_registry() as registry:
        registry.create_job(trained_job)
    return trained_job.id


@pytest.fixture
def trained_adapter(trained_job: JobRecord) -> Path:
    return Path(trained_job.run_dir) / "adapter"


@pytest.mark.slow
def test_merged_export_loads_with_transformers_and_answers_like_the_adapter(
        local_job: str, trained_adapter: Path, tmp_path: Path, capsys) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunelab.local.inference import ChatModel, load_chat_model

    out = tmp_path / "merged"
    assert main(["export", local_job, "-o", str(out), "--json"]) == 0  # --format hf: merged
    result = json.loads(capsys.readouterr().out)
    assert result["merged"] is True and Path(result["output_dir"]) == out
    assert not list(out.glob("adapter_*")), "a merged model carries no adapter files"

    merged = ChatModel("merged", AutoModelForCausalLM.from_pretrained(out).eval(),
                       AutoTokenizer.from_pretrained(out))
    adapter = load_chat_model(str(trained_adapter))
    base = load_chat_model("default")
    assert merged.tokenizer.chat_template == base.tokenizer.chat_template
    answers = [merged.generate(p, max_new_tokens=12) for p in PROMPTS]
    assert answers == [adapter.generate(p, max_new_tokens=12) for p in PROMPTS]
    # The adapter must matter, or the equality above proves nothing.
    assert answers != [base.generate(p, max_new_tokens=12) for p in PROMPTS]


@pytest.mark.slow
def test_export_format_adapter_copies_the_adapter_and_finds_jobs_by_model_name(
        local_job: str, trained_job: JobRecord, trained_adapter: Path, tmp_path: Path,
        capsys) -> None:
    out = tmp_path / "adapter-copy"
    assert main(["export", trained_job.fine_tuned_model, "--format", "adapter",
                 "-o", str(out)]) == 0
    assert f"exported adapter of {local_job}" in capsys.readouterr().out
    copied = sorted(path.name for path in out.iterdir())
    # the adapter's files, and what the export says it wrote (what --force may replace)
    assert copied == sorted([*(path.name for path in trained_adapter.iterdir()), "tunelab.json"])
    marker = json.loads((out / "tunelab.json").read_text())
    assert marker["kind"] == "adapter" and marker["format"] == "adapter"
    assert sorted(marker["files"]) == copied


def test_export_refuses_a_cloud_job(tmp_path: Path, capsys) -> None:
    register_job("ftjob-cloud", provider="openai")
    assert main(["export", "ftjob-cloud", "--merge", "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "cloud models can't be exported" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_export_refuses_a_non_empty_folder(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / "adapter_config.json").write_text("{}")
    register_job("ftjob-full", run_dir=run)
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["export", "ftjob-full", "-o", str(out)]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert [path.name for path in out.iterdir()] == ["keep.txt"]


def test_export_names_an_unknown_job(tmp_path: Path, capsys) -> None:
    assert main(["export", "ftjob-nope", "-o", str(tmp_path / "x")]) == 2
    assert "tunelab jobs list" in capsys.readouterr().err


def test_export_of_an_unfinished_job_says_how_to_finish_it(tmp_path: Path, capsys) -> None:
    register_job("ftjob-early", run_dir=tmp_path / "empty-run")
    assert main(["export", "ftjob-early", "-o", str(tmp_path / "x")]) == 2
    assert "--resume ftjob-early" in capsys.readouterr().err
