"""One finding about a dataset: where it is, its stable code, and a sentence for humans."""

from __future__ import annotations

from typing import NamedTuple


class Problem(NamedTuple):
    """An error or a warning. `line` is the file's 1-based line, None for the whole file."""

    line: int | None
    code: str
    message: str

    def as_dict(self) -> dict:
        return {"line": self.line, "code": self.code, "message": self.message}

    def render(self) -> str:
        where = f"line {self.line}" if self.line is not None else "file"
        return f"{where}: {self.code} {self.message}"
