"""Issue 26, the local and terminal items: what a hostile provider sends to the terminal (9,
10), what `export` may delete, write and leave behind (12, 31-34), a sweep too big to start
unasked (17), a run stopped by SIGTERM (29), a full disk (30) and a moved home (35).

Each test failed on the code before its fix. Exports use the session's tiny trained job
(`tiny_job`): nothing here trains except the SIGTERM test, which has to."""

from __future__ import annotations

import errno
import json
import os
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


def test_live_displays_escape_a_providers_text_too() -> None:
    """A live display (jobs watch's panel, a spinner) is drawn outside the consoles' net."""
    from io import StringIO
    from types import SimpleNamespace

    from rich.console import Console

    from tunelab.cli.cloud_cmd import _Progress
    from tunelab.cli.console import plain

    panel = _Progress("ftjob-x")
    event = SimpleNamespace(type="message", data=None, message=f"created {HOSTILE}\nfake line")
    panel.apply(SimpleNamespace(job=SimpleNamespace(status="running\x1b[2J"), events=[event]))
    bare = Console(file=StringIO(), width=200, color_system=None)  # no escaping of its own
    bare.print(panel)
    bare.print(plain(f"pulling {HOSTILE}"))
    drawn = bare.file.getvalue()
    assert not RAW_CONTROL.search(drawn), repr(drawn)
    assert "\\x1b]0;pwned" in drawn and "fake line" in drawn


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


def test_migrate_status_next_commands_quote_the_providers_ids_and_names(
        capsys: pytest.CaptureFixture[str]) -> None:
    from tunelab.registry.job_config import ImportedJob, MigrateState

    add_job("ftjob-$(id)", config=ImportedJob())  # inventoried: pull it next
    add_job("ftjob-pulled", fine_tuned_model=SHELLY,  # pulled: record it next
            config=ImportedJob(migrate=MigrateState(pulled_at=1796210969.0)))
    code, out, _ = run(capsys, "migrate", "status", "--json")
    assert code == 0
    nexts = {row["job_id"]: shlex.split(row["next"]) for row in json.loads(out)["models"]}
    assert nexts == {"ftjob-$(id)": ["tunelab", "migrate", "pull", "ftjob-$(id)"],
                     "ftjob-pulled": ["tunelab", "migrate", "record", SHELLY]}
    assert "'ftjob-$(id)'" in out  # quoted, so pasted it is text


def test_the_resume_line_of_a_cancelled_run_and_a_sweep_are_quoted(
        capsys: pytest.CaptureFixture[str]) -> None:
    from tunelab.cli.sweep_cmd import _print_summary
    from tunelab.cli.train_run import _print_result

    _print_result({"status": "cancelled", "id": "ftjob-$(id)", "run_dir": "/x", "metrics": {}})
    assert "resume with: tunelab train --resume 'ftjob-$(id)'" in capsys.readouterr().out
    _print_summary({"ended": "interrupted", "sweep": "sweep-`id`", "winner": None})
    assert "resume with: tunelab sweep --resume 'sweep-`id`'" in capsys.readouterr().out


# export: what --force may replace (12), a full disk (31), a checkpoint's files (32), ------
# a killed export's leftovers (33), the umask (34)
def test_export_force_replaces_only_an_earlier_export(
        tiny_job: dict, tunelab_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    job = tiny_job["id"]
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    link = tmp_path / "link"
    link.symlink_to(work)
    monkeypatch.chdir(work)
    registry_before = (tunelab_home / "registry.sqlite").stat().st_size
    for target in (".", str(tunelab_home), str(link), str(work)):
        code, _, err = run(capsys, "export", job, "--format", "adapter", "-o", target,
                           "--force")
        assert code == 2, (target, err)
        assert "--force" in one_error_line(err) and "earlier export" in err, err
        assert entries(work) == ["notes.txt"] and (work / "notes.txt").read_text() == "mine"
        assert entries(tmp_path) == ["home", "link", "work"]  # no staging left beside
    assert (tunelab_home / "registry.sqlite").stat().st_size == registry_before
    assert main(["jobs", "show", job]) == 0  # the home and its runs are all there

    out = tmp_path / "exported"
    assert run(capsys, "export", job, "--format", "adapter", "-o", str(out))[0] == 0
    first = entries(out)
    assert "tunelab.json" in first
    # an earlier export is replaced whole
    assert run(capsys, "export", job, "--format", "adapter", "-o", str(out), "--force")[0] == 0
    assert entries(out) == first
    # ... but not once a file of the user's sits in it
    (out / "my-eval.txt").write_text("keep me")
    code, _, err = run(capsys, "export", job, "--format", "adapter", "-o", str(out), "--force")
    assert code == 2 and "my-eval.txt" in one_error_line(err)
    assert (out / "my-eval.txt").read_text() == "keep me"


def test_an_adapter_export_onto_a_full_disk_says_so_and_leaves_nothing(
        tiny_job: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    def half_then_full(src, dst, *args, **kwargs):  # what a write onto a full disk does
        Path(dst).write_bytes(b"\0" * 100)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))

    monkeypatch.setattr(shutil, "copyfile", half_then_full)
    parent = tmp_path / "disk"
    parent.mkdir()
    code, _, err = run(capsys, "export", tiny_job["id"], "--format", "adapter", "-o",
                       str(parent / "out"))
    assert code == 2 and "disk is full" in one_error_line(err), err
    assert entries(parent) == []


