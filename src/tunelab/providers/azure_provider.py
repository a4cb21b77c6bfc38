"""The Azure OpenAI provider: the OpenAI-compatible one with Azure's differences (see
tunelab.providers.azure for what they are and why; this module imports the openai SDK)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openai.types.fine_tuning import FineTuningJob

from tunelab.providers.azure import NOTE_SUFFIX, AzureSettings, deployment_note, with_bom
from tunelab.providers.base import JobSpec, ProviderEvent
from tunelab.providers.openai_compat import OpenAICompatProvider, as_jsonl
from tunelab.providers.profiles import Profile


class AzureProvider(OpenAICompatProvider):
    """The OpenAI-compatible provider, pointed at an Azure resource, with Azure's rules."""

    def __init__(self, profile: Profile, own: AzureSettings, **options: Any) -> None:
        super().__init__(profile, **options)
        self.settings = own

    def __repr__(self) -> str:
        return f"AzureProvider(base_url={self.base_url!r})"

    def _sendable(self, path: Path) -> Path:
        return as_jsonl(path) if self.settings.azure_bom is False else with_bom(path)

    def _job_body(self, spec: JobSpec, token: str) -> dict[str, Any]:
        from tunelab.runs.checks import suffix_rule

        suffix_rule(self.name, self.capabilities, spec.suffix)  # direct callers, dry runs
        body = super()._job_body(spec, token)
        if self.settings.azure_training_type:
            body["trainingType"] = self.settings.azure_training_type
        return body

    def _send_job(self, body: dict[str, Any]) -> FineTuningJob:
        # Each retry sends the same body: read it, never pop from it.
        rest = {key: value for key, value in body.items() if key != "trainingType"}
        extra = {"trainingType": body["trainingType"]} if "trainingType" in body else None
        return self._client.fine_tuning.jobs.create(**rest, extra_body=extra)

    def list_events(self, job_id: str, after: str | None = None) -> list[ProviderEvent]:
        """Azure's events, then (once the job succeeded) how to deploy its model: the
        newest event, so `after` it nothing is new."""
        note_id = job_id + NOTE_SUFFIX
        if after == note_id:
            return []
        events = super().list_events(job_id, after)
        job = self.get_job(job_id)
        if job.status == "succeeded" and job.fine_tuned_model:
            events.append(ProviderEvent(
                id=note_id, created_at=float(job.finished_at or (events[-1].created_at
                                                                 if events else 0)),
                message=deployment_note(self.settings, job.fine_tuned_model),
                level="warn", type="message"))
        return events
