"""`tunelab migrate record MODEL`: the model's answers, kept as a golden set before it goes.

Prompts: the job's validation file (pulled), or else the held-out slice of its training data
that `pull` set aside, plus any --prompts file. Per prompt: one greedy answer (temperature
0) and N sampled ones at the stated temperature. Each answer is appended to the golden
set's log the moment it arrives (evaluate/golden.py), so a run that is interrupted (Ctrl-C,
a network that stays down) resumes with the first prompt not yet answered and pays for no
answer twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.errors import NotFoundError, UsageError, command
from tunelab.evaluate import golden
from tunelab.evaluate.prompts import load_prompts
from tunelab.migrate.account import account_of
from tunelab.migrate.state import find_old_job, local_files, migrate_state
from tunelab.providers.base import ChatOptions
from tunelab.registry import JobRecord, open_registry

Messages = list[dict[str, Any]]
Slot = tuple[str, str, int]  # (prompt key, greedy|sample, index)


@dataclass
class RecordPlan:
    job: JobRecord
    model: str
    header: golden.GoldenHeader
    prompts: list[Messages]
    todo: list[tuple[Messages, str, int]]  # (prompt, kind, index) still to ask
    done: int  # answers already in the log
    prompt_tokens: int = 0  # of the requests still to ask
    dollars: float | None = None  # at most, with every answer max_tokens long
    sources: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.done + len(self.todo)


def prompt_files(job: JobRecord) -> list[Path]:
    """The job's own held-out prompts: its validation file, else the slice pull held out."""
    files = local_files(job)
    if files.validation_file:
        return [Path(files.validation_file)]
    held_out = migrate_state(job).held_out
    if held_out:
        return [Path(held_out.val_file)]
    if files.training_file:
        return []
    raise NotFoundError(f"the data of {job.id} is not pulled yet",
                        fix=f"pull it first: `{command('tunelab', 'migrate', 'pull', job.id)}`")


def _unique(prompts: list[Messages]) -> list[Messages]:
    seen, kept = set(), []
    for messages in prompts:
        key = golden.prompt_key(messages)
        if key not in seen:
            seen.add(key)
            kept.append(messages)
    return kept


def _header(job: JobRecord, model: str, *, samples: int, temperature: float,
            max_tokens: int, sources: list[str], prompts: int) -> golden.GoldenHeader:
    """The header for this run; the settings of answers already recorded must match."""
    before = golden.read_header(model)
    if before is not None and golden.read_log(model):
        changed = [name for name, old, new in (("--max-tokens", before.max_tokens, max_tokens),
                                               ("--temperature", before.temperature, temperature))
                   if old != new and (name != "--temperature" or samples)]
        if changed:
            raise UsageError(f"{model} was recorded with {before.max_tokens} max tokens at "
                             f"temperature {before.temperature}; {', '.join(changed)} differ",
                             fix=f"pass --max-tokens {before.max_tokens} --temperature "
                                 f"{before.temperature} to resume, or move "
                                 f"{golden.folder(model)} away to start over")
    return golden.GoldenHeader(model=model, provider=job.provider, base_url=job.endpoint,
                               job_id=job.id, max_tokens=max_tokens, temperature=temperature,
                               samples=max(samples, before.samples if before else 0),
                               prompts=prompts, sources=sources,
                               **({"created_at": before.created_at} if before else {}))


def plan(token: str, *, extra: Path | None = None, samples: int = 0, temperature: float = 1.0,
         max_tokens: int = 512) -> RecordPlan:
    """What a record run will ask, what is already recorded, and what it may cost."""
    if samples < 0 or not 0 <= temperature <= 2 or max_tokens < 1:
        raise UsageError("--samples must be >= 0, --temperature in 0..2, --max-tokens >= 1",
                         fix="e.g. --samples 2 --temperature 1.0")
    with open_registry() as registry:
        job = find_old_job(registry, token)
    if not job.fine_tuned_model:
        raise NotFoundError(f"job {job.id} made no model (status {job.status})",
                            fix="record a job that succeeded (see `tunelab migrate inventory`)")
    files = prompt_files(job) + ([extra] if extra else [])
    if not files:
        raise UsageError(f"{job.id} has no held-out prompts of its own",
                         fix="pass --prompts FILE (one prompt a line, or dialogues)")
    prompts = _unique([messages for path in files for messages in load_prompts(path)])
    model = job.fine_tuned_model
    header = _header(job, model, samples=samples, temperature=temperature,
                     max_tokens=max_tokens, sources=[str(path) for path in files],
                     prompts=len(prompts))
    done = {answer.slot for answer in golden.read_log(model)}
    slots = [(messages, golden.GREEDY, 0) for messages in prompts]
    slots += [(messages, golden.SAMPLE, index) for messages in prompts
              for index in range(1, header.samples + 1)]
    todo = [slot for slot in slots if (golden.prompt_key(slot[0]), slot[1], slot[2]) not in done]
    recorded = plan_cost(RecordPlan(job, model, header, prompts, todo,
                                    len(slots) - len(todo), sources=header.sources))
    return recorded


def plan_cost(found: RecordPlan) -> RecordPlan:
    """Prompt tokens (tiktoken) and the most the remaining answers can cost."""
    from tunelab.data.pricing import find_price
    from tunelab.data.tokens import counter_for

    if not found.todo:
        return found
    counter = counter_for("openai", found.job.base_model or "gpt-4o-mini")
    counts = counter.count([{"messages": messages} for messages, _, _ in found.todo])
    found.prompt_tokens = sum(total for total, _, _ in counts)
    price = find_price(found.job.provider, found.model)
    if price is not None:
        found.dollars = price.inference_cost(found.prompt_tokens,
                                             len(found.todo) * found.header.max_tokens)
    return found


def run(found: RecordPlan, on_answer: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Ask what is left, appending each answer as it comes; then write the chat files."""
    golden.write_header(found.header)
    account = account_of(found.job)
    done = found.done
    for messages, kind, index in found.todo:
        greedy = kind == golden.GREEDY
        reply = account.chat(found.model, messages, ChatOptions(
            max_tokens=found.header.max_tokens,
            temperature=0.0 if greedy else found.header.temperature, seed=index))
        golden.append(found.model, golden.Recorded(
            key=golden.prompt_key(messages), kind=kind, index=index, messages=messages,
            answer=reply.text, latency_s=reply.latency_s, prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens))
        done += 1
        if on_answer:
            on_answer(done, found.total)
    answers = golden.read_log(found.model)
    written = golden.write_sets(found.model, answers)
    return {"model": found.model, "job": found.job.id, "prompts": len(found.prompts),
            "answers": len(answers), "asked": len(found.todo),
            "folder": str(golden.folder(found.model)),
            "golden": str(written[golden.GREEDY]), "samples": str(written[golden.SAMPLE]),
            "settings": found.header.to_dict()}
