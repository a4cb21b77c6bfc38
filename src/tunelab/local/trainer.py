"""The training loop: setup -> train -> save, on accelerate + peft, readable top to bottom.

accelerate owns devices, mixed precision, gradient accumulation and (under `accelerate
launch`) DDP/FSDP/DeepSpeed; nothing here is device- or process-specific. The loop is handed
a training method (methods/: supervised today), which owns what is learned: how examples
are encoded and collated, the loss (behind it the speed kernels, switched by
config.kernels) and its metrics, and what validation measures. The loop owns the rest:
length-grouped batches whose order is a function of (seed, epoch) (batching), gradient
accumulation, the schedule, early stopping, and checkpoints that resume to the exact next
batch (checkpoints, state).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from tunelab.config import TrainConfig
from tunelab.local import checkpoints
from tunelab.local.batching import epoch_batches
from tunelab.local.encoding import EncodedSet
from tunelab.local.memory import keep_freed_memory
from tunelab.local.methods import Measured, Method, method_for, vocabulary_problem
from tunelab.local.state import (
    TrainState,
    load_torch,
    load_training_state,
    restore_rng,
    save_training_state,
)
from tunelab.registry.metrics import step_metrics

CANCEL_REQUEST = "cancel.request"  # a file in the run folder: stop after this step


@dataclass
class Window:
    """The micro-batches of the optimizer step being accumulated."""

    losses: list[float] = field(default_factory=list)  # each one's mean (processes averaged)
    sums: dict[str, float] = field(default_factory=dict)  # the method's sums, every process


@dataclass
class Session:
    """Everything one run trains with, built by `setup`."""

    config: TrainConfig
    method: Method  # what the run learns: encoding, loss, metrics, validation
    accelerator: Any
    tokenizer: Any
    model: Any  # the transformers model, PEFT-wrapped unless config.full
    loss_model: Any  # the method's loss module around it, prepared by accelerate
    optimizer: Any  # prepared by accelerate
    scheduler: Any  # stepped by us once per optimizer step, whatever the process count
    train_set: EncodedSet
    val_set: EncodedSet | None
    steps_per_epoch: int
    total_steps: int
    base_ref: str  # the base model as written into adapter configs
    window: Window = field(default_factory=Window)  # the step being accumulated
    saved: tuple[str, int] | None = None  # (name, step) of the last checkpoint written
    validated: int | None = None  # the step of the last validation
    kernels: str = ""  # the method's line for the log: which speed kernels run, or why none
    prepared: str | None = None  # the method's line about what it computed before training


@dataclass(frozen=True)
class StepReport:
    """One optimizer step: the metric vocabulary's names (registry/metrics.py), then progress."""

    step: int
    epoch: float
    train_loss: float
    method_metrics: dict[str, float]  # the method's train_metric_names (supervised: accuracy)
    learning_rate: float
    trained_tokens: int
    tokens_per_s: float
    total_steps: int
    eta_s: float

    def values(self) -> dict[str, Any]:
        """Flat, as events carry it: the method's metrics beside the loop's own."""
        values = asdict(self)
        values.update(values.pop("method_metrics"))
        return values

    def metrics(self) -> dict[str, Any]:
        """The row a metrics store keeps: the vocabulary's names only."""
        return step_metrics(self.values())


class Hooks:
    """What the loop reports. The API layer records these; the defaults ignore them."""

    def on_step(self, state: TrainState, report: StepReport) -> None: ...

    def on_validation(self, state: TrainState, result: Measured, is_best: bool) -> None: ...

    def on_checkpoint(self, state: TrainState, name: str, kind: str, path: Path) -> None: ...

    def on_stop(self, state: TrainState, outcome: str, why: str) -> None:
        """The loop ends before its last step: EARLY_STOPPED or PRUNED, and why."""


# setup --------------------------------------------------------------------------------
def effective_precision(config: TrainConfig) -> str:
    """What `auto` means on this machine: bf16 where a GPU runs it natively, else fp32."""
    if config.precision != "auto":
        return config.precision
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"


def accelerate_precision(config: TrainConfig) -> str:
    return "bf16" if effective_precision(config) == "bf16" else "no"


