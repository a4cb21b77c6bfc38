"""TrainConfig and the presets, as plain data. Precedence: preset < config file < flags.

`resolve_config` merges the three layers and validates the result once, before any model
loads, reporting every problem at once (ConfigError) with the flag or key that set it.

TrainConfig is the one declaration of the training options: each field's type, bounds and
description (its `--help` text), and a `Flag` marker saying where it is offered: its group
in `tunelab train --help`, its flag spelling where that is not `--` + the key with dashes,
whether it names a file, whether `tunelab sweep` may vary it and whether the dashboard's
new-run form offers it. The flags (tunelab.cli.config_flags), the sweep's sweepable set and
the dashboard's overrides are all derived from it.
"""

from __future__ import annotations

import difflib
import json
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from tunelab.errors import ConfigError, UsageError, decode_utf8

PresetName = Literal["quick", "standard", "extended", "precision"]
# auto: the speed kernels (local/kernels/) on the architectures they were tested on, plain
# transformers + peft elsewhere; off: plain everywhere, for a model that misbehaves.
KernelMode = Literal["auto", "off"]
# What a run learns from its examples (local/methods/: encoding, loss, validation, metrics).
# supervised: learn the assistant turns of chats; dpo: learn to prefer one answer over another
# (OpenAI's preference format), against a frozen reference model.
MethodName = Literal["supervised", "dpo"]


# accelerate's set_seed seeds numpy too, whose seeds are 32-bit: a larger seed would fail
# the run after loading, so it is refused with the other settings.
SEED_MAX = 2**32 - 1


@dataclass(frozen=True)
class Flag:
    """Where a TrainConfig key is offered besides the config file (see the module docstring).

    `flag` is the spelling when it is not `--` + the key with dashes (a bool's on/off pair);
    `path` makes the flag take a file name (kept as a str in the config)."""

    group: str
    flag: str | None = None
    path: bool = False
    sweep: bool = False
    dashboard: bool = False


# The groups of `tunelab train --help`, in the order they are shown.
DATA, SCHEDULE, ADAPTER, RUN, CHECKS, SAMPLES = (
    "Data and model", "Schedule", "Adapter (LoRA)", "Run", "Validation and checkpoints",
    "Samples after training")


