"""Issue 26: what a hostile OpenAI-compatible account may send `tunelab migrate`, one named
scenario of tests/hostile_openai.py each, over real HTTP through the real openai SDK."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest

from faultproxy import serve_in_thread
from hostile_openai import HUGE, ROGUE, create_hostile_app, hostile_account
from openai_double import COACH, NATASHA, Account
from tunelab import home
from tunelab.cli import main
from tunelab.registry import open_registry

KEY = "sk-canary-hostile-0123456789abcdef"
TODAY = "2026-12-02"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("TUNELAB_TODAY", TODAY)


def serve(scenario: str, **extra: str):
    account = hostile_account(scenario, key=KEY, **extra)
    return account, serve_in_thread(create_hostile_app(account, scenario, key=KEY))


def tunelab(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def inventory(capsys: pytest.CaptureFixture[str], port: int, *more: str) -> dict:
    code, out, err = tunelab(capsys, "migrate", "inventory", "--base-url",
                             f"http://127.0.0.1:{port}/v1", "--json", *more)
    assert code == 0, err
    return json.loads(out)


def inventory_then_pull(capsys: pytest.CaptureFixture[str], scenario: str,
                        *args: str) -> tuple[Account, int, str, str]:
    """The scenario's account, inventoried, then `migrate pull ARGS`."""
    account, served = serve(scenario)
    with served as port:
        inventory(capsys, port)
        code, out, err = tunelab(capsys, "migrate", "pull", *args)
    return account, code, out, err


def inside_home(path: Path) -> bool:
    return path.resolve().is_relative_to(home.home().resolve())


def every_file(root: Path) -> set[Path]:
    return {p.resolve() for p in root.rglob("*") if p.is_file()}