def setup(config: TrainConfig, tokenizer: Any, train_set: EncodedSet,
          val_set: EncodedSet | None, *, base_ref: str,
          resume_from: Path | None = None, base_model: Any = None,
          method: Method | None = None) -> Session:
    """Everything the run trains with. `base_model`: an already loaded base to put this
    run's fresh LoRA adapter on (a sweep reuses one across trials, see local/warm.py).
    `method`: what the run learns; by default the one config.method names, which must be
    the one that encoded `train_set` and `val_set`."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import set_seed

    method = method or method_for(config)
    problem = vocabulary_problem(method)
    if problem:
        raise ValueError(problem)
    # accelerate keeps its state in a process-wide singleton that refuses a second run with
    # another precision. One process trains many runs (the server's worker, `compare` after
    # `train`, the tests), so each run starts from a clean slate; the distributed process
    # group (PartialState) is left alone.
    AcceleratorState._reset_state()
    keep_freed_memory()
    accelerator = Accelerator(mixed_precision=accelerate_precision(config),
                              gradient_accumulation_steps=config.grad_accum)
    set_seed(config.seed)
    model = build_model(config, base_ref, resume_from, base_model)
    # The method's loss around the model; its speed kernels compute the same math as plain
    # transformers + peft with less memory traffic, off or auto (kernels/).
    loss_module, kernels_note = method.loss_module(model, config.kernels)
    # What the method computes once before training (DPO: the reference log-probabilities).
    prepared = method.prepare(loss_module, [data for data in (train_set, val_set)
                                            if data is not None and data.items],
                              config=config, pad_id=tokenizer.pad_token_id,
                              fresh=resume_from is None)
    trainable = [param for param in model.parameters() if param.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    per_epoch = steps_per_epoch(len(train_set.items), config, accelerator.num_processes)
    total = config.max_steps or per_epoch * config.epochs
    scheduler = make_scheduler(optimizer, config, total)
    loss_model, optimizer = accelerator.prepare(loss_module, optimizer)
    if resume_from is not None:
        optimizer.load_state_dict(load_torch(resume_from, "optimizer.pt"))
        scheduler.load_state_dict(load_torch(resume_from, "scheduler.pt"))
    return Session(config, method, accelerator, tokenizer, model, loss_model, optimizer,
                   scheduler, train_set, val_set, per_epoch, total, base_ref,
                   kernels=kernels_note, prepared=prepared)


def build_model(config: TrainConfig, base_ref: str, resume_from: Path | None,
                base_model: Any = None) -> Any:
    """The model to train: LoRA on the base (default) or every weight with config.full.
    A given `base_model` (LoRA only) is wrapped as it is instead of loading one. With
    `--from JOB` (local/start.py) training starts from that job's weights."""
    from tunelab.local.model_source import load_model
    from tunelab.local.start import start_adapter, start_model

    if config.full:
        # A full fine-tune's checkpoint is a complete HF folder: resume loads it as the model.
        model = (load_model(str(resume_from / "model")) if resume_from
                 else start_model(config))
        model.requires_grad_(True)
        return model
    from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict
    from safetensors.torch import load_file

    base = base_model if base_model is not None else load_model(config.model)
    adapter = start_adapter(config)
    if adapter is not None:
        # The job's own adapter goes on training (its rank and modules, not this config's):
        # the run's adapter is then still one adapter of the original base, so export,
        # serve and chat load it like any other. (Merging it into the base and training a
        # fresh LoRA would leave an adapter of a merged model no folder holds.)
        model = PeftModel.from_pretrained(base, str(adapter), is_trainable=True)
    else:
        model = get_peft_model(base, LoraConfig(
            r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
            target_modules=config.target_modules, task_type="CAUSAL_LM"))
    # Written into adapter_config.json so an adapter folder finds its base by itself.
    model.peft_config["default"].base_model_name_or_path = base_ref
    if resume_from is not None:
        weights = load_file(resume_from / "adapter" / "adapter_model.safetensors")
        set_peft_model_state_dict(model, weights)
    return model


