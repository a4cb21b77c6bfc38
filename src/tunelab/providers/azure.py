"""Azure OpenAI (Microsoft Foundry) fine-tuning: OpenAI's files and jobs API on your resource.

Azure's v1 API (`https://RESOURCE.openai.azure.com/openai/v1/`) takes the `openai` SDK's own
`OpenAI` client with the resource's key, so this provider is the OpenAI-compatible one
(tunelab.providers.openai_compat) with Azure's differences handled here, not leaked:

- the endpoint is the user's resource (--azure-endpoint or AZURE_OPENAI_ENDPOINT), the key
  AZURE_OPENAI_API_KEY;
- uploads carry a UTF-8 byte-order mark, as the docs ask ("must be encoded in UTF-8 and
  include a byte-order mark"; --no-azure-bom sends the bytes as they are);
- the job takes `trainingType` (Standard, GlobalStandard, developerTier) beside OpenAI's body
  (the SDK's extra_body);
- a suffix is at most 18 characters and has no dots (Capabilities.suffix_max/forbidden,
  checked by the door before anything is uploaded);
- fine-tuned models are named `BASE.ft-JOBHEX` (e.g. gpt-4.1-2025-04-14.ft-0a1b...), not
  `ft:...`; tunelab.data.pricing.base_model reads both;
- a succeeded job answers nothing until it is deployed (a control-plane call with an Azure AD
  token, not the key): its events end with a note that gives the command, or the exact PUT
  when the management settings (--azure-subscription, --azure-resource-group,
  --azure-resource) are given; with --azure-token-env VAR too, tunelab makes that PUT
  (api-version 2024-10-01) once the job succeeds, and the event says what Azure answered.

This module is light (settings, rules, notes: read by every command's flags); the
provider class is in azure_provider.py, which imports the SDK. Azure keeps the weights it
trains (no download). Facts and sources: /README.md's "Where to go
from OpenAI" and data/pricing.json's azure rows.
"""

from __future__ import annotations

import codecs
import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tunelab.errors import UsageError
from tunelab.home import cache_dir
from tunelab.providers.base import Capabilities
from tunelab.providers.profiles import Profile

NAME = "azure"
KEY_ENV = "AZURE_OPENAI_API_KEY"
ENDPOINT_ENV = "AZURE_OPENAI_ENDPOINT"
API_PATH = "/openai/v1"
MANAGEMENT = "https://management.azure.com"
DEPLOYMENT_API_VERSION = "2024-10-01"
NOTE_SUFFIX = "-deployment-note"  # the id of the event that says how to serve the model
TrainingType = Literal["Standard", "GlobalStandard", "developerTier"]

# Azure's rule for a job's suffix (fine-tuning how-to: "up to 18 characters", no dots).
CAPABILITIES = Capabilities(methods=frozenset({"supervised", "dpo"}), suffix_max=18,
                            suffix_forbidden=".",
                            methods_note="DPO on gpt-4o, gpt-4.1, 4.1-mini and 4.1-nano")


class AzureSettings(BaseModel):
    """Azure's own settings: each field is a flag of the commands that start jobs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    azure_endpoint: str | None = Field(
        None, description=f"The resource, https://NAME.openai.azure.com (default: "
                          f"{ENDPOINT_ENV}).")
    azure_training_type: TrainingType | None = Field(
        None, description="Standard, GlobalStandard or developerTier (default: Azure's).")
    azure_bom: bool | None = Field(
        None, description="Upload with a UTF-8 byte-order mark, as Azure's docs ask "
                          "(default: yes).")
    existing_customer: bool | None = Field(
        None, description="Azure: you fine-tuned on Azure before its base models retired, so "
                          "you may train until April 2027 (default: ask, warn).")
    azure_subscription: str | None = Field(
        None, description="Subscription id, for the deployment command after training.")
    azure_resource_group: str | None = Field(
        None, description="Resource group of the Azure OpenAI resource.")
    azure_resource: str | None = Field(None, description="Name of the Azure OpenAI resource.")
    azure_token_env: str | None = Field(
        None, description="The variable holding an Azure AD token for management.azure.com "
                          "(az account get-access-token): with the three above, tunelab "
                          "deploys the trained model itself.")
    azure_management_url: str | None = Field(
        None, description=f"The control plane (default: {MANAGEMENT}).")

    def deployment_url(self, model: str) -> str | None:
        """The PUT that deploys `model`, when the management settings name the resource."""
        if not (self.azure_subscription and self.azure_resource_group and
                self.azure_resource):
            return None
        return (f"{(self.azure_management_url or MANAGEMENT).rstrip('/')}/subscriptions/"
                f"{self.azure_subscription}/resourceGroups/{self.azure_resource_group}/"
                f"providers/Microsoft.CognitiveServices/accounts/{self.azure_resource}/"
                f"deployments/{deployment_name(model)}?api-version={DEPLOYMENT_API_VERSION}")


def api_base(endpoint: str) -> str:
    """The v1 API base of a resource: https://NAME.openai.azure.com -> .../openai/v1."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(API_PATH) else endpoint + API_PATH


