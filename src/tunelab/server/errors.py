"""Every failure leaves the server as a 4xx/5xx in OpenAI's error shape:

    {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}

Route code raises ApiError; tunelab errors, FastAPI's validation errors and Starlette's
HTTP errors (unknown route, wrong method) are translated here, in one place. No text leaves
the server with its absolute paths: `home_relative` writes the home as TUNELAB_HOME, for
these errors, the API's job errors and events (server/jobs.py) and every dashboard page.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

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


def home_relative(text: str, root: Path) -> str:
    """`text` with the server's home, `root` (as given and resolved), written TUNELAB_HOME:
    the name a user knows it by, and nothing about where it is on this machine."""
    for path in sorted({str(root.resolve()), str(root)}, key=len, reverse=True):
        text = text.replace(path, "TUNELAB_HOME")
    return text


def not_found(kind: str, ident: str, param: str | None = None) -> ApiError:
    return ApiError(404, f"No such {kind}: {ident!r}", code=f"{kind}_not_found", param=param)


def _validation_message(error: RequestValidationError) -> tuple[str, str | None]:
    """One line for the first thing wrong, and `param`: where it is in the client's JSON."""
    found = error.errors()
    if not found:
        return "invalid request", None
    first = found[0]
    if first.get("type") == "json_invalid":  # its loc holds a character offset, not a field
        detail = (first.get("ctx") or {}).get("error") or "JSON decode error"
        return f"the request body is not valid JSON: {detail} (at character " \
               f"{first['loc'][-1]})", None
    param = _client_path(first, error.body)
    # A value a union refused has one error per member ("auto", an int): say them as one.
    said = [item["msg"] for item in found if _client_path(item, error.body) == param]
    said = [said[0], *(msg.removeprefix("Input should be ") for msg in said[1:])]
    return f"{param or 'request'}: {' or '.join(dict.fromkeys(said))}", param


def _client_path(item: dict[str, Any], body: Any) -> str | None:
    """The dotted path (e.g. "messages.0.content") of the value `item` is about, as the
    client wrote it. pydantic's loc also holds the names of union members ("int",
    "literal['auto']"), which are not in the client's JSON: walking the body drops them."""
    source, *rest = item.get("loc") or ("body",)
    if source != "body":  # a query or path parameter: its name
        return ".".join(map(str, rest)) or None
    path, node = [], body
    for index, part in enumerate(rest):
        if _holds(node, part):
            node = node[part]
        elif not (item.get("type") == "missing" and index == len(rest) - 1):
            continue
        path.append(str(part))
    return ".".join(path) or None


def _holds(node: Any, part: str | int) -> bool:
    return isinstance(node, dict) and part in node or isinstance(node, list) \
        and type(part) is int and 0 <= part < len(node)


def install(app: FastAPI, root: Path) -> None:
    """The handlers; `root` is the server's home, never shown as it is (home_relative)."""
    @app.exception_handler(ApiError)
    async def _api(_: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, home_relative(error.message, root),
                              code=error.code, param=error.param, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(error)
        return error_response(400, message, code="invalid_request", param=param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> JSONResponse:
        message = error.detail if isinstance(error.detail, str) else "bad request"
        return error_response(error.status_code, home_relative(message, root))

    @app.exception_handler(TunelabError)
    async def _tunelab(_: Request, error: TunelabError) -> JSONResponse:
        status = 404 if isinstance(error, NotFoundError) else 400
        return error_response(status, home_relative(error.render(), root))

    @app.exception_handler(Exception)
    async def _crash(_: Request, error: Exception) -> JSONResponse:
        log.error("internal error: %s", type(error).__name__)
        return error_response(500, "internal server error", code="server_error")