class TrainConfig(BaseModel):
    """Everything a local training run needs, resolved. Saved as config.json in the run dir."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # data and model (train_file is `tunelab train`'s FILE argument, preset its --preset)
    train_file: Annotated[str | None, Flag(DATA, path=True)] = Field(
        None, description="Training data: .jsonl (OpenAI chat), .json or .csv.")
    validation_file: Annotated[str | None, Flag(DATA, path=True)] = Field(
        None, description="Held-out data for validation loss.")
    model: Annotated[str | None, Flag(DATA)] = Field(
        None, description="Base model: hub id, HF folder or .gguf (local default: embedded "
                          "SmolLM2-135M-Instruct).")
    preset: Annotated[PresetName | None, Flag(DATA)] = Field(
        None, description="quick, standard, extended or precision (see `tunelab presets`).")
    method: Annotated[MethodName, Flag(DATA)] = Field(
        "supervised", description="Training method: supervised (learn the assistant turns) "
                                   "or dpo (prefer preferred_output over non_preferred_output).")
    beta: Annotated[float | None, Flag(DATA, sweep=True, dashboard=True)] = Field(
        None, gt=0, description="DPO: how far the model may move from the reference model "
                                "(OpenAI's beta; 0.1 when not given).")
    from_job: Annotated[str | None, Flag(DATA, flag="--from", dashboard=True)] = Field(
        None, description="Start from this finished local job's model (e.g. DPO after "
                          "SFT): its base is the base, training goes on from its weights, "
                          "and DPO's reference model is that job's model.")
    # schedule
    epochs: Annotated[int, Flag(SCHEDULE, sweep=True, dashboard=True)] = Field(
        1, ge=1, le=1000, description="Passes over the data.")
    max_steps: Annotated[int | None, Flag(SCHEDULE, sweep=True, dashboard=True)] = Field(
        None, ge=1, description="Stop after N steps.")
    learning_rate: Annotated[float, Flag(SCHEDULE, sweep=True, dashboard=True)] = Field(
        5e-4, gt=0, le=1, description="Peak LR.")
    lr_scheduler: Annotated[Literal["linear", "cosine", "constant"],
                            Flag(SCHEDULE, sweep=True)] = Field(
        "linear", description="How the LR falls after warmup: linear, cosine or constant.")
    warmup_ratio: Annotated[float, Flag(SCHEDULE, sweep=True)] = Field(
        0.05, ge=0, lt=1, description="Share of the steps that ramp the LR up from 0.")
    weight_decay: Annotated[float, Flag(SCHEDULE, sweep=True)] = Field(
        0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: Annotated[float | None, Flag(SCHEDULE)] = Field(
        1.0, gt=0, description="Clip the gradients to this norm.")
    batch_size: Annotated[int, Flag(SCHEDULE, sweep=True, dashboard=True)] = Field(
        2, ge=1, le=4096, description="Examples per batch.")
    grad_accum: Annotated[int, Flag(SCHEDULE, sweep=True)] = Field(
        1, ge=1, le=1024, description="Batches per optimizer step.")
    max_length: Annotated[int, Flag(SCHEDULE, sweep=True, dashboard=True)] = Field(
        512, ge=16, le=131072, description="Tokens per example; longer ones are cut.")
    # adapter (ignored by --full)
    full: Annotated[bool, Flag(ADAPTER, flag="--full/--lora")] = Field(
        False, description="Train every weight instead of a LoRA adapter.")
    lora_r: Annotated[int, Flag(ADAPTER, sweep=True, dashboard=True)] = Field(
        16, ge=1, le=1024, description="LoRA rank.")
    lora_alpha: Annotated[float, Flag(ADAPTER, sweep=True)] = Field(
        32, gt=0, description="LoRA alpha.")
    lora_dropout: Annotated[float, Flag(ADAPTER, sweep=True)] = Field(
        0.0, ge=0, lt=1, description="LoRA dropout.")
    target_modules: Annotated[list[str] | Literal["all-linear"], Flag(ADAPTER)] = Field(
        "all-linear", description="The modules that get an adapter: names separated by "
                                  "commas (q_proj,v_proj), or all-linear.")
    # auto: bf16 autocast on a GPU that supports it, fp32 on CPU. Measured on this 2-core
    # CPU (avx512_bf16, no AMX): fp32 186 tok/s vs bf16 autocast 127 tok/s, same loss
    # (bench/train_throughput.py --variants trl,tunelab,tunelab-fp32).
    precision: Annotated[Literal["auto", "bf16", "fp32"], Flag(RUN)] = Field(
        "auto", description="auto (bf16 on a GPU that has it, fp32 on CPU), bf16 or fp32.")
    kernels: Annotated[KernelMode, Flag(RUN)] = Field(
        "auto", description="auto (tunelab's speed kernels where they apply) or off (plain "
                            "transformers + peft).")
    # run
    seed: Annotated[int, Flag(RUN, sweep=True, dashboard=True)] = Field(
        42, ge=0, le=SEED_MAX, description="Seed for init and data order.")
    suffix: Annotated[str | None, Flag(RUN)] = Field(
        None, pattern=r"^[A-Za-z0-9_.-]{1,40}$", description="Goes into the model name.")
    output_dir: Annotated[str | None, Flag(RUN, path=True)] = Field(
        None, description="Run folder (default TUNELAB_HOME/runs/JOB).")
    log_every: Annotated[int, Flag(RUN)] = Field(
        1, ge=1, description="Record the training loss every N steps.")
    eval_every: Annotated[int | None, Flag(CHECKS, dashboard=True)] = Field(
        None, ge=1, description="Validation loss every N steps too.")
    # Each eval_every and each epoch end counts as an evaluation.
    early_stopping_patience: Annotated[int | None, Flag(CHECKS)] = Field(
        None, ge=1, description="Stop when validation loss has not improved for N "
                                "evaluations; the run keeps its best weights (checkpoint "
                                "`best`).")
    save_every: Annotated[int | None, Flag(CHECKS, dashboard=True)] = Field(
        50, ge=1, description="Checkpoint every N steps.")
    keep_checkpoints: Annotated[int, Flag(CHECKS)] = Field(
        3, ge=1, description="Step (and epoch) checkpoints kept, newest first; latest and "
                             "best are always kept.")
    prompts: Annotated[str | None, Flag(SAMPLES, path=True)] = Field(
        None, description="Prompts answered after training (default "
                          "examples/natasha_prompts.txt).")
    max_samples: Annotated[int, Flag(SAMPLES, dashboard=True)] = Field(
        5, ge=0, description="How many of the prompts are answered (0: none).")
    # None: the generation default's length (local/generation.py), as `tunelab test` answers
    sample_max_new_tokens: Annotated[int | None, Flag(SAMPLES)] = Field(
        None, ge=1, description="Longest answer, in tokens (default: as `tunelab test`).")

    @field_validator("method", mode="before")
    @classmethod
    def _known_method(cls, value: Any) -> Any:
        # Said here rather than as pydantic's "input should be 'supervised'": which methods
        # exist, in words a `--method dpo` user can act on.
        if value not in get_args(MethodName):
            raise PydanticCustomError(
                "unknown_method", "unknown training method (the methods are: {methods})",
                {"methods": ", ".join(get_args(MethodName))})
        return value

    @field_validator("kernels", mode="before")
    @classmethod
    def _yaml_switch(cls, value: Any) -> Any:
        # YAML reads a bare `kernels: off` as False (and `on` as True): take what was meant.
        if isinstance(value, bool):
            return "auto" if value else "off"
        return value


# Each preset is data: its purpose, its values, and what it cost and gained here. `measured`
# is one `tunelab train FILE --validation-file V --preset NAME` run on the sample data
# (examples/natasha_*.jsonl, the embedded SmolLM2-135M, an idle 2-core CPU), then
# `tunelab compare base JOB` over all 28 held-out examples: the wall time of the whole
# command, the trainer's tokens/s, and held-out loss against the base model's. How the
# values were chosen: bench/README.md, "Presets".
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "purpose": "check the data pipeline and environment end to end",
        "values": {"batch_size": 2, "epochs": 1, "learning_rate": 1e-3},
        "measured": {"when": "2026-12-03 04:11 UTC", "minutes": 3.1, "tokens_per_s": 408.9,
                     "heldout_loss": 2.2355, "base_heldout_loss": 2.6524},
    },
    "standard": {
        "purpose": "everyday fine-tuning of a persona or task",
        "values": {"batch_size": 4, "epochs": 2, "learning_rate": 1e-3, "max_length": 1024},
        "measured": {"when": "2026-12-03 04:07 UTC", "minutes": 6.7, "tokens_per_s": 401.2,
                     "heldout_loss": 2.1597, "base_heldout_loss": 2.6524},
    },
    "extended": {
        "purpose": "longer training when standard still underfits",
        "values": {"batch_size": 8, "epochs": 10, "learning_rate": 2e-4},
        "measured": None,
    },
    "precision": {
        "purpose": "big batch, low lr, many epochs: the most stable curve",
        "values": {"batch_size": 16, "epochs": 20, "learning_rate": 1e-4},
        "measured": None,
    },
}

# What the table's figures are, and what the sweeps behind `standard` found (bench/README.md,
# "Presets"): said under the table by `tunelab presets`.
PRESET_NOTE = (
    "Measured on the sample data, an idle 2-core CPU: `tunelab train "
    "examples/natasha_train.jsonl --validation-file examples/natasha_val.jsonl --preset NAME` "
    "(time: the whole command), then `tunelab compare base JOB` over all 28 held-out "
    "examples. Learning rates are for LoRA (the default); with --full use about 10x lower "
    "(1e-4 did best there). `standard` was chosen by sweeps over learning rate, rank, "
    "max_length and full fine-tuning: all flatten at 2.14-2.20 (-17% to -19%); max_length "
    "1024 helps most, since half the examples run past 512 tokens. A third epoch only "
    "overfits. extended and precision are for larger datasets (not measured here)."
)

def flag_of(key: str) -> Flag:
    """The Flag marker a TrainConfig key is declared with (a key without one: group Run)."""
    marks = [mark for mark in TrainConfig.model_fields[key].metadata if isinstance(mark, Flag)]
    return marks[0] if marks else Flag(RUN)


def declared(*, sweep: bool | None = None, dashboard: bool | None = None) -> list[str]:
    """The TrainConfig keys, in declaration order, whose marker says so."""
    return [key for key in TrainConfig.model_fields
            if sweep in (None, flag_of(key).sweep)
            and dashboard in (None, flag_of(key).dashboard)]


def value_type(key: str) -> type:
    """What one value of a key is read as: bool, int, float or str (a Literal's choices are
    str; target_modules, a list or "all-linear", is read as its text)."""
    annotation = _given(key)
    if get_origin(annotation) is Literal:
        return type(get_args(annotation)[0])
    return annotation if annotation in (bool, int, float, str) else str


def choices(key: str) -> tuple[str, ...]:
    """A Literal key's allowed values; () for any other key."""
    annotation = _given(key)
    return get_args(annotation) if get_origin(annotation) is Literal else ()


