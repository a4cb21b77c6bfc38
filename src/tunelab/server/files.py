"""Uploaded files, kept under TUNELAB_HOME/server/files/ as <id>.jsonl plus <id>.json.

The client's filename is metadata only: the path on disk comes from an id we generate, so no
name ("../../x", "/etc/passwd", NULs) can reach the file system.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any, BinaryIO

from tunelab import home
from tunelab.server.errors import ApiError, not_found

PURPOSES = frozenset({"fine-tune", "assistants", "batch", "user_data", "vision", "evals"})
_CHUNK = 1 << 20


def _display_name(name: str | None) -> str:
    # Shown back to clients as OpenAI does; control characters dropped, length bounded.
    cleaned = "".join(ch for ch in (name or "upload.jsonl") if ch.isprintable())
    return cleaned[-255:] or "upload.jsonl"


class FileStore:
    def __init__(self, root: Path | None = None, *, max_bytes: int) -> None:
        self.root = root or home.home() / "server" / "files"
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes

    def data_path(self, file_id: str) -> Path:
        return self.root / f"{file_id}.jsonl"

    def _meta_path(self, file_id: str) -> Path:
        return self.root / f"{file_id}.json"

    def save(self, source: BinaryIO, *, filename: str | None, purpose: str) -> dict[str, Any]:
        if purpose not in PURPOSES:
            raise ApiError(400, f"purpose {purpose!r} is not one of {sorted(PURPOSES)}",
                           code="invalid_purpose", param="purpose")
        file_id = "file-" + secrets.token_hex(12)
        size = self._copy_limited(source, self.data_path(file_id))
        meta = {"id": file_id, "object": "file", "bytes": size, "created_at": int(time.time()),
                "filename": _display_name(filename), "purpose": purpose, "status": "processed",
                "status_details": None, "expires_at": None}
        _write_json(self._meta_path(file_id), meta)
        return meta

    def _copy_limited(self, source: BinaryIO, target: Path) -> int:
        partial = target.with_suffix(".part")
        size = 0
        with partial.open("wb") as out:
            while chunk := source.read(_CHUNK):
                size += len(chunk)
                if size > self.max_bytes:
                    out.close()
                    partial.unlink()
                    raise ApiError(413, f"file is over the {self.max_bytes} byte limit",
                                   code="file_too_large", param="file")
                out.write(chunk)
        partial.replace(target)
        return size

    def get(self, file_id: str) -> dict[str, Any]:
        path = self._meta_path(file_id) if _looks_like_id(file_id) else None
        if path is None or not path.is_file():
            raise not_found("file", file_id)
        return json.loads(path.read_text(encoding="utf-8"))

    def list(self, *, purpose: str | None = None) -> list[dict[str, Any]]:
        files = [json.loads(path.read_text(encoding="utf-8"))
                 for path in self.root.glob("file-*.json")]
        files = [meta for meta in files if purpose is None or meta["purpose"] == purpose]
        return sorted(files, key=lambda meta: (meta["created_at"], meta["id"]), reverse=True)

    def delete(self, file_id: str) -> dict[str, Any]:
        self.get(file_id)
        self._meta_path(file_id).unlink()
        self.data_path(file_id).unlink(missing_ok=True)
        return {"id": file_id, "object": "file", "deleted": True}


def _looks_like_id(file_id: str) -> bool:
    body = file_id.removeprefix("file-")
    return file_id.startswith("file-") and len(body) == 24 and all(
        ch in "0123456789abcdef" for ch in body)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write then rename, so a reader never sees half a file."""
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    os.replace(partial, path)