def test_an_hf_export_onto_a_full_disk_is_one_line_and_leaves_nothing(
        tiny_job: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors import SafetensorError
    from transformers import modeling_utils

    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 100)
        # safetensors' words on a full disk (tried on a 64 KiB tmpfs)
        raise SafetensorError("Error while serializing: I/O error: No space left on device "
                              "(os error 28)")

    monkeypatch.setattr(modeling_utils, "safe_save_file", full)
    parent = tmp_path / "disk"
    parent.mkdir()
    code, _, err = run(capsys, "export", tiny_job["id"], "-o", str(parent / "out"))
    assert code == 2 and "disk is full" in one_error_line(err), err
    assert entries(parent) == []


def test_a_checkpoint_exports_the_same_files_as_the_final_adapter(
        tiny_job: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    final, latest = tmp_path / "final", tmp_path / "latest"
    assert run(capsys, "export", tiny_job["id"], "--format", "adapter", "-o", str(final))[0] == 0
    assert run(capsys, "export", tiny_job["id"], "--format", "adapter", "--checkpoint",
               "latest", "-o", str(latest))[0] == 0
    assert entries(latest) == entries(final)
    assert {"tokenizer_config.json", "adapter_model.safetensors"} <= set(entries(latest))
    assert not {"optimizer.pt", "state.json"} & set(entries(latest))  # weights, not a resume


def test_a_killed_exports_staging_folder_is_cleaned_up_next_time(
        tiny_job: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import subprocess
    import sys

    parent = tmp_path / "exports"
    parent.mkdir()
    # an export killed while it writes: its own process, stopped mid-write by SIGKILL
    script = ("import sys, time\n"
              "from tunelab.local import export\n"
              "def stuck(request, weights, out, progress):\n"
              "    (out / 'adapter_model.safetensors').write_bytes(b'half')\n"
              "    print('writing', flush=True)\n"
              "    time.sleep(600)\n"
              "export._write = stuck\n"
              "from tunelab.cli import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    process = subprocess.Popen([sys.executable, "-c", script, "export", tiny_job["id"],
                                "--format", "adapter", "-o", str(parent / "a")],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "writing"
    finally:
        process.kill()
        process.wait()
    left = entries(parent)
    assert len(left) == 1 and left[0].startswith("."), left  # the killed one's staging
    mine = parent / ".notes-1a2b3c4d"  # a hidden folder of the user's: not tunelab's
    mine.mkdir()
    assert run(capsys, "export", tiny_job["id"], "--format", "adapter", "-o",
               str(parent / "b"))[0] == 0
    assert entries(parent) == [".notes-1a2b3c4d", "b"]


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_an_export_folder_follows_the_umask(umask: int, tiny_job: dict, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    before = os.umask(umask)
    try:
        assert run(capsys, "export", tiny_job["id"], "--format", "adapter", "-o",
                   str(tmp_path / "out"))[0] == 0
    finally:
        os.umask(before)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o777 & ~umask
    for path in (tmp_path / "out").iterdir():
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


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


# item 30: a full disk is named as one, not as a damaged registry -------------------------
# No file may grow past 16 KiB in this process: sqlite cannot make its 32 KiB -shm file, as
# on a full disk (there it fails with ENOSPC, here with EFBIG: both are SQLITE_IOERR_SHMSIZE).
FILE_SIZE_LIMIT = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))
from tunelab.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_registry_on_a_full_disk_is_not_called_damaged(tunelab_home: Path) -> None:
    import subprocess
    import sys

    add_job("ftjob-kept", provider="local")
    for argv in (["jobs", "list"], ["jobs", "show", "ftjob-kept"]):
        done = subprocess.run([sys.executable, "-c", FILE_SIZE_LIMIT, *argv],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        line = one_error_line(done.stderr)
        assert "full" in line and "damaged" not in line and "backup" not in line, line
        assert str(tunelab_home / "runs") in line  # what to free
    with open_registry() as registry:  # and it is intact
        assert registry.get_job("ftjob-kept").status == "succeeded"


@pytest.mark.parametrize("name", ["SQLITE_FULL", "SQLITE_IOERR_SHMSIZE", "SQLITE_IOERR_WRITE"])
def test_sqlites_words_for_no_room_say_disk_full(name: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    import sqlite3

    from tunelab.registry import damage

    text = "database or disk is full" if name == "SQLITE_FULL" else "disk I/O error"
    error = sqlite3.OperationalError(text)
    error.sqlite_errorname = name
    # an I/O error is a full disk when the disk has no room left; else it may be damage
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(damage.shutil, "disk_usage",
                        lambda path: usage._replace(free=4096))
    said = damage.explain(tmp_path / "registry.sqlite", error).render()
    assert "is full" in said and "damaged" not in said
    monkeypatch.setattr(damage.shutil, "disk_usage",
                        lambda path: usage._replace(free=50 * 2**30))
    said = damage.explain(tmp_path / "registry.sqlite", error).render()
    assert ("damaged" in said) == (name == "SQLITE_IOERR_WRITE")


# item 29: SIGTERM stops a run as a cancel does; a running job whose process is gone shows ---
def test_sigterm_cancels_a_run_with_a_checkpoint_and_an_event(
        tmp_path: Path, tunelab_home: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    from conftest import TRAIN, VALID, write_chats
    from tunelab.local import checkpoints

    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"max_samples": 0}), encoding="utf-8")
    argv = ["train", str(write_chats(tmp_path / "train.jsonl", TRAIN)), "--validation-file",
            str(write_chats(tmp_path / "val.jsonl", VALID)), "--config", str(config),
            "--max-steps", "1000", "--save-every", "1000", "--batch-size", "2",
            "--max-length", "56", "--lora-r", "4", "--precision", "fp32", "--yes"]
    process = subprocess.Popen([sys.executable, "-m", "tunelab", *argv],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    run_dir = None
    while run_dir is None and time.monotonic() < deadline and process.poll() is None:
        run_dir = next((path.parent for path in (tunelab_home / "runs").glob("*/metrics.jsonl")
                        if path.stat().st_size), None)
        time.sleep(0.2)
    assert run_dir is not None, f"no step was logged (exit code {process.poll()})"
    process.send_signal(signal.SIGTERM)  # what systemd, docker stop and kill send
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err.decode()[-2000:]
    with open_registry() as registry:
        job = registry.get_job(run_dir.name)
        events = [event.message for event in registry.list_events(job.id)]
    assert job.status == "cancelled" and job.fine_tuned_model is None
    assert any("SIGTERM" in message for message in events), events
    latest = checkpoints.read_pointer(run_dir / "checkpoints", "latest")
    assert latest is not None and (latest / "optimizer.pt").is_file()  # resumable
    assert not (run_dir / "train.pid").exists()


def dead_pid() -> int:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_a_running_job_whose_process_is_gone_is_shown_as_such(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import time

    waits = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        assert len(waits) < 20, "jobs watch waits for a process that is gone"

    monkeypatch.setattr(time, "sleep", sleep)
    for job_id, pid in (("ftjob-killed", dead_pid()), ("ftjob-alive", os.getpid())):
        run_dir = tmp_path / job_id
        run_dir.mkdir()
        (run_dir / "train.pid").write_text(str(pid))
        add_job(job_id, provider="local", status="running", run_dir=str(run_dir))
    code, out, _ = run(capsys, "jobs", "list")
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("ftjob-")}
    assert "process gone" in rows["ftjob-killed"] and "process gone" not in rows["ftjob-alive"]
    code, out, _ = run(capsys, "jobs", "show", "ftjob-killed")
    flat = " ".join(out.split())  # the value may wrap at the terminal's width
    assert "running (process gone" in flat
    assert "tunelab train --resume ftjob-killed" in flat  # what to do about it
    # watch does not wait forever for a process that is gone
    code, out, err = run(capsys, "jobs", "watch", "ftjob-killed", "--interval", "0.01")
    assert code == 1 and "process gone" in out + err


# item 35: a copied or moved home names its own runs, never the original's ---------------
def local_run(home: Path, job_id: str, status: str = "running") -> Path:
    """A local job of `home` with a run folder and a kept checkpoint, as the trainer leaves
    them (absolute paths in, as every writer hands them over)."""
    from tunelab.registry.store import Checkpoint

    run_dir = home / "runs" / job_id
    (run_dir / "checkpoints" / "step-000002").mkdir(parents=True)
    with open_registry(home / "registry.sqlite") as registry:
        add = JobRecord(id=job_id, provider="local", status=status, created_at=1.0,
                        updated_at=1.0, run_dir=str(run_dir))
        registry.create_job(add)
        registry.upsert_checkpoint(Checkpoint(job_id, "step-000002", "step", 2.0, step=2,
                                              path=str(run_dir / "checkpoints" /
                                                       "step-000002")))
    return run_dir


def test_a_copied_home_acts_on_its_own_runs(tmp_path: Path, tunelab_home: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    original = tmp_path / "original"
    local_run(original, "ftjob-moved")
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    monkeypatch.setenv("TUNELAB_HOME", str(copy))
    with open_registry() as registry:
        job = registry.get_job("ftjob-moved")
        [checkpoint] = registry.list_checkpoints("ftjob-moved")
    assert job.run_dir == str(copy / "runs" / "ftjob-moved")
    assert checkpoint.path == str(copy / "runs" / "ftjob-moved" / "checkpoints" / "step-000002")
    code, out, _ = run(capsys, "jobs", "cancel", "ftjob-moved")
    assert code == 0
    assert not any(path.name == "cancel.request" for path in original.rglob("*"))
    shutil.rmtree(original)  # the copy stands on its own
    code, out, _ = run(capsys, "jobs", "checkpoints", "ftjob-moved")
    assert code == 0 and "step-000002" in out


def test_old_rows_of_a_moved_home_are_upgraded_to_home_relative_paths(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    from tunelab.registry.migrations import MIGRATIONS

    old = tmp_path / "old-home"
    old.mkdir()
    conn = sqlite3.connect(old / "registry.sqlite")
    version = next(number for number, step in MIGRATIONS if number == 4)
    for number, step in MIGRATIONS[:version]:  # the registry as tunelab left it before
        if isinstance(step, str):
            conn.executescript(f"BEGIN;\n{step}\nPRAGMA user_version = {number};\nCOMMIT;")
        else:
            step(conn, old)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.commit()
    from tunelab.config import TrainConfig

    elsewhere = tmp_path / "my-runs" / "first"  # --output-dir outside the home
    rows = [("ftjob-a", str(old / "runs" / "ftjob-a"), TrainConfig().model_dump_json()),
            ("ftjob-b", str(elsewhere), TrainConfig(output_dir=str(elsewhere)).model_dump_json()),
            ("ftjob-c", str(old / "runs" / "ftjob-c"), "{torn")]  # damaged config JSON
    for seq, (job_id, run_dir, config) in enumerate(rows, 1):
        kind = None if config == "{torn" else "local"
        conn.execute("INSERT INTO jobs (id, provider, status, created_at, updated_at, "
                     "run_dir, config_json, config_kind, seq) VALUES (?, 'local', "
                     "'succeeded', 1, 1, ?, ?, ?, ?)", (job_id, run_dir, config, kind, seq))
        (Path(run_dir) / "checkpoints" / "step-000001").mkdir(parents=True)
        conn.execute("INSERT INTO checkpoints VALUES (?, 'step-000001', 'step', 1, 0, ?, "
                     "'{}', 1)", (job_id, str(Path(run_dir) / "checkpoints" / "step-000001")))
    conn.commit()
    conn.close()
    new = tmp_path / "new-home"
    old.rename(new)  # moved: every absolute path in it now names a folder that is gone
    monkeypatch.setenv("TUNELAB_HOME", str(new))
    with open_registry() as registry:
        jobs = {job_id: registry.get_job(job_id) for job_id in ("ftjob-a", "ftjob-b")}
        listed = {job_id: registry.list_checkpoints(job_id) for job_id, _, _ in rows}
    assert jobs["ftjob-a"].run_dir == str(new / "runs" / "ftjob-a")
    assert [c.path for c in listed["ftjob-a"]] == [
        str(new / "runs" / "ftjob-a" / "checkpoints" / "step-000001")]
    assert jobs["ftjob-b"].run_dir == str(elsewhere)  # not the home's: left as it was
    assert [c.path for c in listed["ftjob-b"]] == [str(elsewhere / "checkpoints" /
                                                       "step-000001")]
    assert len(listed["ftjob-c"]) == 1  # a row whose config is damaged moves all the same
    stored = sqlite3.connect(new / "registry.sqlite").execute(
        "SELECT id, run_dir FROM jobs ORDER BY id").fetchall()
    assert stored == [("ftjob-a", "runs/ftjob-a"), ("ftjob-b", str(elsewhere)),
                      ("ftjob-c", "runs/ftjob-c")]
