"""Uploaded files: their metadata are registry rows (endpoint "server"), their bytes are
TUNELAB_HOME/server/files/<id>.jsonl.

The client's filename is metadata only: the path on disk comes from an id we generate, so no
name ("../../x", "/etc/passwd", NULs) can reach the file system.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from typing import Any, BinaryIO

from tunelab.registry import SERVER, FileRecord, Registry
from tunelab.server.errors import ApiError, not_found

PURPOSES = frozenset({"fine-tune", "assistants", "batch", "user_data", "vision", "evals"})


def _display_name(name: str | None) -> str:
    # Shown back to clients as OpenAI does; control characters dropped, length bounded.
    cleaned = "".join(ch for ch in (name or "upload.jsonl") if ch.isprintable())
    return cleaned[-255:] or "upload.jsonl"


def file_object(record: FileRecord) -> dict[str, Any]:
    """A registry file row as OpenAI's file object."""
    return {"id": record.id, "object": "file", "bytes": record.bytes,
            "created_at": int(record.created_at), "filename": record.filename,
            "purpose": record.purpose, "status": record.status, "status_details": None,
            "expires_at": None}


class PartialUpload:
    """One upload's bytes on their way to disk: counted and hashed as they come, and cut
    off (the partial file deleted) as soon as they pass the limit."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path, self.max_bytes = path, max_bytes
        self.size, self._digest = 0, hashlib.sha256()
        self._out: BinaryIO | None = path.open("wb")

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            self.discard()
            raise _too_large(self.max_bytes)
        self._digest.update(chunk)
        assert self._out is not None, "write after discard"
        self._out.write(chunk)

    def discard(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
        self.path.unlink(missing_ok=True)

    def finish(self, target: Path) -> tuple[int, str]:
        assert self._out is not None, "finish after discard"
        self._out.close()
        self._out = None
        self.path.replace(target)
        return self.size, self._digest.hexdigest()


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(413, f"file is over the {max_bytes} byte limit", code="file_too_large",
                    param="file")


def check_purpose(purpose: str) -> str:
    if purpose not in PURPOSES:
        raise ApiError(400, f"purpose {purpose!r} is not one of {sorted(PURPOSES)}",
                       code="invalid_purpose", param="purpose")
    return purpose


class UploadedFiles:
    def __init__(self, registry: Registry, root: Path, *, max_bytes: int) -> None:
        self.registry, self.root, self.max_bytes = registry, root, max_bytes
        self.root.mkdir(parents=True, exist_ok=True)

    def data_path(self, file_id: str) -> Path:
        return self.root / f"{file_id}.jsonl"

    def begin(self) -> tuple[str, PartialUpload]:
        """A new file id and the partial file its bytes stream into."""
        file_id = "file-" + secrets.token_hex(12)
        return file_id, PartialUpload(self.data_path(file_id).with_suffix(".part"),
                                      self.max_bytes)

    def commit(self, file_id: str, partial: PartialUpload, *, filename: str | None,
               purpose: str) -> FileRecord:
        size, sha = partial.finish(self.data_path(file_id))
        # The bytes are in place before the row exists, so a listed file always has them.
        return self.registry.record_file(file_id=file_id, provider="local", endpoint=SERVER,
                                         sha256=sha, filename=_display_name(filename),
                                         size=size, purpose=purpose)

    def get(self, file_id: str) -> FileRecord:
        record = self.registry.find_file(SERVER, file_id) if _looks_like_id(file_id) else None
        if record is None:
            raise not_found("file", file_id)
        return record

    def list(self, *, purpose: str | None = None) -> list[FileRecord]:
        """Newest first."""
        return self.registry.list_files(SERVER, purpose=purpose)

    def delete(self, file_id: str) -> dict[str, Any]:
        self.get(file_id)
        self.registry.forget_file(SERVER, file_id)
        self.data_path(file_id).unlink(missing_ok=True)
        return {"id": file_id, "object": "file", "deleted": True}


def _looks_like_id(file_id: str) -> bool:
    body = file_id.removeprefix("file-")
    return file_id.startswith("file-") and len(body) == 24 and all(
        ch in "0123456789abcdef" for ch in body)
