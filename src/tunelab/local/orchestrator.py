"""The local trainer's public surface: train(config) and resume(job_id, overrides).

Both run a job to its end in the calling thread and return the result object. The job is
registered (queued) before the model loads, so its id is never lost; it then moves to
running and ends succeeded, failed or cancelled. `stop` (a threading.Event) cancels
cleanly: the loop finishes its step, saves a checkpoint and returns; Ctrl-C or SIGTERM (what
systemd, docker stop and kill send) in the main thread sets it. A cancelled or killed job
resumes from its `latest` checkpoint, or, when that one does not read back, from the newest
older one that does (a warning event says so).

A finished job's status is final (the registry enforces it), with one exception: resume
reopens it. A resume that fails puts a finished job back exactly as it was, so a succeeded
job never turns failed because an attempt to train it further broke.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tunelab import home
from tunelab.config import TrainConfig, resolve_config
from tunelab.errors import NotFoundError, TunelabError, UsageError
from tunelab.local import checkpoints, launch, prepare, samples, trainer
from tunelab.local.liveness import PID_FILE, live_pid
from tunelab.local.memory import release_freed_memory
from tunelab.local.methods import Method, method_for
from tunelab.local.recorder import EventHandler, RunRecorder
from tunelab.local.start import resolve_start
from tunelab.local.state import TrainState, checkpoint_problem
from tunelab.local.warm import Trial
from tunelab.registry import JobRecord, Registry, metrics, new_job_id, open_registry
from tunelab.registry.store import CANCELLING

PROVIDER = "local"


def train(config: TrainConfig, *, job_id: str | None = None,
          on_event: EventHandler | None = None, stop: threading.Event | None = None,
          trial: Trial | None = None, metadata: dict[str, str] | None = None) -> dict[str, Any]:
    """Train `config` as a new local job (or the given pre-created one) and return its result.

    `trial`: a sweep's trial, trained on the sweep's loaded base and tokenized data, labelled
    with its sweep in the registry, pruned when its judge says so, with no sample answers.
    `metadata`: labels the row carries from its creation (a retrain's link to the job it
    replaces), so a run killed mid-way keeps them."""
    prepare.check_config(config)
    config = resolve_start(config)  # --from JOB: its base is this run's model
    # bad data fails here, before a job exists
    examples = trial.warm.examples if trial else prepare.read_examples(config)
    if not launch.is_main_rank():  # under accelerate launch: rank 0 alone keeps the books
        return launch.follow(config, stop=stop)
    job_id = job_id or new_job_id()
    run_dir = _fresh_run_dir(config, job_id)
    with open_registry() as registry:
        _register(registry, job_id, config, run_dir, trial, metadata)
        return _execute(registry, job_id, config, run_dir, examples, None, on_event, stop,
                        before=None, trial=trial)


def resume(job_id: str, overrides: dict[str, Any] | None = None, *,
           on_event: EventHandler | None = None,
           stop: threading.Event | None = None, trial: Trial | None = None) -> dict[str, Any]:
    """Continue a local job from its latest checkpoint; `overrides` (e.g. epochs) extend it.
    `trial`: a sweep's interrupted trial, as for `train`."""
    with open_registry() as registry:
        return _resume(registry, job_id, overrides, on_event, stop, trial)


