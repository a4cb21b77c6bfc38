"""Local inference and the local provider: base models, run adapters, the registry side."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from tunelab.errors import DataError, NotFoundError, UsageError
from tunelab.providers import get_provider
from tunelab.providers.base import ChatOptions
from tunelab.registry import JobRecord, open_registry

MESSAGES = [{"role": "system", "content": "Ты Наташа, коуч."},
            {"role": "user", "content": "Я потерялась."}]
EXAMPLE = {"messages": [*MESSAGES, {"role": "assistant", "content": "Нарисуй новую карту."}]}


def _register(job_id: str, run_dir: Path | None, status: str = "succeeded",
              provider: str = "local") -> None:
    now = time.time()
    with open_registry() as registry:
        registry.create_job(JobRecord(id=job_id, provider=provider, status=status,
                                      created_at=now, updated_at=now, base_model="default",
                                      fine_tuned_model=f"ft:SmolLM2-135M-Instruct::{job_id}",
                                      run_dir=str(run_dir) if run_dir else None))


# the provider's registry side (no model) ------------------------------------------------
def test_upload_copies_into_home_and_reuses_identical_bytes(tmp_path, tunelab_home):
    data = tmp_path / "train.jsonl"
    data.write_text('{"messages": []}\n', encoding="utf-8")
    local = get_provider("local")
    first, again = local.upload(data), local.upload(data)
    assert (first.reused, again.reused) == (False, True) and first.id == again.id
    copy = tunelab_home / "files" / f"{first.id}.jsonl"
    assert copy.read_bytes() == data.read_bytes()
    with pytest.raises(UsageError):
        local.upload(tmp_path / "missing.jsonl")


def test_jobs_and_events_come_from_the_registry(tmp_path):
    _register("ftjob-one", tmp_path)
    _register("ftjob-cloud", None, provider="openai")
    with open_registry() as registry:
        registry.add_event("ftjob-one", "step 1")
        registry.add_event("ftjob-one", "step 2")
    local = get_provider("local")
    assert [job.id for job in local.list_jobs()] == ["ftjob-one"]
    assert local.get_job("ftjob-one").fine_tuned_model.endswith("ftjob-one")
    assert [e.message for e in local.list_events("ftjob-one", after="1")] == ["step 2"]
    with pytest.raises(NotFoundError, match="openai"):
        local.get_job("ftjob-cloud")


def test_cancel_marks_an_orphaned_job_and_asks_a_live_one_to_stop(tmp_path):
    orphan, live = tmp_path / "orphan", tmp_path / "live"
    orphan.mkdir(), live.mkdir()
    (live / "train.pid").write_text(str(os.getpid()))
    _register("ftjob-orphan", orphan, status="running")
    _register("ftjob-live", live, status="running")
    local = get_provider("local")
    assert local.cancel("ftjob-orphan").status == "cancelled"
    # a live run's cancel is recorded at once; the run stops itself after its step,
    # checkpointed (here it is only asked to)
    cancelled = local.cancel("ftjob-live")
    assert (cancelled.status, cancelled.native_status) == ("cancelled", "cancelling")
    assert (live / "cancel.request").is_file()


# real models ---------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # Decoding one sequence of a 135M model is latency-bound: on a shared 2-core box two
    # OpenMP threads spin against other processes (measured 5x slower than one thread).
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def adapter_run(tmp_path_factory, random_lora):
    """A run folder in the trainer's layout holding a LoRA whose weights are random, so it
    answers differently from its base without the cost of training."""
    run_dir = tmp_path_factory.mktemp("runs") / "ftjob-perturbed"
    run_dir.mkdir()
    shutil.copytree(random_lora, run_dir / "adapter")
    return run_dir


@pytest.mark.slow
def test_greedy_and_seeded_answers_repeat(adapter_run):
    from tunelab.local.inference import load_chat_model

    base = load_chat_model("default")
    assert base.generate(MESSAGES, max_new_tokens=6) == base.generate(MESSAGES, max_new_tokens=6)
    sampled = [base.generate(MESSAGES, max_new_tokens=6, temperature=1.0, top_p=0.9, seed=7)
               for _ in range(2)]
    assert sampled[0] == sampled[1]


@pytest.mark.slow
def test_an_adapter_changes_answers_and_loss_but_never_its_base(adapter_run):
    from tunelab.local.inference import load_chat_model

    base = load_chat_model("default")
    before, base_loss = base.generate(MESSAGES, max_new_tokens=6), base.validation([EXAMPLE]).loss
    tuned = load_chat_model(str(adapter_run))  # a run folder works as well as its adapter/
    assert tuned is load_chat_model(str(adapter_run / "adapter"))
    assert tuned.validation([EXAMPLE]).loss != pytest.approx(base_loss)
    assert base.generate(MESSAGES, max_new_tokens=6) == before
    assert base.validation([EXAMPLE]).loss == pytest.approx(base_loss)
    with pytest.raises(DataError, match="no assistant tokens"):
        base.validation([{"messages": MESSAGES}])


@pytest.mark.slow
def test_local_provider_chats_with_a_job_by_id_or_name(adapter_run):
    _register("ftjob-perturbed", adapter_run)
    local = get_provider("local")
    by_id = local.chat("ftjob-perturbed", MESSAGES, ChatOptions(max_tokens=5))
    by_name = local.chat("ft:SmolLM2-135M-Instruct::ftjob-perturbed", MESSAGES,
                         ChatOptions(max_tokens=5, temperature=0))
    assert by_id.text == by_name.text
    assert 0 < by_id.completion_tokens <= 5 and by_id.prompt_tokens > 10
