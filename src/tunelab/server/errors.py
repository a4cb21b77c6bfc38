"""Every failure leaves the server as a 4xx/5xx in OpenAI's error shape:

    {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}

Route code raises ApiError; tunelab errors, FastAPI's validation errors and Starlette's
HTTP errors (unknown route, wrong method) are translated here, in one place.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tunelab.errors import NotFoundError, TunelabError

log = logging.getLogger("tunelab.server")

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "invalid_request_error", 405: "invalid_request_error", 409: "conflict_error",
          413: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, code: str | None = None,
                 param: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.headers = dict(headers or {})

    def closing(self) -> ApiError:
        """This error, answered with `Connection: close`: the server stops there and never
        reads the rest of the request body (which the client may still be sending)."""
        self.headers["Connection"] = "close"
        return self


def error_response(status: int, message: str, *, code: str | None = None,
                   param: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"message": message, "type": _TYPES.get(status, "server_error"),
            "param": param, "code": code}
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def not_found(kind: str, ident: str, param: str | None = None) -> ApiError:
    return ApiError(404, f"No such {kind}: {ident!r}", code=f"{kind}_not_found", param=param)


def _validation_message(error: RequestValidationError) -> tuple[str, str | None]:
    first = error.errors()[0] if error.errors() else {}
    where = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    param = ".".join(where) or None
    return f"{param or 'request'}: {first.get('msg', 'invalid request')}", param


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.message, code=error.code, param=error.param,
                              headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(error)
        return error_response(400, message, code="invalid_request", param=param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> JSONResponse:
        message = error.detail if isinstance(error.detail, str) else "bad request"
        return error_response(error.status_code, message)

    @app.exception_handler(TunelabError)
    async def _tunelab(_: Request, error: TunelabError) -> JSONResponse:
        status = 404 if isinstance(error, NotFoundError) else 400
        return error_response(status, error.render())

    @app.exception_handler(Exception)
    async def _crash(_: Request, error: Exception) -> JSONResponse:
        log.error("internal error: %s", type(error).__name__)
        return error_response(500, "internal server error", code="server_error")

