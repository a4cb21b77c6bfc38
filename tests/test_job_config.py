"""A job's config is one typed schema per kind (registry/job_config.py): written and read back
as the same object, listed by kind, shown and diffed as JSON, and a row that does not fit its
kind is skipped alone, like any damaged row."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from pathlib import Path

import pytest

from tunelab.cli import main
from tunelab.config import TrainConfig
from tunelab.migrate import state
from tunelab.registry import JobRecord, open_registry
from tunelab.registry.job_config import (
    CloudHyperparameters,
    CloudJob,
    HeldOut,
    ImportedJob,
    LocalFiles,
    MigrateState,
    PulledFile,
)

LOCAL_RUN = TrainConfig(train_file="/data/train.jsonl", epochs=2, seed=7)
CLOUD_RUN = CloudJob(hyperparameters=CloudHyperparameters(n_epochs=3, learning_rate=2.0),
                     seed=1, estimated_cost={"model": "gpt-4o-mini-2024-07-18", "epochs": 3},
                     local_files=LocalFiles(training_file="/data/train.jsonl"))
IMPORTED = ImportedJob(
    migrate=MigrateState(shutdown="2027-01-14", result_files=["file-r"],
                         pulled={"file-t": PulledFile(role="training_file", sha256="ab",
                                                      path="/blobs/ab.jsonl", bytes=10)},
                         held_out=HeldOut(examples=10, train=9, val=1, train_file="/h/t.jsonl",
                                          val_file="/h/v.jsonl", seed=0)),
    local_files=LocalFiles(training_file="/blobs/ab.jsonl"))


def add(registry, job_id: str, provider: str, config) -> JobRecord:
    now = time.time()
    return registry.create_job(JobRecord(id=job_id, provider=provider, status="succeeded",
                                         created_at=now, updated_at=now, config=config))


def test_each_kind_round_trips_as_its_type_and_lists_by_kind() -> None:
    with open_registry() as registry:
        for job_id, provider, config in (("ftjob-local", "local", LOCAL_RUN),
                                         ("ftjob-cloud", "openai", CLOUD_RUN),
                                         ("ftjob-old", "openai", IMPORTED),
                                         ("ftjob-bare", "local", None)):
            add(registry, job_id, provider, config)
        jobs = {job_id: registry.get_job(job_id) for job_id in
                ("ftjob-local", "ftjob-cloud", "ftjob-old", "ftjob-bare")}
        assert jobs["ftjob-local"].config == LOCAL_RUN
        assert jobs["ftjob-cloud"].config == CLOUD_RUN and jobs["ftjob-old"].config == IMPORTED
        assert jobs["ftjob-bare"].config is None
        assert [job.kind for job in jobs.values()] == ["local", "cloud", "imported", None]
        assert jobs["ftjob-old"].config.migrate.held_out.val_file == "/h/v.jsonl"
        assert [job.id for job in registry.list_jobs(kind="imported")] == ["ftjob-old"]
        assert [job.id for job in registry.list_jobs(kind="cloud")] == ["ftjob-cloud"]
        # an update writes the kind with the config
        registry.update_job("ftjob-bare", config=TrainConfig(epochs=4))
        assert registry.get_job("ftjob-bare").kind == "local"
        assert registry.update_job("ftjob-bare", config=None).kind is None


def test_a_dict_config_is_refused_at_write() -> None:
    with open_registry() as registry, pytest.raises(TypeError, match="not dict"):
        add(registry, "ftjob-dict", "local", {"epochs": 1})


def test_jobs_show_json_prints_the_config_and_compare_diffs_it_key_by_key(
        capsys: pytest.CaptureFixture[str]) -> None:
    with open_registry() as registry:
        add(registry, "ftjob-a", "local", LOCAL_RUN)
        add(registry, "ftjob-b", "local", LOCAL_RUN.model_copy(update={"seed": 8}))
        add(registry, "ftjob-old", "openai", IMPORTED)
    assert main(["jobs", "show", "ftjob-old", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["kind"] == "imported"
    assert shown["config"]["migrate"]["pulled"]["file-t"]["path"] == "/blobs/ab.jsonl"
    assert main(["jobs", "compare", "ftjob-a", "ftjob-b", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["config_diff"] == {"seed": [7, 8]}


def test_a_row_that_does_not_fit_its_kind_is_skipped_alone(
        tunelab_home: Path, caplog: pytest.LogCaptureFixture) -> None:
    with open_registry() as registry:
        add(registry, "ftjob-fine", "openai", CLOUD_RUN)
        add(registry, "ftjob-odd", "openai", CLOUD_RUN)
        add(registry, "ftjob-nokind", "openai", CLOUD_RUN)
    with sqlite3.connect(tunelab_home / "registry.sqlite") as conn:
        conn.execute("UPDATE jobs SET config_json = '{\"sede\": 1}' WHERE id = 'ftjob-odd'")
        conn.execute("UPDATE jobs SET config_kind = NULL WHERE id = 'ftjob-nokind'")
    conn.close()
    with caplog.at_level(logging.WARNING, logger="tunelab.registry"), \
            open_registry() as registry:
        assert [job.id for job in registry.list_jobs()] == ["ftjob-fine"]
    warned = " ".join(record.getMessage() for record in caplog.records)
    assert "job ftjob-odd" in warned and "sede" in warned and "job ftjob-nokind" in warned


def test_a_local_config_past_todays_bounds_stays_readable(tunelab_home: Path) -> None:
    """An older tunelab took a seed past SEED_MAX (the run failed): the row still lists, with
    the values it ran with; a resume validates them again."""
    with open_registry() as registry:
        add(registry, "ftjob-big", "local", TrainConfig(seed=1))
    with sqlite3.connect(tunelab_home / "registry.sqlite") as conn:
        conn.execute("UPDATE jobs SET config_json = ? WHERE id = 'ftjob-big'",
                     (json.dumps({"seed": 2**70, "epochs": 2}),))
    conn.close()
    with open_registry() as registry:
        job = registry.get_job("ftjob-big")
    assert isinstance(job.config, TrainConfig) and job.config.seed == 2**70
    assert job.config.epochs == 2 and job.config.lora_r == TrainConfig().lora_r


def test_inventory_state_on_a_cloud_job_of_ours_keeps_what_it_asked() -> None:
    """A job tunelab created on OpenAI and `migrate inventory` found later becomes an
    ImportedJob that is still the CloudJob it was."""
    with open_registry() as registry:
        job = add(registry, "ftjob-ours", "openai", CLOUD_RUN)
        assert not state.is_inventoried(job)
        job = state.save_state(registry, job, shutdown="2027-01-14")
        job = state.save_state(registry, job, pulled_at=5.0,
                               local_files=LocalFiles(training_file="/blobs/cd.jsonl"))
        assert state.is_inventoried(job) and job.kind == "imported"
        assert isinstance(job.config, CloudJob) and job.config.hyperparameters.n_epochs == 3
        assert (job.config.migrate.shutdown, job.config.migrate.pulled_at) == ("2027-01-14", 5.0)
        assert job.config.local_files.training_file == "/blobs/cd.jsonl"
        assert [j.id for j in state.inventoried_jobs(registry)] == ["ftjob-ours"]