def _resume(registry: Registry, job_id: str, overrides: dict[str, Any] | None,
            on_event: EventHandler | None, stop: threading.Event | None,
            trial: Trial | None) -> dict[str, Any]:
    job = registry.get_job(job_id)
    if job.provider != PROVIDER or not job.run_dir:
        raise UsageError(f"job {job_id} ran on {job.provider}; only local jobs resume here",
                         fix="start a new run with `tunelab train`")
    if job.status == "succeeded" and not overrides:
        raise UsageError(f"job {job_id} already succeeded; resuming it as it is would train "
                         "nothing more",
                         fix=f"to train it further: tunelab train --resume {job_id} --epochs N "
                             "(or --max-steps N)")
    root = Path(job.run_dir) / "checkpoints"
    if not checkpoints.candidates(root):
        raise NotFoundError(f"job {job_id} has no checkpoint to resume from",
                            fix="start it again with `tunelab train`")
    config = resolve_config(base=job.config_dict(), flags=dict(overrides or {}))
    prepare.check_config(config)
    resume_from, skipped = _usable_checkpoint(job_id, root, config.full)
    if not launch.is_main_rank():  # under accelerate launch: rank 0 alone keeps the books
        return launch.follow(config, resume_from, stop)
    run_dir = Path(job.run_dir)
    _refuse_if_alive(run_dir, job_id)
    examples = trial.warm.examples if trial else prepare.read_examples(config)
    _note_skipped(registry, job_id, skipped, resume_from, on_event)
    # Checked and ready: only now may a finished job leave its status.
    registry.reopen(job_id, status="queued", config=config,
                    error=None, finished_at=None)
    return _execute(registry, job_id, config, run_dir, examples, resume_from, on_event, stop,
                    before=job if job.is_terminal else None, trial=trial)


def _usable_checkpoint(job_id: str, root: Path,
                       full: bool) -> tuple[Path, list[tuple[str, str]]]:
    """The newest checkpoint that reads back, and (name, problem) for each newer one passed
    over. UsageError when none does: the job is left as it is."""
    skipped = []
    for folder in checkpoints.candidates(root):
        problem = checkpoint_problem(folder, full=full)
        if problem is None:
            return folder, skipped
        skipped.append((folder.name, problem))
    listed = "; ".join(f"{name}: {problem}" for name, problem in skipped)
    raise UsageError(f"job {job_id} has no checkpoint that can be resumed from ({listed})",
                     fix="start it again with `tunelab train`; the job keeps its status")


def _note_skipped(registry: Registry, job_id: str, skipped: list[tuple[str, str]],
                  chosen: Path, on_event: EventHandler | None) -> None:
    """Say which damaged checkpoints were passed over, and point `latest` at the one used,
    so a crash before the next save does not try the damaged one again."""
    for name, problem in skipped:
        text = f"checkpoint {name} cannot be resumed from ({problem}); using {chosen.name}"
        registry.add_event(job_id, text, level="warning")
        if on_event is not None:
            on_event({"type": "message", "level": "warning", "message": text})
    if skipped:
        checkpoints.set_pointer(chosen.parent, "latest", chosen.name)


def choose_checkpoint(job: JobRecord, name: str) -> Path:
    """Make kept checkpoint `name` the one the next resume starts from, by pointing `latest`
    at it (resume reads `latest` first). Checked here, so a bad choice leaves `latest` as it
    was: a name that is not one of the job's checkpoint folders, or one that cannot load."""
    root = Path(job.run_dir or ".") / "checkpoints"
    folder = root / name
    if job.provider != PROVIDER or not job.run_dir or Path(name).name != name \
            or not name.startswith(("step-", "epoch-")) or len(name.encode()) > 255 \
            or not folder.is_dir():  # 255 bytes: longer is no file name (ENAMETOOLONG)
        raise NotFoundError(f"job {job.id} has no checkpoint {name!r}",
                            fix=f"pick one listed by `tunelab jobs checkpoints {job.id}`")
    problem = checkpoint_problem(folder, full=isinstance(job.config, TrainConfig)
                                 and job.config.full)
    if problem is not None:
        raise UsageError(f"checkpoint {name} of job {job.id} cannot be resumed from ({problem})",
                         fix="pick another checkpoint")
    checkpoints.set_pointer(root, "latest", name)
    return folder


