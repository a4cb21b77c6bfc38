"""`data check` without the printing: read, validate, count tokens and price one file.

The work is streamed in batches so memory holds one batch of examples plus a few ints per
example (token totals, for percentiles and billing). Each distinct string (a system prompt
repeated in every example, role names) is counted once. A big .jsonl file is cut into
line-aligned byte ranges checked by forked workers (tunelab.data.parallel) and their
tallies stitched back in file order, so the report is the same either way.

A file of preference pairs (OpenAI's DPO rows, tunelab.data.preference) goes through the
same scan: its first valid row sets the file's format, each pair is checked by its own
rules, and its tokens are the input once plus both answers, priced at the DPO rates.
"""

from __future__ import annotations

import gc
from array import array
from collections import Counter as Tally
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.data import parallel, pricing
from tunelab.data.cost import CostRow, billing_tokens, cost_table, default_epochs
from tunelab.data.preference import (
    PAIR_ERRORS,
    PAIR_WARNINGS,
    Format,
    file_format,
    pair_errors,
    row_kind,
)
from tunelab.data.problems import Problem
from tunelab.data.reader import JsonlRange, Record, iter_records
from tunelab.data.rules import ERRORS, MIN_EXAMPLES, WARNINGS, example_errors
from tunelab.data.tokens import Counter, counter_for
from tunelab.errors import UsageError

BATCH = 4096
MAX_LISTED = 200  # problems kept per code; the counts always cover all of them
MAX_EPOCHS = 50
FALLBACK_LIMIT = {"local": 8192, "vertex": 131072}
METHODS: dict[str, str] = {"chat": "supervised", "preference": "dpo"}  # format -> method
ROWS = {"chat": "chat example", "preference": "preference pair"}
PAIR_TOKENS = ("input once + preferred + non-preferred answer (each sequence the model "
               "trains on is input + one answer)")


@dataclass(frozen=True)
class Target:
    """Who will train on the data: decides the tokenizer, the length limit and the price."""

    provider: str
    model: str
    limit: int


def resolve_target(provider: str, model: str | None, method: str = "supervised") -> Target:
    """The target for --provider/--model. Names the pricing table does not know (custom
    OpenAI-compatible endpoints) are counted like OpenAI; the CLI checks the name exists.
    Without --model, a DPO target is the provider's default model for DPO."""
    provider = provider.strip().lower()
    model = model or pricing.default_model(provider, method)
    row = pricing.find_price(provider, model)
    limit = row.max_train_tokens if row else FALLBACK_LIMIT.get(provider, 65536)
    return Target(provider, model, limit)


@dataclass
class Findings:
    """Errors or warnings: a capped list per code, and the full count per code."""

    listed: list[Problem] = field(default_factory=list)
    counts: Tally = field(default_factory=Tally)

    def add(self, line: int | None, code: str, message: str) -> None:
        self.counts[code] += 1
        if self.counts[code] <= MAX_LISTED:
            self.listed.append(Problem(line, code, message))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def absorb(self, later: Findings, offset: int) -> None:
        """Append the findings of a later part of the file, its lines shifted by `offset`."""
        shown = Tally(problem.code for problem in self.listed)
        for line, code, message in later.listed:
            if shown[code] < MAX_LISTED:
                shown[code] += 1
                self.listed.append(Problem(None if line is None else line + offset, code, message))
        self.counts.update(later.counts)


@dataclass
class CheckReport:
    path: str
    target: Target
    tokenizer: str
    examples: int
    valid_examples: int
    errors: Findings
    warnings: Findings
    messages: dict
    tokens: dict
    billing_tokens: int
    epochs: int
    cost: list[CostRow]
    format: Format = "chat"

    @property
    def ok(self) -> bool:
        return self.errors.total == 0

    @property
    def method(self) -> str:
        """The training method the file is for: supervised (chat) or dpo (preference)."""
        return METHODS[self.format]

    def as_dict(self) -> dict:
        return {
            "ok": self.ok, "file": self.path, "format": self.format, "method": self.method,
            "provider": self.target.provider,
            "model": self.target.model, "tokenizer": self.tokenizer,
            "examples": self.examples, "valid_examples": self.valid_examples,
            "errors": [p.as_dict() for p in sorted(self.errors.listed, key=_order)],
            "error_counts": dict(self.errors.counts),
            "warnings": [p.as_dict() for p in sorted(self.warnings.listed, key=_order)],
            "warning_counts": dict(self.warnings.counts),
            "messages_per_example": self.messages, "tokens": self.tokens,
            "max_tokens_per_example": self.target.limit,
            "billing_tokens": self.billing_tokens, "epochs": self.epochs,
            "cost": [row.as_dict() for row in self.cost],
        }