def steps_per_epoch(examples: int, config: TrainConfig, processes: int = 1) -> int:
    batches = math.ceil(examples / config.batch_size)
    return math.ceil(math.ceil(batches / processes) / config.grad_accum)


def make_scheduler(optimizer: Any, config: TrainConfig, total: int) -> Any:
    """Linear warmup, then linear or cosine decay to zero (or constant) at `total` steps."""
    warmup = math.ceil(config.warmup_ratio * total)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if config.lr_scheduler == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if config.lr_scheduler == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0 - progress

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def restore_position(resume_from: Path) -> TrainState:
    """The state to continue from; also puts every RNG back where it was."""
    restore_rng(load_torch(resume_from, "rng.pt"))
    return load_training_state(resume_from)


# train --------------------------------------------------------------------------------
# How `train` ends besides "succeeded" and "cancelled": validation loss stopped improving
# (config.early_stopping_patience), or the `judge` (a sweep's pruner) stopped the run.
EARLY_STOPPED = "early_stopped"
PRUNED = "pruned"
Judge = Callable[[TrainState], "str | None"]  # a sweep's pruner


def train(session: Session, state: TrainState, hooks: Hooks, run_dir: Path,
          stop: threading.Event | None = None, judge: Judge | None = None) -> str:
    """Train from `state` to the last step; returns "succeeded", "cancelled" (on stop),
    EARLY_STOPPED or PRUNED. `judge` sees the state after each validation and returns a
    reason to stop the run there (the sweep's median pruning), or None."""
    config = session.config
    started_step, started_seconds = state.step, state.train_seconds
    while state.step < session.total_steps:
        finished_epoch = True
        epoch_batch_count = len(epoch_order(session, state))
        for batch in epoch_loader(session, state):
            began = time.perf_counter()
            measured = train_step(session, batch)
            state.train_seconds += time.perf_counter() - began
            # Every process's tokens, so tokens/s is the whole run's under DDP too.
            state.trained_tokens += int(session.accelerator.reduce(
                batch["attention_mask"].sum(), "sum"))
            state.batches_done += session.accelerator.num_processes
            if measured is None:
                continue  # still accumulating gradients
            state.step += 1
            state.loss_sum += measured.loss
            state.last_train_loss, state.train_metrics = measured.loss, measured.metrics
            hooks.on_step(state, step_report(session, state, started_step, started_seconds))
            epoch_done = state.batches_done >= epoch_batch_count
            # end_pass checkpoints the pass's last step itself: saving it here as well would
            # write the same weights twice, under two names, with two events.
            pass_ends = epoch_done or state.step >= session.total_steps
            if config.eval_every and state.step % config.eval_every == 0:
                validate(session, state, hooks, run_dir, save=not pass_ends)
                verdict = stop_verdict(session, state, hooks, judge)
                if verdict is not None:
                    if verdict == EARLY_STOPPED:  # `latest` where it stopped, `best` kept
                        save_checkpoint(session, state, hooks, run_dir, "step")
                    return verdict
            if stop_requested(stop, run_dir):
                save_checkpoint(session, state, hooks, run_dir, "step")
                return "cancelled"
            if config.save_every and state.step % config.save_every == 0 and not pass_ends:
                save_checkpoint(session, state, hooks, run_dir, "step")
            if state.step >= session.total_steps:
                finished_epoch = epoch_done
                break
        end_pass(session, state, hooks, run_dir, finished_epoch)
        verdict = stop_verdict(session, state, hooks, judge)
        if verdict is not None and state.step < session.total_steps:
            return verdict  # end_pass saved the checkpoint
    return "succeeded"


def stop_verdict(session: Session, state: TrainState, hooks: Hooks,
                 judge: Judge | None) -> str | None:
    """Right after a validation: EARLY_STOPPED when it is the patience-th in a row without a
    new best, PRUNED when the judge gives a reason (said as an event), else None."""
    if not session.val_set or not session.val_set.items or state.valid_loss is None:
        return None
    patience = session.config.early_stopping_patience
    if patience and state.stale_evals >= patience:
        hooks.on_stop(state, EARLY_STOPPED,
                      f"stopped early at step {state.step}: validation loss has not improved "
                      f"for {state.stale_evals} evaluations (best {state.best_valid_loss:.4f})")
        return EARLY_STOPPED
    reason = judge(state) if judge is not None else None
    if reason:
        hooks.on_stop(state, PRUNED, f"pruned at step {state.step}: {reason}")
        return PRUNED
    return None


