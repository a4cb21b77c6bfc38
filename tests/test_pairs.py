"""`tunelab data pairs`: a persona's chat data as preference pairs, the dataset's answer
preferred over another model's (issue 23). Resumable, and no answer is paid for twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import SYSTEM, VALID, write_chats
from faultproxy import serve_in_thread
from openai_double import NATASHA, Account, answer, create_app, dialogue, natasha_account
from test_inference import one_torch_thread  # noqa: F401 (an autouse fixture, shared)
from tunelab.cli import main
from tunelab.evaluate.pairs import make_pairs
from tunelab.evaluate.runner import Settings


def _pairs(capsys, *argv: str) -> tuple[int, dict | str]:
    capsys.readouterr()
    code = main(["data", "pairs", *argv])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if code == 0 and "--json" in argv else captured.err


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def account(monkeypatch) -> Account:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-pairs")
    return natasha_account()


def test_pairs_from_a_cloud_model_resume_after_a_kill_and_never_ask_twice(
        account, tmp_path, capsys):
    examples = [dialogue(number) for number in range(1, 5)]
    # the model already answers the fourth as the dataset does: no pair to learn from
    same = examples[3]["messages"]
    same[-1]["content"] = answer(NATASHA, same[:-1], 0.0, 0)
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps(e) + "\n" for e in examples), encoding="utf-8")
    out = tmp_path / "prefs.jsonl"
    with serve_in_thread(create_app(account)) as port:
        argv = [str(data), "--rejected-from", NATASHA, "-o", str(out), "--base-url",
                f"http://127.0.0.1:{port}/v1", "--json"]
        code, first = _pairs(capsys, *argv)
        assert code == 0, first
        assert (first["written"], first["identical_skipped"], first["kept"]) == (3, 1, 0)
        assert account.calls[f"chat {NATASHA}"] == 4
        whole = out.read_bytes()
        rows = _rows(out)
        assert rows[0] == {
            "input": {"messages": examples[0]["messages"][:-1]},
            "preferred_output": [examples[0]["messages"][-1]],
            "non_preferred_output": [{"role": "assistant", "content": answer(
                NATASHA, examples[0]["messages"][:-1], 0.0, 0)}]}

        # killed while writing the second row: a valid prefix and a torn line
        out.write_bytes(whole[:whole.index(b"\n") + 1] + whole[whole.index(b"\n") + 1:][:25])
        code, second = _pairs(capsys, *argv)
        assert code == 0, second
        assert (second["kept"], second["written"], second["rows"]) == (1, 2, 3)
        assert second["cache"]["misses"] == 0  # every answer was paid for the first time
        assert account.calls[f"chat {NATASHA}"] == 4  # nothing more reached the provider
        assert out.read_bytes() == whole

        assert main(["data", "pairs", *argv[:-1]]) == 0  # all done: nothing asked or written
        said = capsys.readouterr().out
        assert "3 preference pairs in" in said and "0 new, 3 kept from an earlier run" in said
        assert "1 skipped" in said
        assert account.calls[f"chat {NATASHA}"] == 4

        # an OUT that holds another file's pairs is refused by line, and left as it was
        other = tmp_path / "other.jsonl"
        other.write_text(json.dumps(dialogue(9)) + "\n", encoding="utf-8")
        code, error = _pairs(capsys, str(other), *argv[1:])
        assert code == 1 and f"{out}:1" in error and "-o" in error
        assert out.read_bytes() == whole


@pytest.mark.slow
def test_pairs_from_the_base_model_show_progress_and_resume(tmp_path):
    data = write_chats(tmp_path / "chats.jsonl", VALID)
    out = tmp_path / "prefs.jsonl"
    settings = Settings(max_new_tokens=6)
    seen: list[tuple[str, int, int]] = []
    first = make_pairs(data, "base", out, settings=settings,
                       progress=lambda *step: seen.append(step))
    assert seen == [("base", 2, 2)]  # both answered in one batch
    assert (first.written, first.cache_misses) == (2, 2)
    rows = _rows(out)
    assert [row["input"]["messages"][0]["content"] for row in rows] == [SYSTEM, SYSTEM]
    assert [row["preferred_output"][0]["content"] for row in rows] == [a for _, a in VALID]
    generated = [row["non_preferred_output"][0]["content"] for row in rows]
    assert all(generated) and generated != [a for _, a in VALID]

    out.write_text(json.dumps(rows[0], ensure_ascii=False) + "\n", encoding="utf-8")
    seen.clear()
    again = make_pairs(data, "base", out, settings=settings,
                       progress=lambda *step: seen.append(step))
    assert seen == [("base", 2, 2)]  # the bar continues after the row already there
    assert (again.kept, again.written, again.cache_hits, again.cache_misses) == (1, 1, 1, 0)
    assert _rows(out) == rows


@pytest.mark.slow
def test_a_local_job_as_the_rejected_model(tiny_job, tmp_path, capsys):
    data = write_chats(tmp_path / "chats.jsonl", VALID[:1])
    out = tmp_path / "prefs.jsonl"
    code, summary = _pairs(capsys, str(data), "--rejected-from", tiny_job["id"], "-o",
                           str(out), "--max-new-tokens", "6", "--json")
    assert code == 0, summary
    assert summary["model"]["job_id"] == tiny_job["id"] and summary["written"] == 1
    [row] = _rows(out)
    from tunelab.local.inference import load_chat_model

    tuned = load_chat_model(tiny_job["id"]).generate(row["input"]["messages"],
                                                     max_new_tokens=6)
    assert row["non_preferred_output"] == [{"role": "assistant", "content": tuned}]
