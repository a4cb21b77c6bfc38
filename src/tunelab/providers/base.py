"""The contract every provider speaks (the local trainer included), in OpenAI's vocabulary.

A provider is one file holding a class that satisfies `Provider` below (and, if it has
settings of its own, their model), plus one entry in `tunelab.providers.PROVIDERS`. Callers
use nothing outside the Protocol: no attribute probing. A provider raises only tunelab
errors (tunelab.providers.sdk_errors wraps the SDKs'), and never puts a key in a message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from tunelab.errors import UsageError
from tunelab.providers.retry import RetryPolicy

if TYPE_CHECKING:
    from tunelab.config import TrainConfig

S = TypeVar("S")


@dataclass(frozen=True)
class Capabilities:
    fine_tuning: bool = True
    chat: bool = True
    files: bool = True
    checkpoints: bool = True  # list_checkpoints can return something
    # tunelab copies this provider's jobs, events and metrics into the registry as it polls.
    # False for the local provider: its trainer writes the registry itself, so copying its
    # view back would race the trainer.
    mirrored: bool = True
    # The training methods (config.MethodName) its create_job takes; asked before any upload,
    # so a provider without DPO refuses a preference file by name.
    methods: frozenset[str] = frozenset({"supervised"})
    methods_note: str = ""  # why the others are missing, said in that refusal
    # What download_weights can bring home: "adapter" (a PEFT folder) and/or "merged" (a
    # whole model folder). Empty where the provider keeps what it trained (OpenAI, Vertex).
    weights: frozenset[str] = frozenset()
    # The job suffix the provider takes: at most suffix_max characters, none of
    # suffix_forbidden (Azure: 18, no dots). Checked before anything is uploaded.
    suffix_max: int | None = None
    suffix_forbidden: str = ""
    full_tuning: bool = True  # False: LoRA only (Fireworks); --full is refused before uploads

    def check_suffix(self, provider: str, suffix: str | None) -> None:
        """Refuse a suffix the provider would refuse (Azure: at most 18 characters, no
        dots), naming one it takes. The door asks before anything is uploaded."""
        from tunelab.errors import command

        limit, forbidden = self.suffix_max, self.suffix_forbidden
        bad = sorted({char for char in suffix or "" if char in forbidden})
        if not suffix or (not bad and (limit is None or len(suffix) <= limit)):
            return
        fixed = "".join("-" if char in forbidden else char for char in suffix)[:limit]
        rule = f"at most {limit} characters" if limit is not None else "a suffix"
        if forbidden:
            rule += f", without {' '.join(repr(char) for char in bad or forbidden)}"
        raise UsageError(f"--suffix {suffix!r}: {provider} takes {rule}",
                         fix=f"pass --suffix {command(fixed)}")

    def check_full(self, provider: str, full: bool | None) -> None:
        """Refuse --full on a provider that trains LoRA only (asked before any upload)."""
        if full and not self.full_tuning:
            raise UsageError(f"--full: {provider} fine-tunes with LoRA only",
                             fix="leave out --full (Together trains fully: --provider "
                                 "together)")


@dataclass(frozen=True)
class ProviderSettings:
    """What a provider is built with. Every provider shares two: where its API lives
    (--base-url; the registry keeps it as each job's endpoint) and how long it keeps trying
    (--timeout), with whom it tells of each retry. `own` is the provider's own settings: an
    instance of the model its registry entry declares (Vertex's project, region, bucket and
    adapter size), whose fields are its flags; None means that model's defaults."""

    base_url: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    own: Any = None

    def own_as(self, model: type[S]) -> S:
        """`own` as the provider's settings model (its defaults when none was given)."""
        if self.own is None:
            return model()
        if not isinstance(self.own, model):
            raise TypeError(f"{type(self.own).__name__} given where {model.__name__} is "
                            "expected")
        return self.own


@dataclass
class FileRef:
    id: str
    filename: str
    bytes: int
    sha256: str
    reused: bool = False  # True when an identical upload was found and no bytes were sent


@dataclass(frozen=True)
class JobSpec:
    """What a user asks a provider to train, built once at the CLI edge.

    For `create_job`, the files are the ids (or URIs) `upload` returned; for
    `describe_request` they are the local paths, since nothing is uploaded in a dry run.
    """

    base_model: str
    training_file: str
    validation_file: str | None = None
    suffix: str | None = None
    epochs: int | None = None
    learning_rate: float | None = None  # a multiplier for cloud providers
    batch_size: int | None = None
    seed: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)  # OpenAI's job metadata
    config: TrainConfig | None = None  # local: the resolved run config (wins over the above)
    method: str = "supervised"  # config.MethodName: supervised, or dpo (preference pairs)
    beta: float | None = None  # dpo only; None leaves the provider's default
    # What an open-model provider (Together) also takes, as the user gave them (None: its
    # default): --full/--lora, --lora-r, --max-length.
    full: bool | None = None
    lora_r: int | None = None
    max_length: int | None = None