def end_pass(session: Session, state: TrainState, hooks: Hooks, run_dir: Path,
             finished_epoch: bool) -> None:
    """An epoch ended, or max_steps stopped the run inside one: either way validate (so
    every run with a validation file ends with a validation loss) and checkpoint."""
    if finished_epoch:
        state.epoch, state.batches_done = state.epoch + 1, 0
    best = validate(session, state, hooks, run_dir, save=False)
    save_checkpoint(session, state, hooks, run_dir, "epoch" if finished_epoch else "step",
                    best=best)


def stop_requested(stop: threading.Event | None, run_dir: Path) -> bool:
    """Ctrl-C or the server set `stop`, or `tunelab jobs cancel` left a request file."""
    return (stop is not None and stop.is_set()) or (run_dir / CANCEL_REQUEST).exists()


def train_step(session: Session, batch: dict[str, Any]) -> Measured | None:
    """One micro-batch forward/backward; the optimizer steps when accumulation is complete.

    Returns the optimizer step's loss (the mean of its micro-batches', as HF reports a step)
    and the method's metrics when one happened, else None.
    """
    accelerator, method = session.accelerator, session.method
    with accelerator.accumulate(session.loss_model):
        loss, sums = method.loss(session.loss_model, batch)
        accelerator.backward(loss)
        if accelerator.sync_gradients and session.config.max_grad_norm:
            accelerator.clip_grad_norm_(session.loss_model.parameters(),
                                        session.config.max_grad_norm)
        session.optimizer.step()
        session.optimizer.zero_grad()
    add_to_window(session, loss, sums)
    if not accelerator.sync_gradients:
        return None
    session.scheduler.step()
    window, session.window = session.window, Window()
    return Measured(sum(window.losses) / len(window.losses), method.train_metrics(window.sums))


def add_to_window(session: Session, loss: torch.Tensor, sums: dict[str, torch.Tensor]) -> None:
    """Count one micro-batch's loss and the method's sums into the step being accumulated."""
    accelerator, window = session.accelerator, session.window
    if sums:  # one collective for all of them
        totals = accelerator.reduce(torch.stack(list(sums.values())), "sum").tolist()
        for name, total in zip(sums, totals, strict=True):
            window.sums[name] = window.sums.get(name, 0) + total
    window.losses.append(float(accelerator.reduce(loss.detach(), "mean")))


def epoch_order(session: Session, state: TrainState) -> list[list[int]]:
    return epoch_batches(session.train_set.lengths, session.config.batch_size,
                         session.config.seed, state.epoch)


def epoch_loader(session: Session, state: TrainState) -> Any:
    """The rest of the current epoch: its derived order, minus the batches already done."""
    remaining = epoch_order(session, state)[state.batches_done:]
    loader = DataLoader(session.train_set.items, batch_sampler=remaining,
                        collate_fn=partial(session.method.collate,
                                           pad_id=session.tokenizer.pad_token_id))
    return session.accelerator.prepare_data_loader(loader)


def step_report(session: Session, state: TrainState, started_step: int,
                started_seconds: float) -> StepReport:
    done = state.step - started_step
    per_step = (state.train_seconds - started_seconds) / done if done else 0.0
    batches = math.ceil(len(session.train_set.items) / session.config.batch_size)
    return StepReport(
        step=state.step, epoch=round(state.epoch + state.batches_done / batches, 4),
        train_loss=round(state.last_train_loss or 0.0, 6),
        method_metrics={name: round(state.train_metrics[name], 6)
                        for name in session.method.train_metric_names},
        learning_rate=session.scheduler.get_last_lr()[0],
        trained_tokens=state.trained_tokens, tokens_per_s=round(state.tokens_per_s or 0.0, 1),
        total_steps=session.total_steps,
        eta_s=round(per_step * (session.total_steps - state.step), 1))


