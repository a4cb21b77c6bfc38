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
_CHUNK = 1 << 20


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


class UploadedFiles:
    def __init__(self, registry: Registry, root: Path, *, max_bytes: int) -> None:
        self.registry, self.root, self.max_bytes = registry, root, max_bytes
        self.root.mkdir(parents=True, exist_ok=True)

    def data_path(self, file_id: str) -> Path:
        return self.root / f"{file_id}.jsonl"

    def save(self, source: BinaryIO, *, filename: str | None, purpose: str) -> FileRecord:
        if purpose not in PURPOSES:
            raise ApiError(400, f"purpose {purpose!r} is not one of {sorted(PURPOSES)}",
                           code="invalid_purpose", param="purpose")
        file_id = "file-" + secrets.token_hex(12)
        size, sha = self._copy_limited(source, self.data_path(file_id))
        # The bytes are in place before the row exists, so a listed file always has them.
        return self.registry.record_file(file_id=file_id, provider="local", endpoint=SERVER,
                                         sha256=sha, filename=_display_name(filename),
                                         size=size, purpose=purpose)

    def _copy_limited(self, source: BinaryIO, target: Path) -> tuple[int, str]:
        partial = target.with_suffix(".part")
        size, digest = 0, hashlib.sha256()
        with partial.open("wb") as out:
            while chunk := source.read(_CHUNK):
                size += len(chunk)
                if size > self.max_bytes:
                    out.close()
                    partial.unlink()
                    raise ApiError(413, f"file is over the {self.max_bytes} byte limit",
                                   code="file_too_large", param="file")
                digest.update(chunk)
                out.write(chunk)
        partial.replace(target)
        return size, digest.hexdigest()

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