def request_cancel(job_id: str) -> str:
    """Cancel a local job, recorded at once: "requested" (a live run stops after its step,
    checkpointed, and stays resumable), "cancelled" (no process was running it) or
    "finished" (already terminal: nothing changes)."""
    with open_registry() as registry:
        job = registry.get_job(job_id)
        if job.is_terminal:
            return "finished"
        run_dir = Path(job.run_dir or ".")
        live = live_pid(run_dir) is not None
        if live:
            (run_dir / trainer.CANCEL_REQUEST).write_text("cancel requested\n")
        # A live run's native status says it still has to stop (after its step, checkpointed).
        registry.update_job(job_id, status="cancelled",
                            native_status=CANCELLING if live else "cancelled")
        if live:
            registry.add_event(job_id, "Cancellation requested: the run stops after its "
                                       "current step")
        elif job.status in ("queued", "validating_files"):
            registry.add_event(job_id, "Cancellation requested before the job started")
        else:
            registry.add_event(job_id, "Cancellation requested; no process was running it",
                               level="warning")
        return "requested" if live else "cancelled"


def cancel_requested(job: JobRecord) -> bool:
    """Whether a cancel asked a live run of `job` to stop (its request is still there)."""
    return bool(job.run_dir) and (Path(job.run_dir) / trainer.CANCEL_REQUEST).exists()


def _execute(registry: Registry, job_id: str, config: TrainConfig, run_dir: Path,
             examples: prepare.Examples, resume_from: Path | None,
             on_event: EventHandler | None, stop: threading.Event | None, *,
             before: JobRecord | None, trial: Trial | None) -> dict[str, Any]:
    """Run the job; `before` is its row when a resume reopened a finished job: a failure
    then restores that row instead of marking the job failed."""
    recorder = RunRecorder(registry, job_id, run_dir, config.log_every, on_event)
    stop = stop or threading.Event()
    (run_dir / "config.json").write_text(config.model_dump_json(indent=2), encoding="utf-8")
    (run_dir / PID_FILE).write_text(str(os.getpid()))
    (run_dir / trainer.CANCEL_REQUEST).unlink(missing_ok=True)
    try:
        with _interrupt_sets(stop) as caught:
            result = _run(registry, job_id, config, run_dir, examples, resume_from, recorder,
                          stop, trial)
        if caught:
            recorder.message(f"stopped by {caught[0]}, as a cancel stops a run: the job ended "
                             f"{result['status']}", level="warning")
        return result
    except TunelabError as error:
        # OpenAI's code for a job that failed on its data or settings; the message says which.
        _fail(registry, recorder, job_id, error.render(), "training_failed", before)
        raise
    except KeyboardInterrupt:  # a second Ctrl-C: no time for a checkpoint, latest still holds
        registry.update_job(job_id, status="cancelled", native_status="interrupted")
        recorder.message("interrupted; resume from the latest checkpoint", level="warning")
        raise
    except Exception as error:
        _fail(registry, recorder, job_id, f"{type(error).__name__}: {error}", "internal_error",
              before)
        raise
    finally:
        (run_dir / PID_FILE).unlink(missing_ok=True)
        release_freed_memory()