def validate(session: Session, state: TrainState, hooks: Hooks, run_dir: Path, *,
             save: bool = True) -> bool:
    """Validation loss now; a new best also gets a checkpoint when `save`. Returns is_best."""
    if not session.val_set or not session.val_set.items:
        return False
    if session.validated == state.step:  # eval_every already landed on this epoch end
        return state.valid_loss == state.best_valid_loss
    session.validated = state.step
    result = evaluate(session)
    # A NaN or infinite loss (a diverging run) is never a best: nothing to keep.
    is_best = math.isfinite(result.loss) and (state.best_valid_loss is None
                                              or result.loss < state.best_valid_loss)
    state.valid_loss, state.valid_metrics = result.loss, result.metrics
    state.stale_evals = 0 if is_best else state.stale_evals + 1
    if is_best:
        state.best_valid_loss = result.loss
    hooks.on_validation(state, result, is_best)
    if is_best and save:
        save_checkpoint(session, state, hooks, run_dir, "step", best=True)
    return is_best


def evaluate(session: Session) -> Measured:
    """The method's validation now (supervised: the function `compare` measures with)."""
    loss_model = session.accelerator.unwrap_model(session.loss_model)
    return session.method.validate(loss_model, session.val_set, session.tokenizer.pad_token_id)


# save ---------------------------------------------------------------------------------
def save_checkpoint(session: Session, state: TrainState, hooks: Hooks, run_dir: Path,
                    kind: str, *, best: bool = False) -> None:
    """Write a checkpoint atomically, move `latest` (and `best`) to it, apply retention."""
    accelerator = session.accelerator
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        root = run_dir / "checkpoints"
        name = checkpoints.checkpoint_name(kind, state.step, state.epoch)
        if session.saved == (name, state.step):  # e.g. a new best that is also a save_every
            if best:
                checkpoints.set_pointer(root, "best", name)
                hooks.on_checkpoint(state, name, kind, root / name)
            accelerator.wait_for_everyone()
            return

        def fill(folder: Path) -> None:
            save_weights(session, folder)
            save_training_state(folder, optimizer=session.optimizer, scheduler=session.scheduler,
                                state=state, hparams=session.config.model_dump(mode="json"))

        path = checkpoints.write_atomically(root, name, fill)
        session.saved = (name, state.step)
        checkpoints.set_pointer(root, "latest", name)
        if best:
            checkpoints.set_pointer(root, "best", name)
        hooks.on_checkpoint(state, name, kind, path)
        for prefix in ("step", "epoch"):
            for gone in checkpoints.prune(root, prefix, session.config.keep_checkpoints):
                hooks.on_checkpoint(state, gone, "deleted", root / gone)
    accelerator.wait_for_everyone()


def restore_best(session: Session, run_dir: Path) -> str | None:
    """Put the `best` checkpoint's weights back into the model, so that a run stopped early
    saves its best weights, not its last; the checkpoint's name, or None when there is none."""
    from safetensors.torch import load_file

    best = checkpoints.read_pointer(run_dir / "checkpoints", "best")
    if best is None:
        return None
    model = session.accelerator.unwrap_model(session.loss_model).model
    if session.config.full:
        weights: dict[str, torch.Tensor] = {}
        for path in sorted((best / "model").glob("*.safetensors")):
            weights.update(load_file(path))
        model.load_state_dict(weights, strict=False)  # tied weights are saved once
    else:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(best / "adapter" /
                                                   "adapter_model.safetensors"))
    return best.name


def save_weights(session: Session, folder: Path) -> Path:
    """The loadable part: adapter/ (peft) or model/ (full, with the tokenizer)."""
    model = session.accelerator.unwrap_model(session.loss_model).model
    if session.config.full:
        target = folder / "model"
        model.save_pretrained(target, safe_serialization=True)
        session.tokenizer.save_pretrained(target)
    else:
        target = folder / "adapter"
        # The base is unchanged by LoRA: no need for peft to look it up to save embeddings.
        model.save_pretrained(target, safe_serialization=True, save_embedding_layers=False)
    return target
