"""`POST /v1/files` read straight off the socket: a multipart body parsed as it streams in.

FastAPI's UploadFile would spool the whole body to a temp file before the route runs, so a
chunked upload (no Content-Length to refuse up front) could fill the disk before any limit
was checked. Here the file part's bytes go straight into its partial file under the files
folder, counted as they come; the first byte over the limit ends the request with a 413,
deletes the partial file and closes the connection, so the rest of the body is never read.
Nothing goes to the temp dir. The other fields (purpose) are kept in memory, each bounded.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from tunelab.registry import FileRecord
from tunelab.server.errors import ApiError
from tunelab.server.files import PartialUpload, UploadedFiles, check_purpose

FIELD_LIMIT = 4096  # bytes in a field other than the file: purpose is a short word
PART_LIMIT = 8  # parts in one body: the file, purpose and a few a client may add


def _bad(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, code="invalid_request", param=param)


class _Form:
    """The parser's callbacks: the part named `file` streams to disk, the rest to memory."""

    def __init__(self, files: UploadedFiles) -> None:
        self.files = files
        self.fields: dict[str, str] = {}
        self.file_id: str | None = None
        self.partial: PartialUpload | None = None
        self.filename: str | None = None
        self.parts, self.ended = 0, False
        self._header, self._value, self._headers = b"", b"", {}
        self._name: str | None = None
        self._data = bytearray()
        self._to_file = False

    def callbacks(self) -> dict[str, Any]:
        return {"on_part_begin": self._begin, "on_header_field": self._header_field,
                "on_header_value": self._header_value, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_done, "on_part_data": self._part_data,
                "on_part_end": self._part_end, "on_end": self._end}

    def _begin(self) -> None:
        self.parts += 1
        if self.parts > PART_LIMIT:
            raise _bad(f"the upload has more than {PART_LIMIT} form fields; send file and "
                       "purpose")
        self._headers, self._name, self._to_file = {}, None, False
        self._data = bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header.lower()] = self._value
        self._header, self._value = b"", b""

    def _headers_done(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name")
        if name is None:
            raise _bad("a form part has no name; send the fields file and purpose")
        self._name = name.decode("utf-8", "replace")
        if self._name != "file":
            return
        if self.partial is not None:
            raise _bad("send one file per upload", param="file")
        raw_filename = options.get(b"filename")
        self.filename = raw_filename.decode("utf-8", "replace") if raw_filename else None
        if "purpose" in self.fields:  # sent first, as the SDKs do: refuse before any byte
            check_purpose(self.fields["purpose"])
        self.file_id, self.partial = self.files.begin()
        self._to_file = True

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._to_file:
            assert self.partial is not None
            self.partial.write(data[start:end])
            return
        self._data += data[start:end]
        if len(self._data) > FIELD_LIMIT:
            raise _bad(f"form field {self._name!r} is over {FIELD_LIMIT} bytes",
                       param=self._name)

    def _part_end(self) -> None:
        if not self._to_file and self._name is not None:
            self.fields[self._name] = self._data.decode("utf-8", "replace")
        self._to_file = False

    def _end(self) -> None:
        self.ended = True

    def discard(self) -> None:
        if self.partial is not None:
            self.partial.discard()


def _boundary(request: Request) -> bytes:
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise _bad("send the upload as multipart/form-data with the fields file and purpose",
                   param="file")
    return boundary


async def receive_upload(request: Request, files: UploadedFiles) -> FileRecord:
    """Stream the request's multipart body into a new uploaded file and record it."""
    form = _Form(files)
    parser = MultipartParser(_boundary(request), form.callbacks())
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            if form.ended:
                break
        if not form.ended:
            raise _bad("the multipart body ended before its closing boundary")
        if form.partial is None:
            raise _bad("file: field required", param="file")
        if "purpose" not in form.fields:
            raise _bad("purpose: field required", param="purpose")
        purpose = check_purpose(form.fields["purpose"])
    except MultipartParseError as error:
        form.discard()
        raise _bad(f"unreadable multipart body ({error})").closing() from None
    except ApiError as error:
        form.discard()
        if not form.ended:  # unread body left: close rather than read (and drop) the rest
            error.closing()
        raise
    except ClientDisconnect:  # nobody is left to answer: drop the bytes, log nothing
        form.discard()
        raise ApiError(400, "the client closed the connection mid-upload").closing() from None
    except BaseException:  # the server is stopping, or a bug: still no partial file stays
        form.discard()
        raise
    assert form.file_id is not None
    return await run_in_threadpool(files.commit, form.file_id, form.partial,
                                   filename=form.filename, purpose=purpose)
