"""What a person reads in a terminal: `jobs list` at 80 columns, `jobs show`, and the model
load that `make demo` (and every local command) starts with, free of third-party noise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from tunelab.cli import main
from tunelab.cli.formatting import SPARK_BARS, Col, fitted_table, sparkline
from tunelab.config import TrainConfig
from tunelab.registry import JobRecord, open_registry

OPENAI_ID = "ftjob-AbCdEfGhIjKlMnOpQrStUvWx"  # ftjob- and 24 characters, as OpenAI makes them
LOCAL_ID = "ftjob-0123456789abcdef01234567"  # registry.new_job_id: ftjob- and 24 hex
OPENAI_MODEL = "ft:gpt-4o-mini-2024-07-18:personal-org:natasha-helper:AbCdEfGh"
CREATED = 1796210969.6687045


def add_job(job_id: str, provider: str, **fields) -> JobRecord:
    with open_registry() as registry:
        return registry.create_job(JobRecord(
            id=job_id, provider=provider, status=fields.pop("status", "succeeded"),
            created_at=CREATED, updated_at=CREATED + 600, finished_at=CREATED + 600,
            **fields))


def add_jobs() -> None:
    add_job(OPENAI_ID, "openai", base_model="gpt-4o-mini-2024-07-18",
            fine_tuned_model=OPENAI_MODEL)
    add_job(LOCAL_ID, "local", base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
            fine_tuned_model=LOCAL_ID,
            config=TrainConfig(learning_rate=0.0005, epochs=3, target_modules="all-linear"),
            metrics={"train_loss": 1.61234, "best_valid_loss": 1.9, "trained_tokens": 34681})
    with open_registry() as registry:
        for step in range(1, 41):  # falling train loss every step, validation every 10
            values = {"train_loss": 3.0 - step * 0.05}
            if step % 10 == 0:
                values["valid_loss"] = 2.8 - step * 0.02
            registry.add_metrics(LOCAL_ID, step, values)


def test_jobs_list_on_an_80_column_terminal_shows_every_id_whole(tunelab_home: Path) -> None:
    add_jobs()
    env = {**os.environ, "COLUMNS": "80", "LINES": "25"}
    shown = subprocess.run([sys.executable, "-m", "tunelab", "jobs", "list"], env=env,
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    for job_id in (OPENAI_ID, LOCAL_ID):
        assert any(job_id in line for line in lines), shown.stdout
    assert "…" not in shown.stdout  # nothing is cut: what does not fit wraps or leaves
    assert max(len(line.rstrip()) for line in lines) <= 80
    assert "succeeded" in shown.stdout  # status stays; lesser columns left first


@pytest.mark.parametrize("width", [40, 60, 80, 100, 160])
def test_a_fitted_table_wraps_and_drops_other_columns_before_it_cuts_a_key(width: int) -> None:
    vertex_id = "projects/my-project/locations/us-central1/tuningJobs/1234567890"
    columns = (Col("id", key=True), Col("provider", drop=3), Col("status", drop=1),
               Col("base model", wrap=True, min_width=12, drop=5),
               Col("fine-tuned model", wrap=True, min_width=20, drop=2),
               Col("created", wrap=True, drop=4), Col("duration", drop=6))
    rows = [[job_id, "openai", "succeeded", "gpt-4o-mini-2024-07-18", OPENAI_MODEL,
             "2026-12-02 20:41", "10m00s"] for job_id in (OPENAI_ID, LOCAL_ID)]
    for table_rows in (rows, [*rows, [vertex_id, "vertex", "running", "gemini-2.5-flash",
                                      "", "2026-12-02 20:41", "1h02m"]]):
        console = Console(width=width, file=StringIO(), markup=False)
        console.print(fitted_table(columns, table_rows, width))
        text = console.file.getvalue()
        assert "…" not in text
        assert max(len(line.rstrip()) for line in text.splitlines()) <= width
        joined = "".join(line.strip() for line in text.splitlines())
        for row in table_rows:  # a key wider than the terminal folds, whole, onto more lines
            assert row[0] in text or width < len(row[0]) and row[0] in joined


def test_jobs_show_prints_local_dates_aligned_tables_and_a_loss_sparkline(
        capsys: pytest.CaptureFixture[str]) -> None:
    add_jobs()
    assert main(["jobs", "show", LOCAL_ID]) == 0
    shown = capsys.readouterr().out
    assert "1796210969" not in shown and "{" not in shown  # no epoch floats, no JSON dumps
    created = datetime.fromtimestamp(CREATED).strftime("%Y-%m-%d %H:%M")
    assert f"created           {created} (" in shown and " ago)" in shown
    lines = shown.splitlines()
    config = {line.split()[0]: line for line in lines
              if line.split() and line.split()[0] in ("learning_rate", "epochs",
                                                      "target_modules")}
    assert set(config) == {"learning_rate", "epochs", "target_modules"}
    assert len({line.index(line.split()[1]) for line in config.values()}) == 1  # one column
    assert config["learning_rate"].split()[1] == "0.0005"
    train = next(line for line in lines if line.startswith("train_loss"))
    assert "1.6123" in train and "2.9500 → 1.0000, 40 points" in train
    spark = next(word for word in train.split() if set(word) <= set(SPARK_BARS))
    assert spark[0] == "█" and spark[-1] == "▁" and len(spark) == 20  # 40 points, falling
    valid = next(line for line in lines if line.startswith("valid_loss"))
    assert "2.0000" in valid and "4 points" in valid  # the last validation, and its curve
    assert "trained_tokens" in shown and "34,681" in shown


def test_jobs_show_json_keeps_the_machine_values(capsys: pytest.CaptureFixture[str]) -> None:
    add_jobs()
    assert main(["jobs", "show", LOCAL_ID, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["created_at"] == CREATED and shown["finished_at"] == CREATED + 600
    assert shown["metrics"] == {"train_loss": 1.61234, "best_valid_loss": 1.9,
                                "trained_tokens": 34681}
    assert shown["config"]["learning_rate"] == 0.0005


def test_a_sparkline_keeps_the_shape_of_its_curve() -> None:
    assert sparkline([1.0, 2.0, 3.0]) == "▁▅█"
    assert sparkline([2.0, 2.0]) == "▅▅"
    assert sparkline([]) == ""
    assert len(sparkline(list(range(1000)), width=20)) == 20


LOAD = """
import warnings
from peft import LoraConfig, get_peft_model
from tunelab.local import model_source

