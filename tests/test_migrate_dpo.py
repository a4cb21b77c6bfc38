"""`tunelab migrate` of a DPO job: inventory records its method, pull keeps its preference
files (recognised as such), and retrain trains a DPO replacement with the same beta on them,
over real HTTP against the stand-in account (tests/openai_double.py) as in test_migrate.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openai_double import PERSONA, Account, natasha_account, with_dpo_job
from test_migrate import KEY, as_json, inventory, tunelab, upstream, url  # noqa: F401
from tunelab.migrate import retrain as retraining
from tunelab.registry import open_registry


@pytest.fixture
def account() -> Account:
    return with_dpo_job(natasha_account())


def pulled(capsys: pytest.CaptureFixture[str], url: str) -> dict:  # noqa: F811
    inventory(capsys, url)
    return as_json(capsys, "migrate", "pull", PERSONA)


def test_pull_keeps_a_dpo_jobs_preference_files_and_its_method(
        capsys: pytest.CaptureFixture[str], account: Account, url: str) -> None:  # noqa: F811
    entry = next(entry for entry in inventory(capsys, url)["models"]
                 if entry["fine_tuned_model"] == PERSONA)
    assert entry["method"] == "dpo"
    assert entry["hyperparameters"] == {"beta": 0.2, "n_epochs": 2, "batch_size": "auto"}
    report = as_json(capsys, "migrate", "pull", PERSONA)
    files = {item["role"]: item for item in report["files"]}
    for role, file_id, pairs in (("training_file", "file-prefs-train", 12),
                                 ("validation_file", "file-prefs-valid", 10)):
        kept = files[role]
        assert Path(kept["blob"]["path"]).read_bytes() == account.files[file_id][1]
        assert (kept["check"]["format"], kept["check"]["examples"]) == ("preference", pairs)
    assert files["training_file"]["check"]["ok"] and files["validation_file"]["check"]["ok"]
    assert report["metric_steps"] == 6 and report["held_out"] is None
    with open_registry() as registry:
        state = registry.get_job("ftjob-dpo").config.migrate
    assert state.method == "dpo" and set(state.checks) == {
        "file-prefs-train", "file-prefs-valid"}
    # record asks the old model the held-out pairs' inputs (what both answers answered)
    recorded = as_json(capsys, "migrate", "record", PERSONA, "--yes")
    assert (recorded["prompts"], account.calls[f"chat {PERSONA}"]) == (10, 10)
    assert account.chat_requests[0]["messages"][-1]["content"] == \
        "How do I start project number 50?"


def test_retrain_of_a_dpo_job_trains_dpo_with_its_beta_on_the_kept_pairs(
        capsys: pytest.CaptureFixture[str], account: Account, url: str) -> None:  # noqa: F811
    report = pulled(capsys, url)
    kept = {item["role"]: item["blob"]["path"] for item in report["files"]}
    local = retraining.plan(PERSONA, "local", base_learning_rate=1e-4)
    assert (local.method, local.beta, local.epochs) == ("dpo", 0.2, 2)
    assert (str(local.training_file), str(local.validation_file)) == (
        kept["training_file"], kept["validation_file"])
    assert local.mapping["method"] == "method dpo" and local.mapping["beta"] == "beta 0.2"
    # a provider that trains no DPO refuses before anything is sent
    code, _, err = tunelab(capsys, "migrate", "retrain", PERSONA, "--to", "vertex", "--yes")
    assert code == 2 and "vertex cannot train dpo jobs" in err
    assert not account.calls["upload"]
    # OpenAI (here the stand-in) trains the replacement with DPO, on the same pairs
    code, out, err = tunelab(capsys, "migrate", "retrain", PERSONA, "--to", "openai",
                             "--base-url", url, "--yes", "--no-wait", "--json")
    assert code == 0, err
    [body] = account.created
    assert body["method"] == {"type": "dpo", "dpo": {"hyperparameters": {
        "beta": 0.2, "n_epochs": 2}}}
    assert account.files[body["training_file"]][1] == Path(kept["training_file"]).read_bytes()
    assert body["metadata"]["retrain_of"] == "ftjob-dpo"
    assert json.loads(out)["id"] == account.jobs[0]["id"]
    assert KEY not in out + err


def test_a_dpo_job_without_validation_file_holds_out_pairs(
        capsys: pytest.CaptureFixture[str], account: Account, url: str) -> None:  # noqa: F811
    account.jobs[0]["validation_file"] = None  # the DPO job, trained on all its pairs
    held_out = pulled(capsys, url)["held_out"]
    assert (held_out["examples"], held_out["train"], held_out["val"]) == (12, 11, 1)
    rows = [json.loads(line) for line in Path(held_out["val_file"]).read_text().splitlines()]
    assert set(rows[0]) == {"input", "preferred_output", "non_preferred_output"}
    assert retraining.plan(PERSONA, "local", base_learning_rate=1e-4).validation_file == Path(
        held_out["val_file"])