def _order(problem: Problem) -> tuple[bool, int, str]:
    return (problem.line is None, problem.line or 0, problem.code)  # file-level ones last


def check_file(path: str | Path, *, provider: str = "openai", model: str | None = None,
               epochs: int | None = None, on_progress: Callable[[int], None] | None = None,
               workers: int | None = None, tokenizer: Any = None) -> CheckReport:
    """Check every example of `path` for `provider`/`model`. Raises UsageError if unreadable.

    A big .jsonl file is checked on `workers` processes (default: the usable cores). A local
    target counts with its own chat template, so it needs that model's `tokenizer`."""
    if epochs is not None and not 1 <= epochs <= MAX_EPOCHS:
        raise UsageError(f"--epochs {epochs} is out of range", fix=f"use 1 to {MAX_EPOCHS}")
    path = Path(path)
    fmt = file_format(path)  # raises UsageError before any tokenizer loads
    target = resolve_target(provider, model, METHODS[fmt])
    records = iter_records(path)
    counter = counter_for(target.provider, target.model, tokenizer)
    ranges = parallel.plan(path, workers) if target.provider != "local" else []
    if ranges:
        tallies = parallel.scan(ranges, _Scan(target, counter, path, fmt), on_progress, workers)
    else:
        scan = _Scan(target, counter, path, fmt)
        scan.run(records, on_progress)
        tallies = scan.tallies
    return _report(str(path), target, counter.name, tallies, epochs, fmt)


@dataclass
class Tallies:
    """What a pass over a file (or one byte range of it) found. Plain data, so a worker
    process can send it back; `absorb` appends a later range to an earlier one."""

    errors: Findings = field(default_factory=Findings)
    warnings: Findings = field(default_factory=Findings)
    examples: int = 0
    totals: array = field(default_factory=lambda: array("q"))
    assistant: array = field(default_factory=lambda: array("q"))
    message_counts: array = field(default_factory=lambda: array("q"))
    # Preference pairs only: input + each answer (two per pair), and the input billed once.
    sequences: array = field(default_factory=lambda: array("q"))
    shared: array = field(default_factory=lambda: array("q"))
    inputs: int = 0
    outputs: int = 0
    seen: dict[int, int] = field(default_factory=dict)  # hash of an example -> first line
    lines: int = 0

    def absorb(self, later: Tallies) -> None:
        offset = self.lines
        self.errors.absorb(later.errors, offset)
        self.warnings.absorb(later.warnings, offset)
        for digest, line in later.seen.items():
            first = self.seen.setdefault(digest, line + offset)
            if first != line + offset:
                self.warnings.add(line + offset, "duplicate_example", f"same as line {first}")
        self.examples += later.examples
        for name in ("totals", "assistant", "message_counts", "sequences", "shared"):
            getattr(self, name).extend(getattr(later, name))
        self.inputs += later.inputs
        self.outputs += later.outputs
        self.lines += later.lines


