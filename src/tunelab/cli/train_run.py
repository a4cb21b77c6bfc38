"""`tunelab train` after its flags are parsed: one RunRequest through the door.

`run_train(options)` resolves the config (preset < config file < flags), builds the request
(target, labels, intent), starts it with the terminal's reporter and renders what comes
back: a local run's result, a cloud job followed to its end, a dry run's plan.
"""

from __future__ import annotations

import json
import threading
import warnings
from dataclasses import asdict
from typing import Any

from tunelab import runs
from tunelab.cli.console import emit_json, err, out, plain, styled
from tunelab.cli.run_reporter import TerminalReporter
from tunelab.cli.train_options import TrainOptions
from tunelab.errors import UsageError, command
from tunelab.runs import Intent, RunRequest, Started, Target


def run_train(options: TrainOptions) -> int:
    """`tunelab train` for typed options; returns the exit code."""
    if options.resume:
        return _resume(options.resume, options)
    if options.file is None:
        raise UsageError("FILE is missing", fix="tunelab train FILE (or --resume JOB)")
    request = train_request(options)
    if options.save_config:  # save and stop: the saved file is the run's reproducible recipe
        from tunelab.config import save_config

        save_config(request.config, options.save_config, force=options.force)
        print(f"saved the resolved config to {options.save_config}; train with: "
              + command("tunelab", "train", options.file, "--config", options.save_config))
        return 0
    if options.nproc != 1:
        from tunelab.local import launch

        return launch.relaunch_train(options.nproc, request.config, json_out=options.json)
    return start(request, options)[0]


def start(request: RunRequest, options: TrainOptions) -> tuple[int, Started]:
    """Send `request` through the door and render what comes back; the exit code and the
    start (its job, when one was made: `migrate retrain` links it)."""
    reporter = TerminalReporter(yes=options.cloud.yes, max_cost=options.cloud.max_cost)
    if request.target.is_local and not options.dry_run:  # checked and fetched before the
        from tunelab.cli.models_cmd import prepare_train_model  # live display, asked at once

        prepare_train_model(request.config, yes=options.cloud.yes)
    if options.dry_run:  # checks and a plan, no question asked: a spinner meanwhile
        with err.status(plain("checking...")):
            started = runs.start(request, reporter)
        return _render_start(started, request, options), started
    if not request.target.is_local:  # rendering: the launch's steps print as they happen,
        # and the cost question needs the terminal to itself (no live display around it)
        started = runs.start(request, reporter)
        return _render_start(started, request, options), started
    return _follow(lambda on_event, stop: runs.start(
        request, TerminalReporter(on_event=on_event), stop=stop), options.json)


def given_flags(options: TrainOptions) -> dict[str, Any]:
    """The TrainConfig keys the flags set, with --preset among them."""
    flags = {key: value for key, value in options.flags.items() if value is not None}
    if options.preset:
        flags["preset"] = options.preset
    return flags


def train_request(options: TrainOptions) -> RunRequest:
    """The one request `tunelab train` (and `migrate retrain`) sends through the door."""
    from tunelab.cli.cloud_cmd import with_retries
    from tunelab.cli.train_options import known_provider
    from tunelab.config import resolve_config

    cloud = options.cloud
    known_provider(cloud.provider)  # before the data is read and priced
    target = Target(cloud.provider, with_retries(cloud.settings, cloud.timeout),
                    cloud.learning_rate_multiplier)
    flags = {**given_flags(options), "train_file": str(options.file)}
    config = resolve_config(preset=options.preset, config_file=options.config_file,
                            flags=flags)
    intent = Intent(dry_run=options.dry_run, validate_only=cloud.validate_only,
                    upload_only=cloud.upload_only, wait=not cloud.no_wait)
    return RunRequest(config=config, target=target, labels=dict(options.metadata),
                      intent=intent)


