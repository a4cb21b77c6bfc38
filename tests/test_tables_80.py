"""Every command that prints a table fits an 80-column terminal and never cuts the ids a user
must copy (issue 26, item 36). The migrate tables are checked against a live stand-in in
tests/test_migrate_hardening.py; here, every other table command on one registry."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tunelab.cli import console, main
from tunelab.config import TrainConfig
from tunelab.registry import Checkpoint, JobRecord, open_registry

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
LONG_MODEL = "ft:gpt-4o-mini-2024-07-18:a-rather-long-organisation:natasha-coach:Nt4sh4xyz"
IDS = ("ftjob-0123456789abcdef01234567", "ftjob-89abcdef0123456789abcdef")


@pytest.fixture
def narrow(monkeypatch: pytest.MonkeyPatch) -> None:
    for each in (console.out, console.err):
        monkeypatch.setattr(each, "_width", 80)


def _jobs(tmp_path: Path) -> None:
    now = time.time()
    with open_registry() as registry:
        for number, job_id in enumerate(IDS):
            registry.create_job(JobRecord(
                id=job_id, provider="local", status="succeeded", created_at=now - 60 + number,
                updated_at=now, finished_at=now, base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
                fine_tuned_model=LONG_MODEL, config=TrainConfig(learning_rate=1e-3 * (number + 1)),
                metrics={"train_loss": 1.5, "tokens_per_s": 200.0}, run_dir=str(tmp_path)))
            registry.add_metrics(job_id, 1, {"train_loss": 1.4, "valid_loss": 1.3})
            (tmp_path / "checkpoints" / "step-000001").mkdir(parents=True, exist_ok=True)
            registry.upsert_checkpoint(Checkpoint(
                job_id=job_id, name="step-000001", kind="step", created_at=now, step=1,
                path=str(tmp_path / "checkpoints" / "step-000001"),
                metrics={"train_loss": 1.4}))


def _table_lines(printed: str, marks: tuple[str, ...]) -> list[str]:
    """The lines of the table: its rule and its rows (prose around it is left to the
    terminal's own wrapping: the consoles soft-wrap)."""
    return [line for line in printed.splitlines()
            if "──" in line or any(line.lstrip().startswith(mark) for mark in marks)]


# (command, values that must appear whole, marks of the table's rows)
CASES = [
    (("jobs", "list"), IDS, IDS),
    # A fine-tuned model name wider than a row folds onto the next line (left for later).
    (("jobs", "show", IDS[0]), (IDS[0],), ("provider ", "status ", "learning_rate")),
    (("jobs", "compare", *IDS), IDS, ("learning_rate", "train_loss")),
    (("jobs", "checkpoints", IDS[0]), ("step-000001",), ("step-000001",)),
    (("checkpoints", IDS[1]), ("step-000001",), ("step-000001",)),
    (("presets",), ("quick", "standard", "precision"), ("quick ", "standard ", "precision ")),
    (("data", "cost", str(EXAMPLES / "natasha_train.jsonl")), ("gpt-4o-mini-2024-07-18",),
     ("openai ", "vertex ")),
]


@pytest.mark.parametrize("args, whole, marks", CASES)
def test_table_commands_fit_80_columns_and_keep_ids_whole(
        narrow: None, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...],
        whole: tuple[str, ...], marks: tuple[str, ...]) -> None:
    _jobs(tmp_path)
    capsys.readouterr()
    assert main(list(args)) == 0
    printed = capsys.readouterr().out
    lines = _table_lines(printed, marks)
    assert lines and max(len(line) for line in lines) <= 80, printed
    for value in whole:
        assert value in printed, (value, printed)


def test_the_sweep_table_fits_80_columns_and_keeps_job_ids_whole() -> None:
    from tunelab.cli.sweep_cmd import trial_table
    from tunelab.sweep.board import Board

    board = Board("sweep-0123456789ab", "openai", "grid")
    for index, job_id in enumerate(IDS):
        row = board.row(index, {"learning_rate": 1e-4 * (index + 1), "lora_r": 16})
        row.job_id, row.status, row.note = job_id, "succeeded", "a long note " * 8
    width = 80
    with console.out.capture() as captured:
        console.out.print(trial_table(board, width))
    lines = [line for line in captured.get().splitlines()
             if "──" in line or any(job_id in line for job_id in IDS)]
    assert max(len(line) for line in lines) <= width
    assert all(job_id in captured.get() for job_id in IDS)