model = model_source.load_model(None)
model_source.load_tokenizer(None)
get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"]))  # as training does
warnings.warn("a warning of tunelab's own")
warnings.warn("another FutureWarning", FutureWarning)
"""


@pytest.mark.slow
def test_loading_the_embedded_model_prints_no_third_party_noise(tmp_path: Path) -> None:
    # A fresh cache: the GGUF is converted here, as on a new machine's first `make demo`.
    env = {**os.environ, "TUNELAB_CACHE_DIR": str(tmp_path / "cache"), "PYTHONWARNINGS": ""}
    loaded = subprocess.run([sys.executable, "-c", LOAD], env=env, capture_output=True,
                            text=True, timeout=600)
    assert loaded.returncode == 0, loaded.stderr
    assert "de-quantizing" not in loaded.stderr and "it/s]" not in loaded.stderr
    assert "is_gradient_checkpointing" not in loaded.stderr
    # Only that one notice is silenced: tunelab's warnings and other FutureWarnings show.
    assert "a warning of tunelab's own" in loaded.stderr
    assert "another FutureWarning" in loaded.stderr
    assert (tmp_path / "cache" / "models").is_dir()


def test_make_demo_ends_with_the_dashboard_address_of_its_job(tmp_path: Path) -> None:
    import inspect

    from tunelab.cli.ui_cmd import ui

    repo = Path(__file__).resolve().parents[1]
    planned = subprocess.run(["make", "-n", "--no-print-directory", "demo",
                              f"TUNELAB_HOME={tmp_path}"], cwd=repo, capture_output=True,
                             text=True, timeout=60)
    assert planned.returncode == 0, planned.stderr
    last = planned.stdout.strip().splitlines()[-1]
    assert "Open the dashboard" in last
    # As the demo's train step leaves it; the last line must name that job.
    (tmp_path / "demo-train.json").write_text(json.dumps({"id": LOCAL_ID}))
    shown = subprocess.run(["bash", "-c", last], cwd=repo, capture_output=True, text=True,
                           timeout=60)
    port = inspect.signature(ui).parameters["port"].default.default  # tunelab ui's --port
    assert shown.stdout.strip() == (f"Open the dashboard: .venv/bin/tunelab ui, then "
                                    f"http://127.0.0.1:{port}/jobs/{LOCAL_ID}")


@pytest.mark.parametrize("width", [80, 120])
def test_the_sweep_table_keeps_every_trial_job_id_whole(width: int) -> None:
    """The live sweep table used to squeeze the job column to "ftjob-df753ce58af4c8…" (and
    the parameters and losses to "…") on an 80-column terminal or in a log."""
    from tunelab.cli.sweep_cmd import trial_table
    from tunelab.sweep.board import Board

    board = Board("sweep-881fcb1ab302", "local", "grid", base_valid_loss=2.6524)
    ids = ["ftjob-df753ce58af4c81b199e343d", "ftjob-3d31fada2d363a9edd449876"]
    for index, (job_id, rate, loss) in enumerate(zip(ids, (5e-4, 4e-3), (2.2055, 2.2943),
                                                     strict=True)):
        row = board.row(index, {"learning_rate": rate})
        row.job_id, row.status, row.best_valid_loss = job_id, "succeeded", loss
        row.step, row.total_steps, row.seconds = 120, 120, 412.0
    board.rows[1].status = "pruned"
    board.rows[1].note = "pruned at step 40: best validation loss 2.2943 above the median"
    screen = Console(width=width, record=True, file=StringIO())
    screen.print(trial_table(board, width))
    text = screen.export_text()
    assert all(job_id in text for job_id in ids)
    assert "2.2055 ★" in text and "lr=5e-04" in text and "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width
