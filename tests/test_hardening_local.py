"""Issue 26, the local and terminal items: what a hostile provider sends to the terminal (9,
10), what `export` may delete, write and leave behind (12, 31-34), a sweep too big to start
unasked (17), a run stopped by SIGTERM (29), a full disk (30) and a moved home (35).

Each test failed on the code before its fix. Exports use the session's tiny trained job
(`tiny_job`): nothing here trains except the SIGTERM test, which has to."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tunelab.cli import main
from tunelab.registry import JobRecord, open_registry

# ESC ] 0 ; sets the window title (ended by BEL); ESC [ 2 J clears the screen; 0x9b is a
# one-byte CSI; OSC 52 writes the clipboard.
HOSTILE = "ft:gpt-4o\x1b]0;pwned\x07:acme\x1b[2J:x\x9b31m\x1b]52;c;cm0gLXJmIH4=\x07"
RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # what must never reach a terminal


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def add_job(job_id: str, provider: str = "openai", **fields) -> JobRecord:
    now = 1796210969.0
    with open_registry() as registry:
        return registry.create_job(JobRecord(
            id=job_id, provider=provider, status=fields.pop("status", "succeeded"),
            created_at=now, updated_at=now + 60, finished_at=now + 60, **fields))


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and len(err.strip().splitlines()) == 1, err
    return lines[0]


def entries(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


# item 9: a provider's text reaches the terminal without its control sequences -------------
def test_escape_sequences_from_a_provider_never_reach_the_terminal(
        capsys: pytest.CaptureFixture[str]) -> None:
    add_job("ftjob-hostile", base_model=HOSTILE, fine_tuned_model=HOSTILE,
            error={"code": "bad\x1b[5m", "message": "failed \x1b]8;;http://evil\x07here"})
    with open_registry() as registry:
        registry.add_event("ftjob-hostile", "step 1 \x1b[1A\x1b[2Kdone\x9d", level="info")
    for argv in (["jobs", "list"], ["jobs", "show", "ftjob-hostile"],
                 ["jobs", "events", "ftjob-hostile"], ["jobs", "show", "ftjob-\x1b[2J"]):
        _, out, err = run(capsys, *argv)
        assert not RAW_CONTROL.search(out + err), (argv, out + err)
    # shown, escaped, not dropped: a person can see what the provider sent
    _, out, _ = run(capsys, "jobs", "show", "ftjob-hostile")
    assert "\\x1b]0;pwned" in out


def test_terminal_safe_keeps_text_and_newlines_and_escapes_controls() -> None:
    from tunelab.cli.formatting import terminal_safe

    assert terminal_safe("Наташа\tok\nnext") == "Наташа\tok\nnext"
    assert terminal_safe("a\x1b[2Jb\x07c\x9bd\x7f\r") == "a\\x1b[2Jb\\x07c\\x9bd\\x7f\\r"
    assert terminal_safe("one\ntwo", newlines=False) == "one\\ntwo"


# item 10: a command line suggested with an outside value is quoted for the shell ---------
SHELLY = "ft:gpt-4o-mini:acme:$(touch pwned):x y;rm -rf ~"


def suggested(text: str, marker: str) -> list[str]:
    """The words of the command line after `marker` in `text`, as a shell would split it."""
    line = next(line for line in text.splitlines() if marker in line)
    return shlex.split(line.split(marker, 1)[1])


def test_command_quotes_each_word_only_where_it_must() -> None:
    from tunelab.errors import command

    assert command("tunelab", "migrate", "pull", "ft:gpt-4o-mini:acme:x:AbC") == \
        "tunelab migrate pull ft:gpt-4o-mini:acme:x:AbC"  # a plain name stays readable
    assert shlex.split(command("tunelab", "migrate", "record", SHELLY)) == \
        ["tunelab", "migrate", "record", SHELLY]


def test_the_next_line_after_a_pull_quotes_the_providers_model_name(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from types import SimpleNamespace

    from tunelab.migrate import pull

    report = SimpleNamespace(files=[], metric_steps=3, job_id="ftjob-x; reboot",
                             held_out=None, model=SHELLY, skipped_rows=0)
    monkeypatch.setattr(pull, "pull", lambda model, **options: report)
    code, out, _ = run(capsys, "migrate", "pull", SHELLY)
    assert code == 0
    assert suggested(out, "Next: ") == ["tunelab", "migrate", "record", SHELLY]
    assert "tunelab jobs show 'ftjob-x; reboot'" in out


def test_the_resume_line_of_a_cancelled_run_and_a_sweep_are_quoted(
        capsys: pytest.CaptureFixture[str]) -> None:
    from tunelab.cli.sweep_cmd import _print_summary
    from tunelab.cli.train_run import _print_result

    _print_result({"status": "cancelled", "id": "ftjob-$(id)", "run_dir": "/x", "metrics": {}})
    assert "resume with: tunelab train --resume 'ftjob-$(id)'" in capsys.readouterr().out
    _print_summary({"ended": "interrupted", "sweep": "sweep-`id`", "winner": None})
    assert "resume with: tunelab sweep --resume 'sweep-`id`'" in capsys.readouterr().out


# item 17: a sweep of many trials says how many and asks before it starts ----------------
def sweep_data(folder: Path) -> tuple[Path, Path]:
    from conftest import TRAIN, VALID, write_chats

    folder.mkdir(parents=True, exist_ok=True)
    return write_chats(folder / "train.jsonl", TRAIN), write_chats(folder / "val.jsonl", VALID)


def test_a_ten_thousand_trial_grid_is_refused_unasked_and_nothing_starts(
        tmp_path: Path, tunelab_home: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from tunelab.sweep import runner

    def started(*args, **kwargs):
        raise AssertionError("the sweep started its trials unasked")

    monkeypatch.setattr(runner, "execute", started)
    train, val = sweep_data(tmp_path / "data")
    rates = ",".join(f"{(i + 1) * 1e-5:.5f}" for i in range(100))
    ranks = ",".join(str(r) for r in range(1, 101))
    code, _, err = run(capsys, "sweep", str(train), "--validation-file", str(val),
                       "--learning-rate", rates, "--lora-r", ranks)
    assert code == 2, err
    line = one_error_line(err)
    assert "10,000 trials" in line and "--yes" in line
    assert not (tunelab_home / "sweeps").exists() or \
        not list((tunelab_home / "sweeps").iterdir())
    with open_registry() as registry:
        assert registry.list_jobs() == []


def test_a_sweep_asks_only_above_the_threshold(tmp_path: Path) -> None:
    from tunelab.sweep.runner import ASK_ABOVE_TRIALS, SweepRequest, open_sweep

    train, val = sweep_data(tmp_path / "data")
    asked: list[int] = []
    for count in (ASK_ABOVE_TRIALS, ASK_ABOVE_TRIALS + 1):
        rates = ",".join(f"{(i + 1) * 1e-5:.5f}" for i in range(count))
        request = SweepRequest(file=train, validation_file=val,
                               varied={"learning_rate": rates})
        plan, resumed = open_sweep(request, confirm=asked.append)
        assert not resumed
    assert asked == [ASK_ABOVE_TRIALS + 1]
    # a refusal leaves no sweep behind
    request = SweepRequest(file=train, validation_file=val,
                           varied={"learning_rate": rates, "lora_r": "4,8"})

    def refuse(count: int) -> None:
        raise RuntimeError(f"no to {count}")

    with pytest.raises(RuntimeError, match=f"no to {2 * (ASK_ABOVE_TRIALS + 1)}"):
        open_sweep(request, confirm=refuse)