def _given(key: str) -> Any:
    """A key's annotation without its None (`int | None` -> int)."""
    annotation = TrainConfig.model_fields[key].annotation
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [arg for arg in get_args(annotation) if arg is not type(None)]
        return rest[0] if len(rest) == 1 else annotation
    return annotation


# The flag that sets each key, for messages that name what the user typed.
FLAG_NAMES = {name: (flag_of(name).flag or "--" + name.replace("_", "-")).split("/")[0]
              for name in TrainConfig.model_fields}


# Names other tools use for our keys, for "did you mean" hints.
ALIASES = {"lr": "learning_rate", "n_epochs": "epochs", "num_epochs": "epochs",
           "batch": "batch_size", "gradient_accumulation_steps": "grad_accum",
           "max_seq_length": "max_length", "r": "lora_r", "data_file": "train_file",
           "training_file": "train_file", "model_name": "model"}


def refuse_cloud_preset(provider: str, preset: str | None) -> None:
    """A preset is local LoRA settings (its learning rate is an adapter's, not a cloud
    multiplier): with a cloud provider it would be silently ignored, so it is refused."""
    if preset:
        raise UsageError(f"--preset {preset} sets local LoRA training; {provider} does not "
                         "take presets",
                         fix="leave out --preset, or set --epochs, --batch-size or "
                             "--learning-rate-multiplier for the cloud job")