@dataclass
class Job:
    id: str
    status: str  # one of tunelab.registry.store.STATUSES, or a native status we keep as is
    base_model: str
    native_status: str | None = None
    fine_tuned_model: str | None = None
    created_at: float | None = None
    finished_at: float | None = None
    training_file: str | None = None
    validation_file: str | None = None
    suffix: str | None = None
    trained_tokens: int | None = None
    error: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProviderEvent:
    id: str
    created_at: float
    message: str
    level: str = "info"
    type: str = "message"
    data: dict[str, Any] | None = None  # metric events: step, train_loss, valid_loss, ...


@dataclass(frozen=True)
class Checkpoint:
    """A saved point of a job. The fields a local checkpoint row has, plus `model`."""

    job_id: str
    name: str  # local: step-000004, epoch-001, latest, best; OpenAI: the ftckpt- id
    kind: str  # step, epoch, latest or best
    created_at: float
    step: int | None = None
    epoch: float | None = None
    path: str | None = None  # local: the checkpoint folder
    metrics: dict[str, Any] = field(default_factory=dict)  # registry.metrics vocabulary
    model: str | None = None  # a name `tunelab test/chat` accept (OpenAI's ft:...:ckpt-step-N)


@dataclass(frozen=True)
class ChatOptions:
    """Generation settings in OpenAI's names; None leaves the provider's default."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    repetition_penalty: float | None = None  # transformers' (local models); others ignore it

    def openai_arguments(self) -> dict[str, Any]:
        """The settings given, as an OpenAI-shaped chat completion takes them."""
        given = (("max_tokens", self.max_tokens), ("temperature", self.temperature),
                 ("top_p", self.top_p), ("seed", self.seed))
        return {name: value for name, value in given if value is not None}


@dataclass
class Reply:
    text: str
    model: str
    latency_s: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@runtime_checkable
class Provider(Protocol):
    """Every operation callers use. Read-only members are properties so that an
    implementation may narrow them (a cloud provider's base_url is always a str)."""

    @property
    def name(self) -> str: ...

    @property
    def capabilities(self) -> Capabilities: ...

    @property
    def base_url(self) -> str | None:
        """Where the provider's API lives (recorded as a job's endpoint); None for local."""

    def upload(self, path: Path) -> FileRef: ...

    def describe_request(self, spec: JobSpec) -> dict[str, Any]:
        """What create_job would send for `spec` (local files), sending nothing."""

    def create_job(self, spec: JobSpec) -> Job: ...

    def get_job(self, job_id: str) -> Job: ...

    def list_jobs(self, limit: int = 20) -> list[Job]: ...

    def list_events(self, job_id: str, after: str | None = None) -> list[ProviderEvent]:
        """Events newer than the event id `after`, oldest first."""

    def list_checkpoints(self, job_id: str) -> list[Checkpoint]: ...

    def cancel(self, job_id: str) -> Job: ...

    def chat(self, model: str, messages: list[dict[str, Any]],
             options: ChatOptions = ChatOptions()) -> Reply: ...

    def download_weights(self, job_id: str, kind: str, dest: Path) -> Path:
        """Bring home what job `job_id` trained. `kind` is one of capabilities.weights:
        "adapter" (a PEFT folder: adapter_config.json and its weights) or "merged" (a model
        folder: config.json and its weights). Unpacks into the empty folder `dest` and returns
        the folder holding those files. A provider with no weights to give raises
        no_weights(name) (tunelab pull asks capabilities.weights first)."""


def no_weights(provider: str) -> UsageError:
    """The refusal of a provider that keeps the weights it trains."""
    return UsageError(f"{provider} does not let you download the weights it trains",
                      fix="`tunelab pull` takes jobs of a provider that does (together); "
                          "a local job's adapter is already on this machine")