def with_bom(path: Path) -> Path:
    """`path` as JSONL starting with a UTF-8 byte-order mark: itself when it has one, else a
    copy in the cache named by the source's hash (so a rerun reuses it, and the upload's
    content hash, which dedupes uploads, is the copy's)."""
    from tunelab.providers.openai_compat import as_jsonl, file_sha256

    path = as_jsonl(path)
    with path.open("rb") as handle:
        if handle.read(3) == codecs.BOM_UTF8:
            return path
    target = cache_dir() / "uploads" / f"{path.stem}.{file_sha256(path)[:16]}.bom.jsonl"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".part")
        partial.write_bytes(codecs.BOM_UTF8 + path.read_bytes())
        partial.replace(target)
    return target


def deployment_name(model: str) -> str:
    """The model's own name (Azure takes letters, digits, '-', '_' and '.', up to 64), so
    `tunelab chat MODEL` reaches the deployment by the name jobs show."""
    return model[:64]


def deployment_body(model: str) -> dict[str, object]:
    """A Standard deployment of one capacity unit of the fine-tuned model."""
    return {"sku": {"name": "standard", "capacity": 1},
            "properties": {"model": {"format": "OpenAI", "name": model, "version": "1"}}}


def deployment_note(settings: AzureSettings, model: str) -> str:
    """How to serve `model`: Azure answers only through a deployment, made by a
    control-plane call with an Azure AD token (the API key cannot)."""
    name = deployment_name(model)
    url = settings.deployment_url(model)
    if url is not None:
        return (f"{model} answers only once deployed: curl -X PUT '{url}' -H "
                "\"Authorization: Bearer $(az account get-access-token --query accessToken "
                f"-o tsv)\" -H 'Content-Type: application/json' -d "
                f"'{json.dumps(deployment_body(model))}' (or pass --azure-token-env VAR and "
                "tunelab makes this call)")
    group = settings.azure_resource_group or "RESOURCE_GROUP"
    resource = settings.azure_resource or "RESOURCE"
    return (f"{model} answers only once deployed: az cognitiveservices account deployment "
            f"create --resource-group {group} --name {resource} --deployment-name {name} "
            f"--model-name {model} --model-version 1 --model-format OpenAI --sku-name standard "
            "--sku-capacity 1 (or pass --azure-subscription, --azure-resource-group and "
            "--azure-resource for the REST call)")


def resource_endpoint(base_url: str | None, own: AzureSettings) -> str:
    """Where the resource is: --base-url, else --azure-endpoint, else AZURE_OPENAI_ENDPOINT."""
    endpoint = base_url or own.azure_endpoint or os.environ.get(ENDPOINT_ENV, "")
    if not endpoint.strip():
        raise UsageError("no Azure OpenAI resource given",
                         fix=f"pass --azure-endpoint https://NAME.openai.azure.com or set "
                             f"{ENDPOINT_ENV}")
    return endpoint.strip()


def profile_for(endpoint: str) -> Profile:
    """The resource as an OpenAI-compatible endpoint: its v1 API and its key variable."""
    return Profile(name=NAME, base_url=api_base(endpoint), key_envs=(KEY_ENV,),
                   capabilities=CAPABILITIES,
                   docs="the Azure portal: your resource's Keys and Endpoint")
