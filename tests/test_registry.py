"""The registry: migrations from a blank database, and the job round trip."""

from __future__ import annotations

import sqlite3
import time

import pytest

from tunelab.errors import NotFoundError
from tunelab.registry import Checkpoint, JobRecord, open_registry
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
    registry = open_registry()
    now = time.time()
    registry.create_job(JobRecord(id="ftjob-1", provider="local", status="queued",
                                  created_at=now, updated_at=now, config={"epochs": 1}))
    registry.add_event("ftjob-1", "started")
    registry.add_event("ftjob-1", "step 1", type="metrics", data={"step": 1, "loss": 2.0})
    registry.add_metrics("ftjob-1", 1, {"loss": 2.0})
    registry.add_metrics("ftjob-1", 1, {"val_loss": 1.5})
    job = registry.update_job("ftjob-1", status="succeeded", fine_tuned_model="ft:x:y:1")
    assert job.finished_at is not None and job.config == {"epochs": 1}
    assert [e.seq for e in registry.list_events("ftjob-1")] == [1, 2]
    assert [e.message for e in registry.list_events("ftjob-1", after=1)] == ["step 1"]
    assert registry.list_metrics("ftjob-1") == [{"step": 1, "loss": 2.0, "val_loss": 1.5}]
    assert registry.find_job_by_model("ft:x:y:1").id == "ftjob-1"
    registry.upsert_checkpoint(Checkpoint("ftjob-1", "step-1", "latest", now, step=1))
    assert [c.name for c in registry.list_checkpoints("ftjob-1")] == ["step-1"]


def test_unknown_job_names_the_fix():
    with pytest.raises(NotFoundError, match="tunelab jobs list"):
        open_registry().get_job("nope")