class _Scan:
    """One pass over records, accumulating Tallies. Also the work of one parallel range."""

    def __init__(self, target: Target, counter: Counter, path: Path,
                 fmt: Format = "chat") -> None:
        self.target, self.counter, self.path, self.format = target, counter, path, fmt
        self.tallies = Tallies()

    def scan_range(self, byte_range: tuple[int, int]) -> Tallies:
        """Tallies of the lines starting in `byte_range` (run in a worker process)."""
        self.tallies = Tallies()
        records = JsonlRange(self.path, *byte_range)
        self.run(records, None)
        self.tallies.lines = records.lines
        return self.tallies

    def run(self, records: Iterable[Record], on_progress: Callable[[int], None] | None) -> None:
        # Parsed examples are acyclic and dropped batch by batch, so the cycle collector
        # has nothing to find; left on, it re-walks every live batch each few thousand
        # allocations (about a tenth of the scan).
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            self._run(records, on_progress)
        finally:
            if was_enabled:
                gc.enable()

    def _run(self, records: Iterable[Record], on_progress: Callable[[int], None] | None) -> None:
        tallies, batch = self.tallies, []
        for record in records:
            tallies.examples += 1
            if record.error is not None:
                tallies.errors.add(record.line, record.error.code, record.error.message)
            elif self._valid(record):
                batch.append(record)
                if len(batch) >= BATCH:
                    self._count(batch)
                    batch = []
                    if on_progress:
                        on_progress(tallies.examples)
        self._count(batch)
        if on_progress:
            on_progress(tallies.examples)

    def _valid(self, record: Record) -> bool:
        """Record the example's errors and warnings; True if it is worth counting tokens for."""
        tallies, pairs = self.tallies, self.format == "preference"
        kind = row_kind(record.example)
        if kind is not None and kind != self.format:
            broken = [("mixed_formats", f"a {ROWS[kind]} in a file of {ROWS[self.format]}s "
                       f"(as its first valid row is); {PAIR_ERRORS['mixed_formats']}")]
        else:
            broken = pair_errors(record.example) if pairs else example_errors(record.example)
        for code, message in broken:
            tallies.errors.add(record.line, code, message)
        if broken:
            return False
        example: dict = record.example  # type: ignore[assignment]
        messages = example["input"]["messages"] if pairs else example["messages"]
        if messages[0].get("role") != "system" and not any(
                message.get("role") == "system" for message in messages):
            tallies.warnings.add(record.line, "no_system_message", WARNINGS["no_system_message"])
        if not pairs and messages[-1].get("role") == "user":
            tallies.warnings.add(record.line, "ends_with_user", WARNINGS["ends_with_user"])
        first = tallies.seen.setdefault(hash(record.source), record.line)
        if first != record.line:
            tallies.warnings.add(record.line, "duplicate_example", f"same as line {first}")
        return True

    def _count(self, batch: list[Record]) -> None:
        if not batch:
            return
        if self.format == "preference":
            self._count_pairs(batch)
            return
        tallies, limit = self.tallies, self.target.limit
        examples = [record.example for record in batch]
        counts = self.counter.count(examples)  # type: ignore[arg-type]
        for record, example, (total, assistant, last) in zip(batch, examples, counts,
                                                             strict=True):
            tallies.totals.append(total)
            tallies.assistant.append(assistant)
            tallies.message_counts.append(len(example["messages"]))  # type: ignore[index]
            tallies.inputs += total - last
            tallies.outputs += last
            if total > limit:
                tallies.warnings.add(record.line, "over_context_limit",
                                     self._cut(example, total))  # type: ignore[arg-type]

    def _cut(self, example: dict, total: int) -> str:
        """Say which part of an over-long example is lost: training cuts from the end."""
        limit, seen = self.target.limit, 0
        messages = example["messages"]
        for index, tokens in enumerate(self.counter.message_tokens(example), 1):
            if seen + tokens > limit:
                kept = max(0, limit - seen)
                return (f"{total:,} tokens > {limit:,} for {self.target.model}: the last "
                        f"{total - limit:,} are cut, from message {index} "
                        f"({messages[index - 1].get('role')}, {kept:,} of its {tokens:,} "
                        "tokens kept) to the end; shorten or split it")
            seen += tokens
        return f"{total:,} tokens > {limit:,}: the final tokens are cut; shorten it"

    def _count_pairs(self, batch: list[Record]) -> None:
        """Each pair counted as its input alone and input + each answer, so the input's
        strings are tokenised once (the counter remembers them) and the limit applies to
        each sequence the model trains on."""
        tallies, limit = self.tallies, self.target.limit
        examples = []
        for record in batch:
            row: dict = record.example  # type: ignore[assignment]
            given = row["input"]["messages"]
            examples += [{"messages": given},
                         {"messages": [*given, row["preferred_output"][0]]},
                         {"messages": [*given, row["non_preferred_output"][0]]}]
        counts = self.counter.count(examples)
        for index, record in enumerate(batch):
            (prompt, _, _), (chosen, _, preferred), (rejected, _, other) = \
                counts[3 * index:3 * index + 3]
            tallies.totals.append(chosen + rejected - prompt)
            tallies.assistant.append(preferred + other)
            tallies.message_counts.append(len(examples[3 * index]["messages"]))
            tallies.sequences.extend((chosen, rejected))
            tallies.shared.append(prompt)
            tallies.inputs += prompt
            tallies.outputs += preferred
            longest = max(chosen, rejected)
            if longest > limit:
                which = "preferred" if chosen >= rejected else "non-preferred"
                lost = ("the end of the answer" if prompt < limit else
                        f"the whole answer and the input's last {prompt - limit:,}")
                tallies.warnings.add(record.line, "over_context_limit",
                                     f"input + {which} answer: {longest:,} tokens > {limit:,} "
                                     f"for {self.target.model}: the last {longest - limit:,} "
                                     f"are cut ({lost}); shorten the input or the answer")

