"""The Azure OpenAI provider: the OpenAI-compatible one with Azure's differences (see
tunelab.providers.azure for what they are and why; this module imports the openai SDK)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from openai.types.fine_tuning import FineTuningJob

from tunelab.errors import AuthError, ProviderError, TransientProviderError, TunelabError
from tunelab.providers.azure import (
    NOTE_SUFFIX,
    AzureSettings,
    deployment_body,
    deployment_name,
    deployment_note,
    profile_for,
    resource_endpoint,
    with_bom,
)
from tunelab.providers.base import JobSpec, ProviderEvent, ProviderSettings
from tunelab.providers.openai_compat import REQUEST_TIMEOUT_S, OpenAICompatProvider, as_jsonl
from tunelab.providers.profiles import Profile
from tunelab.providers.sdk_errors import first_line, retryable_status, scrub


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
        self.capabilities.check_suffix(self.name, spec.suffix)  # direct callers, dry runs
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
            try:
                deployed = self._deploy(job.fine_tuned_model)
                level = "info"
            except TunelabError as error:  # the job succeeded all the same: say, don't fail
                deployed = (f"deploying {job.fine_tuned_model} failed: {error.render()}; "
                            + deployment_note(self.settings, job.fine_tuned_model))
                level = "error"
            events.append(ProviderEvent(
                id=note_id, created_at=float(job.finished_at or (events[-1].created_at
                                                                 if events else 0)),
                message=deployed or deployment_note(self.settings, job.fine_tuned_model),
                level=level if deployed else "warn", type="message"))
        return events

    def _deploy(self, model: str) -> str | None:
        """PUT the deployment (idempotent: it creates or updates), when the management
        settings and a token are given; what Azure answered, or None."""
        import httpx

        url = self.settings.deployment_url(model)
        variable = self.settings.azure_token_env
        token = os.environ.get(variable, "").strip() if variable else ""
        if url is None or not token:
            return None

        def send() -> httpx.Response:
            try:
                answer = httpx.put(url, json=deployment_body(model), timeout=REQUEST_TIMEOUT_S,
                                   headers={"Authorization": f"Bearer {token}"})
            except httpx.TransportError as error:
                raise TransientProviderError(f"cannot reach Azure's control plane: "
                                             f"{type(error).__name__}",
                                             code="connection_error", fix="retry") from None
            if retryable_status(answer.status_code):
                raise TransientProviderError(f"Azure's control plane answered "
                                             f"{answer.status_code}", code=str(
                                                 answer.status_code), fix="retry")
            return answer

        answer = self._retrying(f"deploying {model}", send)
        said = scrub(first_line(answer.text, token), self._key)
        if answer.status_code in (401, 403):
            raise AuthError(f"Azure refused the management token in {variable}: {said}",
                            fix="refresh it: az account get-access-token")
        if answer.status_code >= 400:
            raise ProviderError(f"deploying {model}: Azure answered {answer.status_code}: "
                                f"{said}", code=str(answer.status_code),
                                fix="check --azure-subscription, --azure-resource-group "
                                    "and --azure-resource")
        state = (answer.json().get("properties") or {}).get("provisioningState", "accepted")
        return (f"deployed {model} as deployment {deployment_name(model)} on "
                f"{self.settings.azure_resource} (provisioning {state}); it answers under "
                "that name once Azure has provisioned it")


def build(settings: ProviderSettings) -> AzureProvider:
    """The factory tunelab.providers.PROVIDERS holds for "azure" (through a lazy import: this
    module loads the openai SDK)."""
    own = settings.own_as(AzureSettings)
    return AzureProvider(profile_for(resource_endpoint(settings.base_url, own)), own,
                         retry=settings.retry)