def _render_start(started: Started, request: RunRequest, options: TrainOptions) -> int:
    """What a dry run, a validate-only, an upload-only or a cloud start handed back."""
    if started.plan is not None:  # a local dry run
        from tunelab.cli.train_view import render_dry_run

        if options.json:
            emit_json(started.plan)
        else:
            render_dry_run(started.plan)
        return 0
    if started.job is None:
        return _render_checked(started, options)
    job = started.job
    if options.cloud.no_wait:
        err.print("Not waiting. Follow it with: " + command("tunelab", "jobs", "watch", job.id))
        if options.json:
            from tunelab.cli.cloud_cmd import record_summary

            emit_json(record_summary(job))
        return 0
    from tunelab.cli.cloud_cmd import follow
    from tunelab.providers import get_provider

    return follow(get_provider(request.target.provider, request.target.settings), job.id,
                  interval=options.cloud.interval or 60.0, as_json=options.json,
                  prompts=request.config.prompts, timeout=options.cloud.timeout)


def _render_checked(started: Started, options: TrainOptions) -> int:
    """--validate-only and --dry-run (nothing created), --upload-only (files, no job)."""
    if options.cloud.upload_only:
        if options.json:
            emit_json({"files": {role: asdict(ref) for role, ref in started.uploads.items()}})
        return 0
    payload: dict[str, Any] = {"ok": True, "examples": started.report.valid_examples,
                               "cost": started.estimates[0].as_dict()}
    if started.description is not None:
        payload = {**started.description, **payload}
        err.print("Dry run: nothing was uploaded and no job was created.")
        if not options.json:
            out.print(json.dumps(started.description, indent=2, ensure_ascii=False),
                      markup=False)
    if options.json:
        emit_json(payload)
    return 0


def _resume(job_id: str, options: TrainOptions) -> int:
    from tunelab.config import load_config_file
    from tunelab.registry import open_registry

    overrides = given_flags(options)
    if options.config_file is not None:
        overrides = {**load_config_file(options.config_file), **overrides}
    if options.file is not None:
        overrides["train_file"] = str(options.file)
    if options.nproc != 1:
        from tunelab.local import launch

        return launch.relaunch_resume(options.nproc, job_id, overrides, json_out=options.json)
    with open_registry() as registry:
        job = registry.get_job(job_id)
    return _follow(lambda on_event, stop: runs.resume(
        job, reporter=TerminalReporter(on_event=on_event), overrides=overrides,
        stop=stop), options.json)[0]


def _follow(run: Any, json_out: bool) -> tuple[int, Started]:
    """Run a local job with a live progress bar on stderr; print its result; the exit code
    and the start."""
    from tunelab.cli.train_view import TrainProgress

    # peft calls a transformers API that warns about its own rename on every load: noise.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
    stop = threading.Event()
    with TrainProgress(err) as progress:
        started = run(progress.on_event, stop)
    result = started.result
    if json_out:
        emit_json(result)
    else:
        _print_result(result)
    code = 130 if result["status"] == "cancelled" else 0 if result["status"] == "succeeded" \
        else 1
    return code, started


# The run summary's values `_print_result` shows, in the metric vocabulary.
RESULT_METRICS = ("train_loss", "last_train_loss", "valid_loss", "best_valid_loss",
                  "valid_mean_token_accuracy", "trained_tokens", "tokens_per_s", "steps")


def _print_result(result: dict[str, Any]) -> None:
    metrics = result.get("metrics") or {}
    err.print(styled((result["status"], "bold"), " ", result["id"]))
    if result.get("fine_tuned_model"):
        print(f"model: {result['fine_tuned_model']}")
    print(f"run folder: {result['run_dir']}")
    shown = {key: metrics.get(key) for key in RESULT_METRICS}
    print("  ".join(f"{key} {value}" for key, value in shown.items() if value is not None))
    if result["status"] == "cancelled":
        print("resume with: " + command("tunelab", "train", "--resume", result["id"]))