# items 1, 2: ids become file names only through one check ---------------------------------
def test_item1_file_id_never_leaves_the_home(env: None, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    victim = tmp_path / "elsewhere" / "victim"
    victim.parent.mkdir()
    (victim.parent / "victim.part").write_text("precious")
    account, served = serve("file_traversal", victim=str(victim))
    outside_before = every_file(tmp_path)
    with served as port:
        inventory(capsys, port)
        code, out, err = tunelab(capsys, "migrate", "pull", ROGUE)
    assert code != 0 and "Traceback" not in err
    assert "file id" in err
    assert (victim.parent / "victim.part").read_text() == "precious"
    made = every_file(tmp_path) - outside_before
    assert all(inside_home(path) for path in made), made


def test_item2_job_id_never_leaves_the_home(env: None, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    _, code, out, err = inventory_then_pull(capsys, "job_traversal", "../../x/j")
    assert code != 0 and "Traceback" not in err
    assert "job id" in err
    with open_registry() as registry:  # no row, so no page or link is built on that id
        assert all("/" not in job.id for job in registry.list_jobs())
    assert not (home.home() / ".." / ".." / "x").exists()
    assert not (home.home().parent.parent / "x").exists()
    assert all(inside_home(p) for p in every_file(tmp_path) if "x" in p.parts)


# item 7: the key is scrubbed from whatever leaves a provider call --------------------------
def test_item7_key_scrubbed_from_inventory_warnings_and_golden_set(
        env: None, capsys: pytest.CaptureFixture[str]) -> None:
    account, served = serve("key_echo")
    with served as port, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, err = tunelab(capsys, "migrate", "inventory", "--base-url",
                                 f"http://127.0.0.1:{port}/v1", "--json")
        assert code == 0, err
        assert KEY not in out and KEY not in err
        assert all(KEY not in str(w.message) for w in caught)
        assert tunelab(capsys, "migrate", "pull", NATASHA)[0] == 0
        code, out, err = tunelab(capsys, "migrate", "record", NATASHA, "--yes")
        assert code == 0, err
    assert KEY not in out + err
    for path in (home.home() / "golden").rglob("*"):
        if path.is_file():
            assert KEY not in path.read_text(), path


# item 8: credentials in --base-url are never stored -----------------------------------------
def test_item8_base_url_credentials_stripped(env: None,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    account, served = serve("honest")
    with served as port:
        code, out, err = tunelab(capsys, "migrate", "inventory", "--base-url",
                                 f"http://user:{KEY}@127.0.0.1:{port}/v1")
        assert code == 0, err
    assert KEY not in out + err
    with open_registry() as registry:
        endpoints = {job.endpoint for job in registry.list_jobs()}
    assert endpoints == {f"http://127.0.0.1:{port}/v1"}


# item 14: a listing that never ends -------------------------------------------------------
def test_item14_endless_listing_is_capped(env: None, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from tunelab.providers import openai_compat

    monkeypatch.setattr(openai_compat, "MAX_PAGES", 5)
    account, served = serve("endless_pages")
    with served as port:
        code, out, err = tunelab(capsys, "migrate", "inventory", "--base-url",
                                 f"http://127.0.0.1:{port}/v1")
    assert code != 0 and "Traceback" not in err
    assert "5 pages" in err


def test_item14_endless_listing_honours_timeout(env: None,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    account, served = serve("endless_pages")
    with served as port:
        code, out, err = tunelab(capsys, "migrate", "inventory", "--base-url",
                                 f"http://127.0.0.1:{port}/v1", "--timeout", "1")
    assert code != 0 and "Traceback" not in err
    assert "--timeout 1s" in err and "pages" in err  # stopped by it, not refused as a flag


# item 15: a download has a cap, and a flag to raise it ------------------------------------
def test_item15_download_cap(env: None, capsys: pytest.CaptureFixture[str]) -> None:
    from tunelab.providers.openai_compat import MAX_DOWNLOAD_BYTES

    assert MAX_DOWNLOAD_BYTES >= 100 * 2**20
    account, served = serve("huge_file")
    with served as port:
        inventory(capsys, port)
        code, out, err = tunelab(capsys, "migrate", "pull", ROGUE, "--max-download-mb", "1")
        assert code != 0 and "Traceback" not in err
        assert "--max-download-mb" in err
        assert not list((home.home() / "blobs").rglob("*.part"))
        code, out, err = tunelab(capsys, "migrate", "pull", ROGUE, "--max-download-mb", "4",
                                 "--json")
    assert code == 0, err
    assert json.loads(out)["files"][0]["blob"]["bytes"] == HUGE


# item 18: bad rows in a result file are skipped and counted ------------------------------
@pytest.mark.parametrize("scenario", ["bad_results", "not_csv"])
def test_item18_bad_result_rows_skipped(env: None, capsys: pytest.CaptureFixture[str],
                                        scenario: str) -> None:
    _, code, out, err = inventory_then_pull(capsys, scenario, NATASHA, "--json")
    assert code == 0, err
    report = json.loads(out)
    if scenario == "bad_results":
        assert report["metric_steps"] == 2  # steps 1 and 5; step 4's field is too long
        assert report["skipped_rows"] == 7
    else:
        assert report["metric_steps"] == 0 and report["skipped_rows"] >= 1
    assert report["files"][0]["check"]["ok"]


# item 19: the registry refuses steps and losses that are not numbers ----------------------
def local_row(job_id: str, **fields: object) -> None:
    from tunelab.registry import JobRecord

    with open_registry() as registry:
        registry.create_job(JobRecord(**{"id": job_id, "provider": "openai", "endpoint": "e",
                                         "status": "running", "created_at": 1.0,
                                         "updated_at": 1.0, "base_model": "m", **fields}))


def test_item19_registry_refuses_bad_steps_and_keeps_no_nan(
        env: None, capsys: pytest.CaptureFixture[str]) -> None:
    from tunelab.errors import DataError

    local_row("ftjob-x", status="succeeded")
    with open_registry() as registry:
        for step in (-1, math.inf, math.nan, 1e30, 2.5):
            with pytest.raises(DataError):
                registry.add_metrics("ftjob-x", step, {"train_loss": 1.0})
        registry.add_metrics("ftjob-x", 1, {"train_loss": math.nan, "valid_loss": math.inf,
                                            "train_mean_token_accuracy": 0.5})
        assert registry.list_metrics("ftjob-x") == [
            {"step": 1, "train_mean_token_accuracy": 0.5}]
    for args in (("jobs", "show", "ftjob-x", "--json"), ("jobs", "list", "--json")):
        code, out, err = tunelab(capsys, *args)
        assert code == 0, err
        json.loads(out, parse_constant=lambda name: pytest.fail(f"{name} in --json"))


def test_item19_json_output_is_strict(env: None, capsys: pytest.CaptureFixture[str]) -> None:
    """A row written before the registry refused NaN (put in with SQL here) still leaves as
    strict JSON: every --json output and the dashboard's stream."""
    import sqlite3

    from tunelab.cli.migrate_cmd import _emit
    from tunelab.server.dashboard.stream import message

    _emit({"x": math.nan, "y": [math.inf]})
    printed = capsys.readouterr().out
    json.loads(printed, parse_constant=lambda name: pytest.fail(f"{name} in --json"))
    local_row("ftjob-old", status="succeeded")
    with sqlite3.connect(home.home() / "registry.sqlite") as conn:
        conn.execute("UPDATE jobs SET metrics_json = ? WHERE id = 'ftjob-old'",
                     ('{"train_loss": NaN, "valid_loss": Infinity}',))
    for args in (("jobs", "show", "ftjob-old", "--json"), ("jobs", "list", "--json")):
        code, out, err = tunelab(capsys, *args)
        assert code == 0, err
        json.loads(out, parse_constant=lambda name, shown=args: pytest.fail(f"{name} in {shown}"))
    sent = message("job", {"metrics": {"train_loss": math.nan}})
    data = sent.split("data: ", 1)[1]
    assert json.loads(data, parse_constant=lambda name: pytest.fail(f"{name} streamed")) == {
        "metrics": {"train_loss": None}}


# item 20: a garbage shutdown date is one warning ------------------------------------------
def test_item20_garbage_shutdown_date_warns(env: None,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    account, served = serve("bad_date")
    with served as port:
        code, out, err = tunelab(capsys, "migrate", "inventory", "--base-url",
                                 f"http://127.0.0.1:{port}/v1", "--json")
    assert code == 0 and "Traceback" not in err
    assert "next-tuesday-ish" in err
    models = {entry["fine_tuned_model"]: entry for entry in json.loads(out)["models"]}
    assert models[COACH]["shutdown"] == "2026-10-23"
    assert len([e for e in models.values() if e["job_id"]]) == 3


# item 21: a download cut mid-body is retried ---------------------------------------------
def test_item21_cut_download_is_retried(env: None, capsys: pytest.CaptureFixture[str]) -> None:
    account, code, out, err = inventory_then_pull(capsys, "cut_download", NATASHA, "--json")
    assert code == 0, err
    assert account.calls["download file-natasha-train"] == 2


# item 22: outside text is never read as Rich markup ---------------------------------------
def test_item22_markup_in_a_model_name(env: None, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = tunelab(capsys, "migrate", "pull", "[/x]")
    assert code != 0 and "Traceback" not in err and "MarkupError" not in err
    assert "[/x]" in err


# item 23: a provider's job id equal to a local one ---------------------------------------
def test_item23_provider_id_equal_to_a_local_id(env: None,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    local_row("ftjob-same", endpoint="https://elsewhere/v1", status="succeeded",
              base_model="mine", fine_tuned_model="ft:mine")
    account, served = serve("local_id", local_id="ftjob-same")
    with served as port:
        found = inventory(capsys, port)
        code, out, err = tunelab(capsys, "migrate", "status", "--json")
    with open_registry() as registry:
        mine = registry.get_job("ftjob-same")
    assert (mine.base_model, mine.fine_tuned_model, mine.status) == (
        "mine", "ft:mine", "succeeded")
    rows = json.loads(out)["models"]
    assert "ftjob-same" not in {row["job_id"] for row in rows}
    entry = next(e for e in found["models"] if e["job_id"] == "ftjob-same")
    assert entry["imported"] is None


# item 24: one file for both roles -----------------------------------------------------------
def test_item24_one_file_both_roles(env: None, capsys: pytest.CaptureFixture[str]) -> None:
    account, served = serve("same_file")
    with served as port:
        inventory(capsys, port)
        code, out, err = tunelab(capsys, "migrate", "pull", NATASHA, "--json")
        assert code == 0, err
        code, out, err = tunelab(capsys, "migrate", "record", NATASHA, "--yes", "--json")
    assert code == 0, err
    assert json.loads(out)["prompts"] > 0


# item 36: tables at 80 columns --------------------------------------------------------------
def test_item36_tables_keep_ids_whole_at_80_columns(
        env: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from tunelab.cli import console

    for each in (console.out, console.err):
        monkeypatch.setattr(each, "_width", 80)
    account, served = serve("honest")
    with served as port:
        code, inv, err = tunelab(capsys, "migrate", "inventory", "--base-url",
                                 f"http://127.0.0.1:{port}/v1")
        assert code == 0, err
        code, status, err = tunelab(capsys, "migrate", "status")
        assert code == 0, err
        code, jobs, err = tunelab(capsys, "jobs", "list")
        assert code == 0, err
    ids = ("ftjob-natasha", "ftjob-coach", "ftjob-failed")
    for printed, names in ((inv, (NATASHA, COACH, *ids)), (status, (NATASHA, COACH, *ids)),
                           (jobs, ids)):
        table = [line for line in printed.splitlines()
                 if "──" in line or any(name in line for name in names)]
        assert table and max(len(line) for line in table) <= 80, printed
        for name in names:
            assert name in printed, printed
