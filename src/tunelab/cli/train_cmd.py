"""`tunelab train`, `tunelab presets` and `tunelab checkpoints`.

Thin: parse the flags into one typed TrainOptions, resolve the config (preset < config file
< flags), run it through the local provider's contract (or the cloud path for other
providers), render the result.
"""

from __future__ import annotations

import json
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from tunelab.cli.config_flags import ProviderFlags, ProviderValues, TrainingFlags, generated
from tunelab.cli.console import err as console
from tunelab.cli.console import out, plain, styled
from tunelab.cli.formatting import Col, fitted_table
from tunelab.cli.train_options import CLOUD, BaseUrlFlag, CloudOptions, TimeoutFlag, TrainOptions
from tunelab.config import TrainConfig
from tunelab.errors import UsageError
from tunelab.providers.base import ProviderSettings

if TYPE_CHECKING:
    from tunelab.local.recorder import EventHandler


# Every TrainConfig key is a flag of `tunelab train`, but the FILE argument and --preset.
TRAIN_FLAGS = TrainingFlags.every(leave_out=("train_file", "preset"))
DESCRIBED = TrainConfig.model_fields


@generated
def train(
    file: Path | None = typer.Argument(None, help=f"{DESCRIBED['train_file'].description} "
                                                  "Not needed with --resume."),
    provider: str = typer.Option("local", "--provider", help="local, openai, kimi, vertex or a "
                                                             "custom endpoint profile."),
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
    raise typer.Exit(run_train(options))


def run_train(options: TrainOptions) -> int:
    """`tunelab train` for typed options; returns the exit code."""
    if options.provider != "local":
        from tunelab.cli.cloud_cmd import train_remote

        return train_remote(options)
    if options.resume:
        return _resume(options.resume, options)
    if options.file is None:
        raise UsageError("FILE is missing", fix="tunelab train FILE (or --resume JOB)")
    from tunelab.config import resolve_config
    from tunelab.config import save_config as write_config

    flags = {**_config_overrides(options), "train_file": str(options.file)}
    resolved = resolve_config(preset=options.preset, config_file=options.config_file,
                              flags=flags)
    if options.save_config:  # save and stop: the saved file is the run's reproducible recipe
        write_config(resolved, options.save_config, force=options.force)
        print(f"saved the resolved config to {options.save_config}; train with: "
              f"tunelab train {options.file} --config {options.save_config}")
        return 0
    if options.dry_run:
        _dry_run(resolved, options.json)
        return 0
    if options.nproc != 1:
        from tunelab.local import launch

        return launch.relaunch_train(options.nproc, resolved, json_out=options.json)
    return _follow(lambda on_event, stop: _train_here(resolved, on_event, stop,
                                                      options.metadata), options.json)


def _config_overrides(options: TrainOptions) -> dict[str, Any]:
    """The TrainConfig keys the flags set, with --preset among them."""
    overrides = dict(options.flags)
    if options.preset:
        overrides["preset"] = options.preset
    return overrides


def _train_here(config: TrainConfig, on_event: EventHandler, stop: threading.Event,
                metadata: dict[str, str]) -> dict[str, Any]:
    """Run the job through the local provider's contract; the run's result object."""
    from tunelab.providers.base import JobSpec
    from tunelab.providers.local import LocalProvider

    spec = JobSpec(base_model=config.model or "", training_file=config.train_file or "",
                   validation_file=config.validation_file, suffix=config.suffix,
                   epochs=config.epochs, learning_rate=config.learning_rate,
                   batch_size=config.batch_size, seed=config.seed, config=config,
                   metadata=dict(metadata))
    return LocalProvider(on_event=on_event, stop=stop).create_job(spec).raw


def _resume(job_id: str, options: TrainOptions) -> int:
    from tunelab.config import load_config_file
    from tunelab.local import orchestrator

    overrides = _config_overrides(options)
    if options.config_file is not None:
        overrides = {**load_config_file(options.config_file), **overrides}
    if options.file is not None:
        overrides["train_file"] = str(options.file)
    if options.nproc != 1:
        from tunelab.local import launch

        return launch.relaunch_resume(options.nproc, job_id, overrides, json_out=options.json)
    return _follow(lambda on_event, stop: orchestrator.resume(
        job_id, overrides, on_event=on_event, stop=stop), options.json)


def _follow(run: Any, json_out: bool) -> int:
    """Run a local job with a live progress bar on stderr; print the result; exit code."""
    from tunelab.cli.train_view import TrainProgress

    # peft calls a transformers API that warns about its own rename on every load: noise.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
    stop = threading.Event()
    with TrainProgress(console) as progress:
        result = run(progress.on_event, stop)
    if json_out:
        print(json.dumps(result, ensure_ascii=False))
    else:
        _print_result(result)
    return 130 if result["status"] == "cancelled" else 0 if result["status"] == "succeeded" \
        else 1


# The run summary's values `_print_result` shows, in the metric vocabulary.
RESULT_METRICS = ("train_loss", "last_train_loss", "valid_loss", "best_valid_loss",
                  "valid_mean_token_accuracy", "trained_tokens", "tokens_per_s", "steps")


def _print_result(result: dict[str, Any]) -> None:
    metrics = result.get("metrics") or {}
    console.print(styled((result["status"], "bold"), " ", result["id"]))
    if result.get("fine_tuned_model"):
        print(f"model: {result['fine_tuned_model']}")
    print(f"run folder: {result['run_dir']}")
    shown = {key: metrics.get(key) for key in RESULT_METRICS}
    print("  ".join(f"{key} {value}" for key, value in shown.items() if value is not None))
    if result["status"] == "cancelled":
        print(f"resume with: tunelab train --resume {result['id']}")


def _dry_run(config: Any, json_out: bool) -> None:
    from tunelab.cli.train_view import render_dry_run
    from tunelab.local.dryrun import dry_run

    with console.status(plain("dry run: tokenizing and timing a few real steps...")):
        report = dry_run(config)
    if json_out:
        print(json.dumps(report, ensure_ascii=False))
    else:
        render_dry_run(report)


def presets(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The training presets: their settings, and what each cost and gained on the sample
    data (time, tokens/s, held-out loss against the base model)."""
    from tunelab.config import PRESET_NOTE, PRESETS

    if json_out:
        print(json.dumps({"presets": PRESETS, "note": PRESET_NOTE}))
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
