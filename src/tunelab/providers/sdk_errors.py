"""The one place where SDK errors become tunelab errors (see the tree in tunelab.errors).

    openai SDK
      AuthenticationError / PermissionDeniedError   -> AuthError
      NotFoundError                                 -> NotFoundError
      APIConnectionError, 408, 409, 429, 5xx        -> TransientProviderError (retry_after)
      httpx / httpx2 TransportError (a broken body) -> APIConnectionError (transport_errors)
      any other APIError                            -> ProviderError(code, message)
    together SDK: the same tree as openai's (both are Stainless-generated), from_together
    fireworks-ai SDK: the same tree again (Stainless-generated), from_fireworks
    google (google-genai, google-api-core, google-auth, httpx)
      DefaultCredentialsError, RefreshError         -> AuthError (gcloud auth ... login)
      401 / 403                                     -> AuthError
      404 (job, endpoint, bucket)                   -> NotFoundError
      408, 409, 429, 5xx, transport errors          -> TransientProviderError
      any other API error                           -> ProviderError(code, message)

Each SDK is imported inside the function that maps its errors, never at the top of this module:
every command imports this map (through the providers), and only the commands that use a
provider may pay for its SDK (openai alone costs about half a second).

Every message keeps the provider's code, param and the first line of its message, with keys
and tokens scrubbed out of each: the SDKs echo them back (OpenAI shows a masked key; a Google
error can quote an Authorization header). `scrub_json` does the same for whole objects (jobs,
events, checkpoints) where the provider adapters turn them into tunelab's.
"""

from __future__ import annotations

import contextlib
import importlib
import re
import urllib.parse
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from tunelab.errors import (
    AuthError,
    NotFoundError,
    ProviderError,
    TransientProviderError,
    TunelabError,
)

if TYPE_CHECKING:
    import openai

RETRYABLE_STATUS = frozenset({408, 409, 429})
ADC_FIX = ("run `gcloud auth application-default login` (or set GOOGLE_APPLICATION_CREDENTIALS) "
           "and set GOOGLE_CLOUD_PROJECT or pass --project-id")
# Key and token shapes an answer may echo: OpenAI keys (also masked, "sk-ab***yz"), Google
# API keys, Together keys (tgp_v1_...), OAuth access tokens, and any bearer credential.
_SECRETS = re.compile(r"\bsk-[A-Za-z0-9_\-*.]{4,}|\bAIza[0-9A-Za-z_\-]{20,}|\btgp_v1_[\w\-*.]{4,}"
                      r"|\bya29\.[0-9A-Za-z_\-.]+|(?i:bearer)\s+[^\s\"',;)\]}]+")


def scrub(text: str, key: str | None = None) -> str:
    """`text` without `key` or anything shaped like a key or token."""
    if key and len(key) >= 4:
        text = text.replace(key, "***")
    return _SECRETS.sub("***", text)


def public_endpoint(url: str) -> str:
    """`url` as it may be stored (the registry's endpoint column) or printed: without the
    `user:password@` a --base-url may carry, and scrubbed like any text."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is not None or parts.password is not None:
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        parts = parts._replace(netloc=host + (f":{parts.port}" if parts.port else ""))
    return scrub(urllib.parse.urlunsplit(parts))


def scrub_json(value: Any, key: str | None = None) -> Any:
    """A JSON-like value (what a provider sent: a job, an event, an error object) with every
    string in it scrubbed, dict keys included. Providers pass what they receive through this
    once, where it becomes a tunelab object, so nothing downstream sees a key."""
    if isinstance(value, str):
        return scrub(value, key)
    if isinstance(value, dict):
        return {scrub_json(name, key): scrub_json(item, key) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_json(item, key) for item in value]
    return value


def first_line(value: object, key: str | None = None) -> str:
    return (scrub(str(value), key).strip().splitlines() or [""])[0][:300]


def retryable_status(status: int | None) -> bool:
    return status is not None and (status in RETRYABLE_STATUS or status >= 500)


# openai and together (both SDKs are Stainless-generated: one error class tree) -------------
def from_openai(error: openai.APIError, *, provider: str, key: str | None) -> TunelabError:
    """The openai SDK's error as a tunelab error holding only code and message."""
    import openai  # already loaded: only a provider built on the SDK has its errors

    return _from_stainless(openai, error, *_openai_code_and_message(error), provider=provider,
                           key=key)


def from_together(error: Any, *, provider: str, key: str | None) -> TunelabError:
    """The together SDK's error, as from_openai. Together's body is {"error": {"message",
    "type", "code"}} or {"message"}; its errors carry no code attribute of their own."""
    import together  # already loaded, as above

    body = error.body if isinstance(error.body, dict) else {}
    inner = body.get("error") if isinstance(body.get("error"), dict) else body
    status = error.status_code if isinstance(error, together.APIStatusError) else None
    code = inner.get("code") or inner.get("type") or (str(status) if status else None)
    return _from_stainless(together, error, str(code) if code else None,
                           str(inner.get("message") or error.message),
                           str(inner["param"]) if inner.get("param") else None,
                           provider=provider, key=key)