def _run(registry: Registry, job_id: str, config: TrainConfig, run_dir: Path,
         examples: prepare.Examples, resume_from: Path | None, recorder: RunRecorder,
         stop: threading.Event, trial: Trial | None) -> dict[str, Any]:
    recorder.message("loading model and tokenizing data")
    method = method_for(config)  # what the run learns: it encodes the data and trains on it
    tokenizer, data = _inputs(config, examples, trial, method)
    lent = trial.warm.lend(config) if trial else contextlib.nullcontext()
    with lent as base_model:  # a sweep's shared base goes back untouched, whatever happens
        session = trainer.setup(config, tokenizer, data.train, data.validation,
                                base_ref=prepare.base_model_ref(config.model),
                                resume_from=resume_from, base_model=base_model,
                                method=method)
        recorder.message(session.kernels)  # which speed kernels run, or why none do
        if session.prepared:  # DPO: whether the reference log-probs were cached or computed
            recorder.message(session.prepared)
        state = TrainState()
        if resume_from is not None:
            checkpoints.clean_partial(resume_from.parent)
            state = trainer.restore_position(resume_from)
            recorder.truncate_metrics(state.step)
        registry.update_job(job_id, status="running", native_status="running")
        verb = (f"resumed from {resume_from.name} at step {state.step}" if resume_from
                else "started")
        recorder.message(f"training {verb}: {len(data.train.items)} examples, "
                         f"{session.steps_per_epoch} steps/epoch, {session.total_steps} steps")
        native = trainer.train(session, state, recorder, run_dir, stop,
                               trial.judge if trial else None)
        outcome = OUTCOMES.get(native, native)
        # The numbers stand whatever the status; a job a client cancelled while its last
        # step ran is finished already, and that word is final: no weights, no samples, no
        # model.
        current = registry.update_job(job_id, metrics=_metrics(state, method))
        if current.is_terminal:
            outcome = native = current.status
        if outcome == "succeeded":
            _save(session, run_dir, tokenizer, recorder, early=native == trainer.EARLY_STOPPED)
    fine_tuned = None
    if outcome == "succeeded":
        fine_tuned = f"ft:{prepare.base_model_name(config.model)}:{config.suffix or ''}:{job_id}"
        if trial is None:  # a sweep's trials answer no prompts: only the winner matters
            _write_samples(config, run_dir, examples.train, recorder)
    job = registry.update_job(job_id, status=outcome, native_status=native,
                              fine_tuned_model=fine_tuned)
    resumable = job.status == "cancelled" and job.native_status != trainer.PRUNED
    recorder.message(f"job {job.status}" + (": resumable with `tunelab train --resume "
                                            f"{job_id}`" if resumable else ""))
    return result_object(job)


# What the registry calls each way trainer.train ends (the loop's word stays the native one).
OUTCOMES = {trainer.EARLY_STOPPED: "succeeded", trainer.PRUNED: "cancelled"}


def _inputs(config: TrainConfig, examples: prepare.Examples, trial: Trial | None,
            method: Method) -> tuple[Any, prepare.Tokenized]:
    """The tokenizer and the data as `method` encodes it: a sweep's, already made, or made
    now."""
    if trial is not None:
        return trial.warm.tokenizer, trial.warm.tokenized(config, method)
    from tunelab.local.model_source import load_tokenizer

    tokenizer = load_tokenizer(config.model)
    return tokenizer, prepare.tokenize(config, tokenizer, examples, method)


def _save(session: trainer.Session, run_dir: Path, tokenizer: Any, recorder: RunRecorder, *,
          early: bool) -> None:
    """The run's weights; after an early stop, the best checkpoint's, not the last step's."""
    if early:
        best = trainer.restore_best(session, run_dir)
        if best is not None:
            recorder.message(f"the run's weights are those of its best checkpoint, {best}")
    trainer.save_weights(session, run_dir)
    if not session.config.full:
        tokenizer.save_pretrained(run_dir / "adapter")


def _write_samples(config: TrainConfig, run_dir: Path, train: Any,
                   recorder: RunRecorder) -> None:
    """The after-training answers are a courtesy: the weights are saved by now, so a failure
    here is a warning on a succeeded job, never a failed one."""
    try:
        samples.write_samples(config, run_dir, train, recorder)
    except Exception as error:  # noqa: BLE001 - whatever broke, the job still succeeded
        recorder.message(f"sample answers skipped: {type(error).__name__}: {error}",
                         level="warning")


def result_object(job: JobRecord) -> dict[str, Any]:
    """The final --json object of a run."""
    return {"id": job.id, "status": job.status, "provider": job.provider,
            "base_model": job.base_model, "fine_tuned_model": job.fine_tuned_model,
            "run_dir": job.run_dir, "metrics": job.metrics,
            "resumable": job.status in ("cancelled", "failed")
            and job.native_status != trainer.PRUNED
            and checkpoints.read_pointer(Path(job.run_dir) / "checkpoints", "latest") is not None}