def _report(path: str, target: Target, tokenizer: str, tallies: Tallies,
            epochs: int | None, fmt: Format = "chat") -> CheckReport:
    valid = len(tallies.totals)
    if tallies.examples < MIN_EXAMPLES:
        tallies.errors.add(None, "too_few_examples",
                           f"found {tallies.examples}; {ERRORS['too_few_examples']}")
    epochs = epochs or default_epochs(valid)
    mean_in = tallies.inputs / valid if valid else 0.0
    mean_out = tallies.outputs / valid if valid else 0.0
    prices = pricing.load_pricing()
    pairs = fmt == "preference"
    billed = tallies.sequences if pairs else tallies.totals
    rows = cost_table(billed, epochs, prices, mean_input=mean_in, mean_output=mean_out,
                      method=METHODS[fmt], shared=tallies.shared)
    if pairs:
        _warn_without_dpo(target, prices, rows, tallies.warnings)
    tokens = {"total": sum(tallies.totals), "assistant": sum(tallies.assistant),
              "per_example": distribution(tallies.totals),
              "assistant_per_example": distribution(tallies.assistant),
              "mean_prompt": round(mean_in, 1), "mean_reply": round(mean_out, 1)}
    if pairs:
        tokens["counted_as"] = PAIR_TOKENS
    return CheckReport(
        path=path, target=target, tokenizer=tokenizer,
        examples=tallies.examples, valid_examples=valid,
        errors=tallies.errors, warnings=tallies.warnings,
        messages=distribution(tallies.message_counts), tokens=tokens,
        billing_tokens=billing_tokens(billed, target.limit, tallies.shared),
        epochs=epochs, cost=rows, format=fmt,
    )


def _warn_without_dpo(target: Target, prices: list[pricing.Price], rows: list[CostRow],
                      warnings: Findings) -> None:
    """A file of pairs checked for a priced model that trains no DPO: say which do."""
    row = pricing.find_price(target.provider, target.model, prices)
    if row is None or row.offers_dpo or target.provider == "local":
        return  # unpriced endpoints and the local trainer: the table cannot say
    others = [cost.model for cost in rows
              if cost.provider == target.provider and cost.status == "open"]
    fix = f"pass --model {' or '.join(others)}" if others else "pick a provider that does"
    warnings.add(None, "no_dpo_on_target", f"{target.model} on {target.provider} "
                 f"{PAIR_WARNINGS['no_dpo_on_target']}; {fix}")


def distribution(values: Iterable[int]) -> dict:
    """min, mean, p50, p95, max; percentiles interpolate like numpy's default."""
    ordered = sorted(values)
    if not ordered:
        return {"min": 0, "mean": 0.0, "p50": 0.0, "p95": 0.0, "max": 0}
    return {"min": ordered[0], "mean": round(sum(ordered) / len(ordered), 2),
            "p50": _quantile(ordered, 0.5), "p95": _quantile(ordered, 0.95), "max": ordered[-1]}


def _quantile(ordered: list[int], q: float) -> float:
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (position - low), 2)
