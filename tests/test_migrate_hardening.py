"""Issue 26: what a hostile OpenAI-compatible account may send `tunelab migrate`, one named
scenario of tests/hostile_openai.py each, over real HTTP through the real openai SDK."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from faultproxy import serve_in_thread
from hostile_openai import ROGUE, create_hostile_app, hostile_account
from openai_double import NATASHA
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
    account, served = serve("job_traversal")
    with served as port:
        inventory(capsys, port)
        code, out, err = tunelab(capsys, "migrate", "pull", "../../x/j")
    assert code != 0 and "Traceback" not in err
    assert "job id" in err
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


# item 21: a download cut mid-body is retried ---------------------------------------------
def test_item21_cut_download_is_retried(env: None, capsys: pytest.CaptureFixture[str]) -> None:
    account, served = serve("cut_download")
    with served as port:
        inventory(capsys, port)
        code, out, err = tunelab(capsys, "migrate", "pull", NATASHA, "--json")
    assert code == 0, err
    assert account.calls["download file-natasha-train"] == 2