def _metrics(state: TrainState, method: Method) -> dict[str, Any]:
    """The job's summary, in the metric vocabulary (registry/metrics.py): the loop's values
    and the method's own metrics (the last step's and the last validation's), by name."""
    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 6)

    return {metrics.TRAIN_LOSS: rounded(state.train_loss),
            metrics.LAST_TRAIN_LOSS: rounded(state.last_train_loss),
            **{name: rounded(state.train_metrics.get(name))
               for name in method.train_metric_names},
            metrics.VALID_LOSS: rounded(state.valid_loss),
            metrics.FULL_VALID_LOSS: rounded(state.valid_loss),  # the whole file, always
            metrics.BEST_VALID_LOSS: rounded(state.best_valid_loss),
            **{name: rounded(state.valid_metrics.get(name))
               for name in method.valid_metric_names},
            metrics.TRAINED_TOKENS: state.trained_tokens,
            metrics.TOKENS_PER_S: round(state.tokens_per_s or 0.0, 1),
            metrics.STEPS: state.step, metrics.TRAIN_SECONDS: round(state.train_seconds, 2)}


def _register(registry: Registry, job_id: str, config: TrainConfig, run_dir: Path,
              trial: Trial | None, metadata: dict[str, str] | None = None) -> None:
    fields = dict(status="queued", base_model=config.model or prepare.DEFAULT_MODEL,
                  suffix=config.suffix, training_file=config.train_file,
                  validation_file=config.validation_file,
                  config=config, run_dir=str(run_dir))
    if metadata:  # from the row's first moment, so a killed run keeps them too
        fields.update(metadata=dict(metadata))
    if trial is not None:  # `jobs show` and the sweep itself find the trial by these
        fields.update(metadata={**(metadata or {}), **trial.metadata},
                      hyperparameters=trial.hyperparameters)
    if registry.find_job(job_id) is not None:
        # Pre-created by the server: add the run, keep what its creator recorded (the
        # client's file ids, the status its worker set).
        registry.update_job(job_id, config=fields["config"], run_dir=fields["run_dir"])
    else:
        now = time.time()
        registry.create_job(JobRecord(id=job_id, provider=PROVIDER, created_at=now,
                                      updated_at=now, **fields))
    registry.add_event(job_id, f"job created; run folder {run_dir}")


def _fresh_run_dir(config: TrainConfig, job_id: str) -> Path:
    run_dir = Path(config.output_dir).expanduser() if config.output_dir else (
        home.runs_dir() / job_id)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise UsageError(f"--output-dir {run_dir} is not empty",
                         fix="pick a new folder, or resume with `tunelab train --resume JOB`")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir.resolve()


def _refuse_if_alive(run_dir: Path, job_id: str) -> None:
    pid = live_pid(run_dir)
    if pid is not None and pid != os.getpid():
        raise UsageError(f"job {job_id} is still training (pid {pid})",
                         fix=f"wait, or stop it first with `tunelab jobs cancel {job_id}`")


def _fail(registry: Registry, recorder: RunRecorder, job_id: str, message: str, code: str,
          before: JobRecord | None) -> None:
    """Record a failure: the job fails, unless it had finished before this resume, when it
    goes back to exactly what it was (a finished job's outcome is not the attempt's)."""
    if before is None:
        registry.update_job(job_id, status="failed", native_status="failed",
                            error={"code": code, "message": message})
        recorder.message(f"failed: {message}", level="error")
        return
    registry.update_job(job_id, status=before.status, native_status=before.native_status,
                        error=before.error, fine_tuned_model=before.fine_tuned_model,
                        metrics=before.metrics, config=before.config,
                        finished_at=before.finished_at)
    recorder.message(f"resume failed: {message}; the job stays {before.status}",
                     level="error")


@contextlib.contextmanager
def _interrupt_sets(stop: threading.Event) -> Iterator[list[str]]:
    """While training in the main thread, the first Ctrl-C or SIGTERM sets `stop` (the run
    checkpoints and ends cancelled, as a cancel ends it); a second one raises. Yields the
    names of the signals caught, for the job's events (a handler must not write the
    registry: it runs between any two statements of the thread it interrupts)."""
    caught: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return

    def handler(signum: int, frame: Any) -> None:
        caught.append(signal.Signals(signum).name)
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = {signum: signal.signal(signum, handler)
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield caught
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
