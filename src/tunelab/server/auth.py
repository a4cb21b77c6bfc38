"""The gate in front of every route: bearer auth (all but /health) and the upload size limit.

The key is compared in constant time and never logged; a refused request learns nothing
about it.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import FastAPI, Request

from tunelab.server.errors import error_response
from tunelab.server.settings import ServeSettings

OPEN_PATHS = frozenset({"/health"})
MULTIPART_SLACK = 64 * 1024  # headers and boundaries around the file itself


def bearer_ok(header: str | None, key: str) -> bool:
    scheme, _, token = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(),
                                                              key.encode())


def install(app: FastAPI, settings: ServeSettings, browser: Any = None) -> None:
    """`browser` (the dashboard's gate) may admit a request without the bearer key (its login
    form, a valid session cookie) and answers the ones it refuses (a page: to the login)."""
    @app.middleware("http")
    async def gate(request: Request, call_next):  # type: ignore[no-untyped-def]
        if settings.api_key and request.url.path not in OPEN_PATHS \
                and not bearer_ok(request.headers.get("authorization"), settings.api_key) \
                and not (browser is not None and browser.admits(request)):
            if browser is not None:
                return browser.refusal(request)
            return error_response(401, "Missing or incorrect API key: send "
                                  "'Authorization: Bearer <key>'", code="invalid_api_key")
        length = request.headers.get("content-length")
        if length and length.isdigit() \
                and int(length) > settings.max_upload_bytes + MULTIPART_SLACK:
            # Connection: close, or the server would read (and drop) the whole body first.
            return error_response(413, f"Request body is over the {settings.max_upload_bytes} "
                                  "byte limit", code="file_too_large",
                                  headers={"Connection": "close"})
        return await call_next(request)
