"""The gate in front of every route, API and dashboard alike. In this order:

1. Host. Without a key the server listens on loopback only (settings.check_bind), but a page
   on another site can still reach it through the user's browser: by DNS rebinding, under its
   own host name. So without a key only a Host naming this machine is served (403
   host_refused), on every route. With a key, the key protects: a reverse proxy may send any
   Host.
2. Origin. A browser lets any site's page send a form (a multipart upload, a POST with no
   body) to this server. A state-changing request (any method but GET, HEAD and OPTIONS)
   without the bearer key whose Origin, else Referer, names another site is refused (403
   csrf_refused), on every route. Browsers never add a bearer header themselves, so a request
   with the key is a script's. Clients that send neither header (the SDKs, curl) go on.
3. The key, when one is set: every route but /health needs it, compared in constant time and
   never logged. The dashboard may admit a browser without it (its login form, a session
   cookie): see dashboard/security.py.
4. Body size. An upload (POST /v1/files, the dashboard's /new/upload) streams to disk under
   its own cap (server/upload.py); every other body is parsed whole, so it has a small limit
   of its own (settings.max_json_bytes): a declared length over it is refused unread, and a
   body sent without one (chunked) is refused at its first byte over it (BodyLimit). Either
   way the answer is 413 with `Connection: close`, so nothing more is read.
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tunelab.server.errors import error_response
from tunelab.server.settings import ServeSettings, is_loopback

OPEN_PATHS = frozenset({"/health"})
# Bodies streamed to disk under the upload limit; every other body is held whole in memory.
UPLOAD_PATHS = frozenset({"/v1/files", "/new/upload"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MULTIPART_SLACK = 64 * 1024  # headers and boundaries around the file itself


def bearer_ok(header: str | None, key: str) -> bool:
    scheme, _, token = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(),
                                                              key.encode())


def bearer_given(request: Request, settings: ServeSettings) -> bool:
    return bool(settings.api_key) and bearer_ok(request.headers.get("authorization"),
                                                settings.api_key or "")


def host_allowed(request: Request, settings: ServeSettings) -> bool:
    """Without a key, only a Host naming this machine: a DNS-rebinding page names its own."""
    if settings.api_key:
        return True
    try:
        host = urlsplit(f"//{request.headers.get('host', '')}").hostname or ""
    except ValueError:  # not a host at all (an unclosed "[")
        return False
    return is_loopback(host)


def same_origin(request: Request) -> bool:
    """Origin, else Referer, when the browser sent one, is this server's own."""
    sent = request.headers.get("origin") or request.headers.get("referer")
    if sent is None:
        return True  # neither sent: not a browser, or one whose form carries a CSRF token
    try:
        parts = urlsplit(sent)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and parts.netloc == request.headers.get("host")


def cross_site(request: Request, settings: ServeSettings) -> bool:
    """A state-changing request a page on another site made the browser send."""
    return request.method not in SAFE_METHODS and not bearer_given(request, settings) \
        and not same_origin(request)


def too_large(path: str, settings: ServeSettings) -> JSONResponse:
    if path in UPLOAD_PATHS:
        return error_response(413, f"Request body is over the {settings.max_upload_bytes} "
                              "byte limit", code="file_too_large",
                              headers={"Connection": "close"})
    return error_response(413, f"Request body is over the {settings.max_json_bytes} byte "
                          "limit for JSON and form bodies (files go to POST /v1/files)",
                          code="request_too_large", headers={"Connection": "close"})


def _declared_too_large(request: Request, settings: ServeSettings) -> bool:
    length = request.headers.get("content-length")
    if not (length and length.isdigit()):
        return False
    path = request.url.path
    limit = settings.max_upload_bytes + MULTIPART_SLACK if path in UPLOAD_PATHS \
        else settings.max_json_bytes
    return int(length) > limit


class BodyLimit:
    """Every body but an upload's, read whole before the app runs (the app would parse it
    whole anyway) and refused at its first byte over settings.max_json_bytes."""

    def __init__(self, app: ASGIApp, settings: ServeSettings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UPLOAD_PATHS:
            await self.app(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left: the app sees it so
                first: Message = message
                break
            body = message.get("body", b"")
            size += len(body)
            if size > self.settings.max_json_bytes:
                await too_large(scope["path"], self.settings)(scope, receive, send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                first = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # what follows the body: a disconnect
            replayed = True
            return first

        await self.app(scope, replay, send)


def install(app: FastAPI, settings: ServeSettings, browser: Any = None) -> None:
    """`browser` (the dashboard's gate) may admit a request without the bearer key (its login
    form, a valid session cookie) and answers the ones it refuses (a page: to the login)."""
    app.add_middleware(BodyLimit, settings=settings)  # inside the gate: runs after it

    @app.middleware("http")
    async def gate(request: Request, call_next):  # type: ignore[no-untyped-def]
        if not host_allowed(request, settings):
            return error_response(403, "this server answers only to a loopback host "
                                  "(127.0.0.1, ::1, localhost) when it has no API key",
                                  code="host_refused")
        if cross_site(request, settings):
            return error_response(403, "cross-site request refused (Origin is not this "
                                  "server)", code="csrf_refused")
        if settings.api_key and request.url.path not in OPEN_PATHS \
                and not bearer_ok(request.headers.get("authorization"), settings.api_key) \
                and not (browser is not None and browser.admits(request)):
            if browser is not None:
                return browser.refusal(request)
            return error_response(401, "Missing or incorrect API key: send "
                                  "'Authorization: Bearer <key>'", code="invalid_api_key")
        if _declared_too_large(request, settings):
            # Connection: close, or the server would read (and drop) the whole body first.
            return too_large(request.url.path, settings)
        return await call_next(request)
