"""`tunelab export`: a merged model loads with plain transformers and answers like the adapter."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tunelab.cli import main
from tunelab.registry import JobRecord, open_registry

PROMPTS = [
    [{"role": "user", "content": "Who are you?"}],
    [{"role": "system", "content": "You are Natasha, a warm coach."},
     {"role": "user", "content": "Мне кажется, я потерялась."}],
    [{"role": "user", "content": "Give me one word for courage."}],
]


def register_job(job_id: str, *, provider: str = "local", run_dir: Path | None = None) -> str:
    registry = open_registry()
    now = time.time()
    model = f"ft:SmolLM2-135M-Instruct:test:{job_id}"
    registry.create_job(JobRecord(id=job_id, provider=provider, status="succeeded",
                                  created_at=now, updated_at=now, base_model="SmolLM2",
                                  fine_tuned_model=model,
                                  run_dir=str(run_dir) if run_dir else None))
    registry.close()
    return model


@pytest.fixture(scope="module")
def trained_adapter(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> Path:
    """A LoRA adapter on the embedded model whose weights really change its answers."""
    import torch
    from peft import LoraConfig, get_peft_model

    from tunelab.local import model_source

    with pytest.MonkeyPatch.context() as patch:  # module scope runs before conftest's env
        patch.setenv("TUNELAB_CACHE_DIR", str(shared_cache))
        model = model_source.load_model(None)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16,
                                                  target_modules="all-linear"))
    torch.manual_seed(0)
    with torch.no_grad():  # a fresh LoRA B is zero; give it weights, as training would
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.02)
    folder = tmp_path_factory.mktemp("run") / "adapter"
    peft_model.save_pretrained(folder)
    return folder


@pytest.fixture
def local_job(trained_adapter: Path) -> str:
    job_id = "ftjob-export0001"
    register_job(job_id, run_dir=trained_adapter.parent)
    return job_id


@pytest.mark.slow
def test_merged_export_loads_with_transformers_and_answers_like_the_adapter(
        local_job: str, trained_adapter: Path, tmp_path: Path, capsys) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunelab.local.inference import ChatModel, load_chat_model

    out = tmp_path / "merged"
    assert main(["export", local_job, "--merge", "-o", str(out), "--json"]) == 0
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
def test_export_without_merge_copies_the_adapter_and_finds_jobs_by_model_name(
        trained_adapter: Path, tmp_path: Path, capsys) -> None:
    model_name = register_job("ftjob-export0002", run_dir=trained_adapter.parent)
    out = tmp_path / "adapter-copy"
    assert main(["export", model_name, "-o", str(out)]) == 0
    assert "exported adapter of ftjob-export0002" in capsys.readouterr().out
    copied = sorted(path.name for path in out.iterdir())
    assert copied == sorted(path.name for path in trained_adapter.iterdir())


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
