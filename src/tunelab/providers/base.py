"""The small contract every provider speaks, in OpenAI's vocabulary.

A provider is one file plus one entry in `tunelab.providers.PROVIDERS`. It raises only
tunelab errors (wrap SDK errors), and never puts a key in a message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Capabilities:
    fine_tuning: bool = True
    chat: bool = True
    files: bool = True


@dataclass
class FileRef:
    id: str
    filename: str
    bytes: int
    sha256: str
    reused: bool = False  # True when an identical upload was found and no bytes were sent


@dataclass
class JobSpec:
    """What a user asks a provider to train. Provider-only knobs ride in `extra`."""

    base_model: str
    training_file: str  # a FileRef.id (or URI) on the provider
    validation_file: str | None = None
    suffix: str | None = None
    epochs: int | None = None
    learning_rate: float | None = None  # a multiplier for cloud providers
    batch_size: int | None = None
    seed: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


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


@dataclass
class Reply:
    text: str
    model: str
    latency_s: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@runtime_checkable
class Provider(Protocol):
    name: str
    capabilities: Capabilities

    def upload(self, path: Path) -> FileRef: ...

    def create_job(self, spec: JobSpec) -> Job: ...

    def get_job(self, job_id: str) -> Job: ...

    def list_jobs(self, limit: int = 20) -> list[Job]: ...

    def list_events(self, job_id: str, after: str | None = None) -> list[ProviderEvent]: ...

    def cancel(self, job_id: str) -> Job: ...

    def chat(self, model: str, messages: list[dict[str, Any]], **options: Any) -> Reply: ...
