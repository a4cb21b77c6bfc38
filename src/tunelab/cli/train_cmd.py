"""`tunelab train`, `tunelab presets` and `tunelab checkpoints`.

Thin: parse the flags into one typed TrainOptions and hand it to cli/train_run.py, which
sends one request through the door (tunelab.runs) and renders what comes back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from tunelab.cli.config_flags import ProviderFlags, ProviderValues, TrainingFlags, generated
from tunelab.cli.console import emit_json, out, plain
from tunelab.cli.formatting import Col, fitted_table
from tunelab.cli.train_options import CLOUD, BaseUrlFlag, CloudOptions, TimeoutFlag, TrainOptions
from tunelab.config import TrainConfig
from tunelab.providers.base import ProviderSettings

# Every TrainConfig key is a flag of `tunelab train`, but the FILE argument and --preset.
TRAIN_FLAGS = TrainingFlags.every(leave_out=("train_file", "preset"))
DESCRIBED = TrainConfig.model_fields


@generated
def train(
    file: Path | None = typer.Argument(None, help=f"{DESCRIBED['train_file'].description} "
                                                  "Not needed with --resume."),
    provider: str = typer.Option("local", "--provider", help="local, openai, together, "
                                 "fireworks, azure, vertex, kimi or a custom endpoint "
                                 "profile."),
    preset: str | None = typer.Option(None, "--preset", help=DESCRIBED["preset"].description),
    config: Path | None = typer.Option(None, "--config", help="JSON or YAML config file; "
                                       "flags override it, it overrides the preset."),
    save_config: Path | None = typer.Option(None, "--save-config", help="Write the resolved "
                                            "config to this file (JSON/YAML) and stop."),
    force: bool = typer.Option(False, "--force", help="Let --save-config overwrite a file."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check, plan and time a few steps; "
                                 "train nothing, register nothing."),
    resume: str | None = typer.Option(None, "--resume", help="Continue local job JOB from "
                                      "its latest checkpoint (flags like --epochs extend it)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object at the end."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Don't ask for confirmation."),
    nproc: int = typer.Option(1, "--nproc", help="Train in N processes under accelerate "
                              "launch: one per GPU (DDP), or CPU processes over gloo. "
                              "--batch-size is per process."),
    flags: dict[str, Any] = TRAIN_FLAGS,
    learning_rate_multiplier: float | None = typer.Option(
        None, "--learning-rate-multiplier", help="Cloud: LR multiplier.", rich_help_panel=CLOUD),
    max_cost: float | None = typer.Option(None, "--max-cost", rich_help_panel=CLOUD,
                                          help="Cloud: refuse above this estimate (USD)."),
    validate_only: bool = typer.Option(False, "--validate-only", help="Cloud: check only.",
                                       rich_help_panel=CLOUD),
    upload_only: bool = typer.Option(False, "--upload-only", help="Cloud: upload, no job.",
                                     rich_help_panel=CLOUD),
    no_wait: bool = typer.Option(False, "--no-wait", help="Cloud: don't follow the job.",
                                 rich_help_panel=CLOUD),
    interval: float | None = typer.Option(None, "--interval", help="Cloud: poll seconds.",
                                          rich_help_panel=CLOUD),
    timeout: TimeoutFlag = None,
    base_url: BaseUrlFlag = None,
    target: ProviderValues = ProviderFlags(),
) -> None:
    """Fine-tune a model on FILE: locally (default) or on a cloud provider.

    Examples: `tunelab train data.jsonl --preset quick`,
    `tunelab train data.jsonl --config run.yaml --epochs 5`,
    `tunelab train --resume ftjob-... --epochs 5`.
    """
    options = TrainOptions(
        file=file, preset=preset, config_file=config, save_config=save_config, force=force,
        dry_run=dry_run, resume=resume, nproc=nproc, json=json_out, flags=flags,
        cloud=CloudOptions(
            provider=provider,
            settings=ProviderSettings(base_url=base_url, own=target.own(provider)),
            learning_rate_multiplier=learning_rate_multiplier, max_cost=max_cost,
            validate_only=validate_only, upload_only=upload_only, no_wait=no_wait,
            interval=interval, timeout=timeout, yes=yes))
    from tunelab.cli.train_run import run_train

    raise typer.Exit(run_train(options))


def presets(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The training presets: their settings, and what each cost and gained on the sample
    data (time, tokens/s, held-out loss against the base model)."""
    from tunelab.config import PRESET_NOTE, PRESETS

    if json_out:
        emit_json({"presets": PRESETS, "note": PRESET_NOTE})
        return
    out.print(presets_table(PRESETS, out.width))
    out.print(plain(PRESET_NOTE))


PRESET_COLUMNS = (Col("preset", key=True), Col("batch", drop=3), Col("epochs", drop=4),
                  Col("lr"), Col("max len", drop=6), Col("time"), Col("tok/s", drop=2),
                  Col("held-out loss (base)", wrap=True, min_width=12),
                  Col("purpose", wrap=True, min_width=16, drop=5))


def presets_table(presets: dict[str, dict[str, Any]], width: int) -> Table:
    from tunelab.config import TrainConfig

    rows = []
    for name, preset in presets.items():
        values, measured = preset["values"], preset["measured"] or {}
        length = values.get("max_length", TrainConfig.model_fields["max_length"].default)
        rows.append([name, str(values["batch_size"]), str(values["epochs"]),
                     f"{values['learning_rate']:g}", str(length), _measured_time(measured),
                     f"{measured['tokens_per_s']:.0f}" if measured else "",
                     _loss_against_base(measured), preset["purpose"]])
    return fitted_table(PRESET_COLUMNS, rows, width, title="tunelab presets (local, LoRA)")


def _measured_time(measured: dict[str, Any]) -> str:
    return f"{measured['minutes']:.1f} min" if measured else "not measured"


def _loss_against_base(measured: dict[str, Any]) -> str:
    """"2.160 (-18.6% vs 2.652)": the tuned loss, its change, the base it is against."""
    if not measured:
        return ""
    tuned, base = measured["heldout_loss"], measured["base_heldout_loss"]
    return f"{tuned:.3f} ({(tuned / base - 1) * 100:+.1f}% vs {base:.3f})"


def checkpoints(
    job_id: str = typer.Argument(..., help="A job id (see `tunelab jobs list`)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List a job's checkpoints: a local run's steps, epochs and latest/best pointers (the
    same as `tunelab jobs checkpoints`)."""
    from tunelab.cli.cloud_cmd import print_checkpoints

    raise typer.Exit(print_checkpoints(job_id, as_json=json_out))