def read_utf8(path: Path, name: str) -> str:
    """A text file the user named (a config, a prompts file), or one UsageError naming it as
    `name`: unreadable, or not UTF-8 (EncodingError says which encoding it looks like)."""
    try:
        raw = path.expanduser().read_bytes()
    except OSError as error:
        raise UsageError(f"{name}: cannot read it ({error.strerror})",
                         fix="check the path and the file's permissions") from None
    return decode_utf8(raw, name)


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a JSON or YAML config file into a dict, or raise UsageError naming the file."""
    if not path.is_file():
        raise UsageError(f"config file {path} does not exist", fix="check the --config path")
    text = read_utf8(path, f"config file {path}")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as error:  # yaml and json raise unrelated types; both mean "unreadable"
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UsageError(f"{path}: cannot parse: {first_line}",
                         fix="use valid JSON (.json) or YAML (.yaml/.yml)") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: the top level must be a mapping of keys to values",
                         fix="see configs/ for examples")
    return data


def resolve_config(*, preset: str | None = None, config_file: Path | None = None,
                   flags: dict[str, Any] | None = None,
                   base: dict[str, Any] | None = None) -> TrainConfig:
    """Merge base < preset < config file < flags and validate; every problem at once.

    `flags` holds only the flags the user gave (None values are dropped). `base` is a
    previous run's config, used by --resume.
    """
    flags = {key: value for key, value in (flags or {}).items() if value is not None}
    file_values = load_config_file(config_file) if config_file else {}
    sources: dict[str, str] = {}
    merged: dict[str, Any] = dict(base or {})
    # A base (resumed) config already has its preset's values baked in: not applied again.
    preset_name = preset or flags.get("preset") or file_values.get("preset")
    problems: list[str] = []
    if preset_name is not None:
        if preset_name in PRESETS:
            merged.update(PRESETS[preset_name]["values"])
        else:
            problems.append(f"--preset: unknown preset {preset_name!r} "
                            f"(choose from {', '.join(PRESETS)})")
    for key in file_values:
        sources[key] = f"key {key!r} in {config_file}"
    merged.update(file_values)
    for key in flags:
        sources[key] = FLAG_NAMES.get(key, key)
    merged.update(flags)
    merged.pop("preset", None)
    chosen = preset_name if preset_name in PRESETS else (base or {}).get("preset")
    if chosen:
        merged["preset"] = chosen
    return validate_config(merged, sources, problems)


def validate_config(values: dict[str, Any], sources: dict[str, str] | None = None,
                    problems: list[str] | None = None) -> TrainConfig:
    """Build a TrainConfig from `values`, or raise one ConfigError listing every problem."""
    sources, problems = sources or {}, list(problems or [])
    config = None
    try:
        config = TrainConfig(**values)
    except ValidationError as error:
        problems.extend(_describe(item, sources) for item in error.errors())
    problems.extend(_cross_field_problems(values, sources))
    if problems:
        raise ConfigError(problems, source="training config")
    return config


def check_paths(config: TrainConfig) -> list[str]:
    """Files the config names that do not exist, and a prompts file that is not UTF-8 text:
    checked before any model loads, so that nothing fails after training (the samples)."""
    problems = []
    for key in ("train_file", "validation_file", "prompts"):
        value = getattr(config, key)
        if value and not Path(value).expanduser().is_file():
            label = "FILE" if key == "train_file" else FLAG_NAMES[key]
            problems.append(f"{label}: {value} does not exist")
        elif value and key == "prompts":  # the data files are read in full before training
            try:
                read_utf8(Path(value), f"--prompts {value}")
            except UsageError as error:
                problems.append(error.render())
    return problems


def save_config(config: TrainConfig, path: Path, *, force: bool = False) -> Path:
    """Write the resolved config as JSON or YAML (by suffix). It never holds a secret."""
    if path.exists() and not force:
        raise UsageError(f"{path} already exists", fix="pick another name or add --force")
    data = config.model_dump(mode="json")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    else:
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _describe(item: dict[str, Any], sources: dict[str, str]) -> str:
    key = str(item["loc"][0]) if item["loc"] else "config"
    if item["type"] == "extra_forbidden":
        near = [ALIASES[key]] if key in ALIASES else difflib.get_close_matches(
            key, list(TrainConfig.model_fields), n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        return f"{sources.get(key, repr(key))}: unknown key{hint}"
    where = sources.get(key) or f"{key} ({FLAG_NAMES.get(key, key)})"
    message = item["msg"][:1].lower() + item["msg"][1:]  # a pattern in it keeps its case
    return f"{where}: {message}, got {item.get('input')!r}"


def _cross_field_problems(values: dict[str, Any], sources: dict[str, str]) -> list[str]:
    """Rules between keys, checked on the raw values so they show up with the rest."""
    problems = []
    if values.get("eval_every") and not values.get("validation_file"):
        problems.append(f"{sources.get('eval_every', '--eval-every')}: needs a validation "
                        "file (--validation-file)")
    if values.get("early_stopping_patience") and not values.get("validation_file"):
        problems.append(f"{sources.get('early_stopping_patience', '--early-stopping-patience')}"
                        ": needs a validation file (--validation-file)")
    if values.get("target_modules") == []:
        problems.append(f"{sources.get('target_modules', 'target_modules')}: name at least one "
                        "module, or use \"all-linear\"")
    return problems
