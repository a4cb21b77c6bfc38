"""The registry: migrations from a blank database, and the job round trip."""

from __future__ import annotations

import sqlite3
import time

import pytest

from tunelab.config import TrainConfig
from tunelab.errors import NotFoundError
from tunelab.registry import SERVER, Checkpoint, JobRecord, open_registry
from tunelab.registry.migrations import MIGRATIONS, current_version, migrate


def test_migrations_run_from_blank_and_are_idempotent(tmp_path):
    conn = sqlite3.connect(tmp_path / "r.sqlite")
    assert current_version(conn) == 0
    assert migrate(conn) == MIGRATIONS[-1][0]
    assert migrate(conn) == MIGRATIONS[-1][0]
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"jobs", "events", "metrics", "files", "checkpoints"} <= tables


def test_migration_numbers_are_append_only():
    numbers = [number for number, _ in MIGRATIONS]
    assert numbers == list(range(1, len(numbers) + 1))


def test_job_events_metrics_round_trip():
    with open_registry() as registry:
        now = time.time()
        registry.create_job(JobRecord(id="ftjob-1", provider="local", status="queued",
                                      created_at=now, updated_at=now,
                                      config=TrainConfig(epochs=1)))
        registry.add_event("ftjob-1", "started")
        registry.add_event("ftjob-1", "step 1", type="metrics",
                           data={"step": 1, "train_loss": 2.0})
        registry.add_metrics("ftjob-1", 1, {"train_loss": 2.0})
        registry.add_metrics("ftjob-1", 1, {"valid_loss": 1.5})
        job = registry.update_job("ftjob-1", status="succeeded", fine_tuned_model="ft:x:y:1")
        assert job.finished_at is not None and job.config == TrainConfig(epochs=1)
        assert [e.seq for e in registry.list_events("ftjob-1")] == [1, 2]
        assert [e.message for e in registry.list_events("ftjob-1", after=1)] == ["step 1"]
        assert registry.list_metrics("ftjob-1") == [{"step": 1, "train_loss": 2.0,
                                                     "valid_loss": 1.5}]
        assert registry.find_job_by_model("ft:x:y:1").id == "ftjob-1"
        registry.upsert_checkpoint(Checkpoint("ftjob-1", "step-1", "latest", now, step=1))
        assert [c.name for c in registry.list_checkpoints("ftjob-1")] == ["step-1"]


def test_unknown_job_names_the_fix():
    with open_registry() as registry, pytest.raises(NotFoundError, match="tunelab jobs list"):
        registry.get_job("nope")


def job(job_id: str, created_at: float, **fields) -> JobRecord:
    return JobRecord(id=job_id, provider="local", status="queued", created_at=created_at,
                     updated_at=created_at, **fields)


def test_seq_orders_jobs_created_in_the_same_instant():
    with open_registry() as registry:
        for job_id in ("ftjob-b", "ftjob-a", "ftjob-c"):
            registry.create_job(job(job_id, 1000.0, origin=SERVER))
        registry.create_job(job("ftjob-cli", 1000.0))
        assert [j.id for j in registry.list_jobs()] == ["ftjob-cli", "ftjob-c", "ftjob-a",
                                                       "ftjob-b"]
        assert registry.job_ids(origin=SERVER) == ["ftjob-b", "ftjob-a", "ftjob-c"]
        registry.update_job("ftjob-a", status="running")
        assert registry.job_ids(origin=SERVER, statuses=("running",)) == ["ftjob-a"]
        assert [registry.get_job(i).seq for i in ("ftjob-b", "ftjob-a")] == [1, 2]


def test_server_fields_round_trip_and_stay_null_when_absent():
    with open_registry() as registry:
        registry.create_job(job("ftjob-s", 1.0, origin=SERVER, metadata={"team": "coach"},
                                hyperparameters={"n_epochs": 2}))
        registry.create_job(job("ftjob-plain", 2.0))
        served = registry.get_job("ftjob-s")
        assert served.metadata == {"team": "coach"} and served.hyperparameters == {"n_epochs": 2}
        plain = registry.get_job("ftjob-plain")
        assert plain.metadata is None and plain.hyperparameters is None and plain.origin is None


def test_transition_changes_a_job_only_from_the_given_statuses():
    with open_registry() as registry:
        registry.create_job(job("ftjob-t", 1.0))
        claimed = registry.transition("ftjob-t", ("queued",), status="running")
        assert claimed is not None and claimed.status == "running"
        assert registry.transition("ftjob-t", ("queued",), status="running") is None
        cancelled = registry.transition("ftjob-t", ("queued", "running"), status="cancelled")
        assert cancelled.finished_at is not None
        assert registry.transition("ftjob-t", ("queued", "running"), status="cancelled") is None
        assert registry.transition("ftjob-none", ("queued",), status="running") is None


def test_files_are_listed_per_endpoint_newest_first():
    with open_registry() as registry:
        for index, (endpoint, purpose) in enumerate([(SERVER, "fine-tune"), (SERVER, "batch"),
                                                     ("https://api.x/v1", "fine-tune")]):
            registry.record_file(file_id=f"file-{index}", provider="local", endpoint=endpoint,
                                 sha256="0" * 64, filename=f"{index}.jsonl", size=index,
                                 purpose=purpose, created_at=100.0 + index)
        assert [f.id for f in registry.list_files(SERVER)] == ["file-1", "file-0"]
        assert [f.id for f in registry.list_files(SERVER, purpose="batch")] == ["file-1"]
        found = registry.find_file(SERVER, "file-0")
        assert found is not None and found.status == "processed" and found.bytes == 0
        assert registry.find_file(SERVER, "file-2") is None
        registry.forget_file(SERVER, "file-0")
        assert registry.find_file(SERVER, "file-0") is None
