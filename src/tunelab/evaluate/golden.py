"""Golden sets: a model's recorded answers, kept before the model shuts down.

`tunelab migrate record MODEL` writes one; `tunelab compare recorded:MODEL ...` reads it as a
model whose answers are known. One folder per model, TUNELAB_HOME/golden/<model>/:

    header.json     the model, its provider and job, the settings, where the prompts came from
    answers.jsonl   the log: one line per answer as it arrived (prompt, answer, latency,
                    tokens); appended and flushed one answer at a time, so an interrupted
                    run resumes where it stopped and never pays twice for an answer
    golden.jsonl    OpenAI chat JSONL: each prompt with the greedy answer as its last turn,
                    usable as an eval file or as training data
    samples.jsonl   the same shape, one line per sampled answer
    compared.json   the last comparison against it (for `tunelab migrate status`)

golden.jsonl and samples.jsonl are rewritten whole from the log (atomically) at the end of a
run, so they never hold half an answer.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tunelab import home
from tunelab.errors import NotFoundError, UsageError, command
from tunelab.evaluate import jsonl_log

GREEDY = "greedy"
SAMPLE = "sample"
RECORDED = "recorded"  # the provider name of a golden set in compare (`recorded:MODEL`)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

Messages = list[dict[str, Any]]


@dataclass
class GoldenHeader:
    """What a golden set is: whose answers, asked how, about which prompts."""

    model: str
    provider: str
    base_url: str | None = None
    job_id: str | None = None
    max_tokens: int = 512
    temperature: float = 1.0  # of the sampled answers; the greedy one is at 0
    samples: int = 0
    prompts: int = 0
    sources: list[str] = field(default_factory=list)  # the prompt files, in order
    created_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Recorded:
    """One recorded answer, as the log keeps it."""

    key: str
    kind: str  # greedy or sample
    index: int  # the sample's number; 0 for the greedy answer
    messages: Messages
    answer: str
    latency_s: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    @property
    def slot(self) -> tuple[str, str, int]:
        return self.key, self.kind, self.index


def prompt_key(messages: Messages) -> str:
    """A prompt's identity: the same conversation gives the same key, in any run."""
    blob = json.dumps(messages, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def folder(model: str) -> Path:
    """TUNELAB_HOME/golden/<model>, the name made safe for a file system (not created)."""
    safe = _UNSAFE.sub("_", model).strip("._") or "model"
    if safe != model:  # two names that clean to the same text must not share a folder
        safe = f"{safe}-{hashlib.sha256(model.encode()).hexdigest()[:8]}"
    return home.home() / "golden" / safe


def read_header(model: str) -> GoldenHeader | None:
    path = folder(model) / "header.json"
    if not path.is_file():
        return None
    return GoldenHeader(**json.loads(path.read_text(encoding="utf-8")))


def write_header(header: GoldenHeader) -> Path:
    target = folder(header.model)
    target.mkdir(parents=True, exist_ok=True)
    _replace_text(target / "header.json", json.dumps(header.to_dict(), indent=2,
                                                     ensure_ascii=False) + "\n")
    return target


def read_log(model: str) -> list[Recorded]:
    """Every answer recorded so far, first come first; a torn last line (the process died
    mid-write) is left out, and dropped from the file before anything is appended."""
    return [Recorded(**json.loads(line))
            for line in jsonl_log.read_lines(folder(model) / "answers.jsonl")]


def append(model: str, answer: Recorded) -> None:
    """Add one answer to the log and make it durable before the next request is sent."""
    jsonl_log.append(folder(model) / "answers.jsonl", asdict(answer))


def write_sets(model: str, answers: list[Recorded]) -> dict[str, Path]:
    """golden.jsonl (greedy answers) and samples.jsonl, as OpenAI chat JSONL."""
    target = folder(model)
    written = {}
    for kind, name in ((GREEDY, "golden.jsonl"), (SAMPLE, "samples.jsonl")):
        lines = [json.dumps({"messages": [*a.messages,
                                          {"role": "assistant", "content": a.answer}]},
                            ensure_ascii=False) for a in answers if a.kind == kind]
        _replace_text(target / name, "".join(line + "\n" for line in lines))
        written[kind] = target / name
    return written


@dataclass
class GoldenSet:
    header: GoldenHeader
    answers: list[Recorded]

    @property
    def eval_file(self) -> Path:
        return folder(self.header.model) / "golden.jsonl"

    def greedy(self, messages: Messages) -> Recorded | None:
        key = prompt_key(messages)
        return next((a for a in self.answers if a.key == key and a.kind == GREEDY), None)


def load(model: str) -> GoldenSet:
    """The golden set of `model`; NotFoundError names the command that records one."""
    header = read_header(model)
    answers = read_log(model)
    if header is None or not any(a.kind == GREEDY for a in answers):
        raise NotFoundError(f"no recorded answers of {model}",
                            fix="record them first: "
                                f"`{command('tunelab', 'migrate', 'record', model)}`")
    return GoldenSet(header, answers)


def note_comparison(model: str, summary: dict[str, Any]) -> None:
    """Keep the latest comparison against the golden set, for `tunelab migrate status`."""
    _replace_text(folder(model) / "compared.json",
                  json.dumps({**summary, "compared_at": time.time()}, indent=2,
                             ensure_ascii=False) + "\n")


def last_comparison(model: str) -> dict[str, Any] | None:
    path = folder(model) / "compared.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _replace_text(path: Path, text: str) -> None:
    """Write `text` to `path` whole or not at all (a temp file renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    try:
        partial.write_text(text, encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot write {path}: {error.strerror}",
                         fix="check the space and permissions of TUNELAB_HOME") from None
    partial.replace(path)