def from_fireworks(error: Any, *, provider: str, key: str | None) -> TunelabError:
    """The fireworks-ai SDK's error, as from_openai. Fireworks' gateway answers
    {"error": {"code", "message", "status"}} or, gRPC-style, {"code", "message"}."""
    import fireworks  # already loaded, as above

    body = error.body if isinstance(error.body, dict) else {}
    inner = body.get("error") if isinstance(body.get("error"), dict) else body
    status = error.status_code if isinstance(error, fireworks.APIStatusError) else None
    code = inner.get("status") or inner.get("code") or (str(status) if status else None)
    return _from_stainless(fireworks, error, str(code) if code else None,
                           str(inner.get("message") or error.message), None,
                           provider=provider, key=key)


def _from_stainless(sdk: Any, error: Any, code: str | None, message: str, param: str | None,
                    *, provider: str, key: str | None) -> TunelabError:
    # The code and param are the provider's text too: an echoed key can hide in them.
    code = first_line(code, key) if code else None
    message = first_line(message, key) or "no message"
    if param:
        message += f" (param: {first_line(param, key)})"
    if isinstance(error, sdk.AuthenticationError | sdk.PermissionDeniedError):
        return AuthError(f"{provider} refused the key: {message}", code=code,
                         fix="check the API key variable for this provider and its permissions")
    if isinstance(error, sdk.NotFoundError):
        return NotFoundError(f"{provider}: {message}",
                             fix="check the id (`tunelab jobs list --provider "
                                 f"{provider}`) and --base-url")
    if isinstance(error, sdk.APIConnectionError):
        return TransientProviderError(f"cannot reach {provider}: {message}",
                                      code="connection_error",
                                      fix="check the network and --base-url, then retry")
    status = error.status_code if isinstance(error, sdk.APIStatusError) else None
    if retryable_status(status):
        return TransientProviderError(f"{provider}: {message}", code=code,
                                      fix="wait a moment and retry",
                                      retry_after=_retry_after(error))
    return ProviderError(f"{provider}: {message}", code=code,
                         fix="see the provider's message; fix the request and retry")


def _openai_code_and_message(error: openai.APIError) -> tuple[str | None, str, str | None]:
    """The error's code (else its HTTP status), message and param, unscrubbed."""
    import openai

    body = error.body if isinstance(error.body, dict) else {}
    inner = body.get("error") if isinstance(body.get("error"), dict) else body
    message = inner.get("message") or error.message
    code = inner.get("code") or error.code
    param = inner.get("param") or error.param
    status = error.status_code if isinstance(error, openai.APIStatusError) else None
    return ((str(code) if code else (str(status) if status else None)), str(message),
            str(param) if param else None)


def _retry_after(error: Any) -> float | None:
    """The Retry-After seconds of an SDK's status error (openai's or together's)."""
    value = error.response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: our own backoff is close enough
        return None


# google ----------------------------------------------------------------------------------------
@contextlib.contextmanager
def google_errors(what: str) -> Iterator[None]:
    """Run Google SDK calls about `what`, turning their errors into tunelab's."""
    from google.api_core import exceptions as api_core
    from google.auth import exceptions as auth
    from google.genai import errors as genai

    try:
        with warnings.catch_warnings():
            # "tuning is experimental" and unknown JobState notices are not the user's.
            warnings.simplefilter("ignore")
            yield
    except genai.APIError as error:
        raise _google_api_error(error.code, error.status, error.message, what) from None
    except api_core.GoogleAPICallError as error:
        raise _google_api_error(error.code, None, error.message, what,
                                service="Cloud Storage") from None
    except auth.DefaultCredentialsError:
        raise AuthError("no Google Application Default Credentials found",
                        fix=ADC_FIX) from None
    except auth.RefreshError as error:
        raise AuthError(f"Google refused the credentials: {first_line(error)}",
                        fix=ADC_FIX) from None
    except (auth.TransportError, OSError, *_http_transport_errors()) as error:
        raise TransientProviderError(f"cannot reach Google Cloud for {what}: "
                                     f"{first_line(error)}", code="connection_error",
                                     fix="check the network (and --base-url), then retry") \
            from None


def _google_api_error(code: int | None, status: str | None, message: str | None, what: str,
                      *, service: str = "Vertex AI") -> ProviderError | NotFoundError:
    text = f"{service} ({what}): {first_line(message or status or 'no message')}"
    label = str(status or code) if (status or code) else None
    if code in (401, 403):
        return AuthError(text, code=label, fix="check the account's Vertex AI and Storage "
                                               "roles; " + ADC_FIX)
    if code == 404:
        return NotFoundError(text, fix="check the name, --project-id, --location and --bucket")
    if retryable_status(code):
        return TransientProviderError(text, code=label, fix="wait a moment and retry")
    return ProviderError(text, code=label, fix="see Google's message; fix and retry")


def transport_errors() -> tuple[type[BaseException], ...]:
    """A broken connection as the HTTP clients raise it: the openai SDK's httpx2 raises
    its own TransportError, not httpx's (item 21 of issue 26). Imported here, lazily."""
    return _http_transport_errors()


def _http_transport_errors() -> tuple[type[BaseException], ...]:
    """Network failures of httpx and of httpx2, the fork google-genai may use instead."""
    found = []
    for module in ("httpx", "httpx2"):
        with contextlib.suppress(ImportError):
            found.append(importlib.import_module(module).TransportError)
    return tuple(found)
