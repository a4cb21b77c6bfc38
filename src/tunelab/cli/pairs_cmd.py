"""`tunelab data pairs`: preference pairs from a persona's own chat data (evaluate/pairs.py)."""

from __future__ import annotations

from pathlib import Path

import typer

from tunelab.cli.console import emit_json
from tunelab.cli.console import out as console
from tunelab.cli.eval_cmd import (
    BASE_URL_OPT,
    MAX_NEW_TOKENS_OPT,
    PENALTY_OPT,
    PROVIDER_OPT,
    SEED_OPT,
    TEMPERATURE_OPT,
    TOP_P_OPT,
    _progress,
    _settings,
)
from tunelab.cli.formatting import terminal_safe
from tunelab.errors import command


def pairs(
    file: Path = typer.Argument(..., help="A chat dataset (.jsonl, .json or .csv); each "
                                "example's last assistant answer is the preferred one."),
    rejected_from: str = typer.Option(..., "--rejected-from", help="The model whose answers "
                                      "are not preferred: `base` (the model `tunelab train` "
                                      "tunes by default), a job id, an ft: model, "
                                      "PROVIDER:MODEL: anything `tunelab compare` takes."),
    out: Path = typer.Option(..., "--out", "-o", help="The preference JSONL to write; an "
                             "existing one is continued after its last row."),
    provider: str | None = PROVIDER_OPT,
    base_url: str | None = BASE_URL_OPT,
    max_new_tokens: int = MAX_NEW_TOKENS_OPT,
    temperature: float = TEMPERATURE_OPT,
    top_p: float = TOP_P_OPT,
    seed: int = SEED_OPT,
    repetition_penalty: float | None = PENALTY_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary on stdout."),
) -> None:
    """Turn FILE into OpenAI preference pairs: the dataset's answer is preferred, the answer
    the --rejected-from model gives to the same conversation is not.

    Resumes where it stopped (OUT's rows must be FILE's pairs in order) and never pays twice
    for an answer: answers are cached in TUNELAB_HOME/cache, as `tunelab compare`'s are. A
    pair whose generated answer equals the dataset's is skipped and counted.
    """
    from tunelab.evaluate.pairs import make_pairs

    settings = _settings(max_new_tokens, temperature, top_p, seed, repetition_penalty)
    with _progress() as progress:
        task = None

        def advance(what: str, done: int, total: int) -> None:
            nonlocal task
            if task is None:
                task = progress.add_task(terminal_safe(f"asking {what}"), total=total)
            progress.update(task, completed=done)

        summary = make_pairs(file, rejected_from, out, settings=settings, provider=provider,
                             base_url=base_url, progress=advance)
    if as_json:
        emit_json(summary.to_dict())
        return
    kept = f", {summary.kept:,} kept from an earlier run" if summary.kept else ""
    skipped = (f"; {summary.identical:,} skipped ({summary.model.label} gave the dataset's "
               "own answer)" if summary.identical else "")
    console.print(f"✅ {summary.kept + summary.written:,} preference pairs in {out} "
                  f"({summary.written:,} new{kept}){skipped}; answer cache: "
                  f"{summary.cache_hits} hits, {summary.cache_misses} misses",
                  markup=False)
    console.print(f"Check them: {command('tunelab', 'data', 'check', str(out))}", markup=False)
