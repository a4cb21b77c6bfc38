"""`tunelab test`, `tunelab chat` and `tunelab compare`: try models and weigh them side by side.

MODEL, everywhere here, is a job id (ftjob-...) or `ft:` name from the registry, `base` (in
compare: the base model of the job beside it), `local:<model>` or bare local weights (a run,
adapter or model folder, a .gguf, the embedded default, a cached hub id: what
`tunelab.local.weights` resolves), or `<provider>:<model>` (openai:, kimi:, vertex:, or an
endpoint from providers.yaml).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from tunelab.cli.console import emit_json, plain, styled
from tunelab.cli.console import err as err_console
from tunelab.cli.console import out as console
from tunelab.cli.formatting import terminal_safe
from tunelab.errors import TunelabError
from tunelab.local.generation import DEFAULT

MODEL_HELP = ("ftjob-... / ft:... from the registry, local:<model> or a local path (run, "
              "adapter or model folder, .gguf), <provider>:<model> (openai:, kimi:, vertex:, "
              "providers.yaml endpoints).")
PROVIDER_HELP = "Send bare model names to this provider instead of running them locally."
BASE_URL_HELP = "Point an OpenAI-compatible provider at this base URL."
SYSTEM_HELP = ("The system prompt (persona) to put first. Default for a tuned job: the one "
               "its training data uses.")

# Options every command here shares: the same model forms and the same generation settings.
MODEL_ARG = typer.Argument(..., help=MODEL_HELP)
PROVIDER_OPT = typer.Option(None, "--provider", "-p", help=PROVIDER_HELP)
BASE_URL_OPT = typer.Option(None, "--base-url", help=BASE_URL_HELP)
# The defaults live in one place, local/generation.py (bench/README.md says why).
MAX_NEW_TOKENS_OPT = typer.Option(DEFAULT.max_new_tokens, "--max-new-tokens", min=1)
TEMPERATURE_OPT = typer.Option(DEFAULT.temperature, "--temperature", help="0 = greedy.")
TOP_P_OPT = typer.Option(DEFAULT.top_p, "--top-p")
SEED_OPT = typer.Option(DEFAULT.seed, "--seed")
PENALTY_OPT = typer.Option(None, "--repetition-penalty", help="Local models: transformers' "
                           "repetition penalty, 1.0 = off. Default: the model's own "
                           f"generation config, else {DEFAULT.repetition_penalty}.")


def _settings(max_new_tokens: int, temperature: float, top_p: float, seed: int,
              repetition_penalty: float | None = None):
    from tunelab.errors import UsageError
    from tunelab.evaluate.runner import Settings

    if not 0 <= temperature <= 2:
        raise UsageError(f"--temperature {temperature}: must be between 0 and 2",
                         fix="use 0 for greedy, deterministic answers")
    if not 0 < top_p <= 1:
        raise UsageError(f"--top-p {top_p}: must be in (0, 1]", fix="use 1.0 to disable it")
    if repetition_penalty is not None and not 0 < repetition_penalty <= 3:
        raise UsageError(f"--repetition-penalty {repetition_penalty}: must be in (0, 3]",
                         fix="use 1.0 to turn it off")
    return Settings(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                    seed=seed, repetition_penalty=repetition_penalty)


def _print_json(payload: dict[str, Any]) -> None:
    emit_json(payload)


def _progress() -> Progress:
    # markup=False: a description names a model, and a model path may hold "[/x]".
    return Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                    MofNCompleteColumn(), console=err_console, transient=True)


def _asker(use_cache: bool = False):
    from tunelab.evaluate.cache import AnswerCache, NoCache
    from tunelab.evaluate.runner import Asker

    return Asker(AnswerCache() if use_cache else NoCache())


# test -----------------------------------------------------------------------------------
def test(
    model: str = MODEL_ARG,
    prompts: Path | None = typer.Option(None, "--prompts", help="A .txt file (one prompt a "
                                        "line) or a dialogue file; default: 5 built-in."),
    system: str | None = typer.Option(None, "--system", help=SYSTEM_HELP),
    provider: str | None = PROVIDER_OPT,
    base_url: str | None = BASE_URL_OPT,
    max_new_tokens: int = MAX_NEW_TOKENS_OPT,
    temperature: float = TEMPERATURE_OPT,
    top_p: float = TOP_P_OPT,
    seed: int = SEED_OPT,
    repetition_penalty: float | None = PENALTY_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Ask MODEL a few test prompts and show its answers with their latency."""
    from tunelab.evaluate import fluency
    from tunelab.evaluate.job_files import training_system_prompt
    from tunelab.evaluate.prompts import load_prompts
    from tunelab.evaluate.specs import resolve_spec

    spec = resolve_spec(model, provider=provider, base_url=base_url)
    settings = _settings(max_new_tokens, temperature, top_p, seed, repetition_penalty)
    conversations = load_prompts(prompts, system, training_system_prompt(spec))
    asker = _asker()
    with _progress() as progress:
        task = progress.add_task(terminal_safe(f"asking {spec.label}"),
                                 total=len(conversations))
        answers = asker.ask_many(spec, conversations, settings,
                                 lambda count: progress.advance(task, count))
    checks = [fluency.check(messages[-1]["content"], answer.text)
              for messages, answer in zip(conversations, answers, strict=True)]
    rows = [{"prompt": messages[-1]["content"],
             "system": messages[0]["content"] if messages[0]["role"] == "system" else None,
             **answer.to_dict(), **check.to_dict()}
            for messages, answer, check in zip(conversations, answers, checks, strict=True)]
    summary = fluency.summary([row["prompt"] for row in rows], [row["text"] for row in rows])
    if as_json:
        _print_json({"model": spec.to_dict(), "settings": settings.to_dict(),
                     "summary": summary, "results": rows})
        return
    for number, (row, check) in enumerate(zip(rows, checks, strict=True), 1):
        console.print(styled((f"Test {number}:", "bold"), " ", row["prompt"]))
        console.print(styled(("Response", "green"), f" ({row['latency_s']:.2f} s): ",
                             _answer_text(row["text"], check), "\n"))
    console.print(plain(_fluency_line(summary, len(rows))))


def _fluency_line(summary: dict[str, Any], answers: int) -> str:
    """`test`'s closing line: what compare's loop and language columns say, in counts."""
    from tunelab.evaluate.report import fmt

    return (f"{answers} answers: {fmt(summary['loop_share'], '{:.0%}')} in a loop, "
            f"{fmt(summary['language_match'], '{:.0%}')} in the question's language, "
            f"{summary['mixed_script_answers']} mixing scripts")


# chat -----------------------------------------------------------------------------------
def chat(
    model: str = MODEL_ARG,
    message: str | None = typer.Option(None, "--message", "-m",
                                       help="Ask this one message, print the answer, exit."),
    system: str | None = typer.Option(None, "--system", help=SYSTEM_HELP),
    provider: str | None = PROVIDER_OPT,
    base_url: str | None = BASE_URL_OPT,
    max_new_tokens: int = MAX_NEW_TOKENS_OPT,
    temperature: float = TEMPERATURE_OPT,
    top_p: float = TOP_P_OPT,
    seed: int = SEED_OPT,
    repetition_penalty: float | None = PENALTY_OPT,
    as_json: bool = typer.Option(False, "--json", help="With --message: one JSON object."),
) -> None:
    """Talk to MODEL. Interactive with history (/reset clears it, /exit leaves), or one
    answer with --message."""
    from tunelab.evaluate.job_files import training_system_prompt
    from tunelab.evaluate.specs import resolve_spec

    spec = resolve_spec(model, provider=provider, base_url=base_url)
    settings = _settings(max_new_tokens, temperature, top_p, seed, repetition_penalty)
    system = system or training_system_prompt(spec)
    start = [{"role": "system", "content": system}] if system else []
    asker = _asker()
    if message is not None:
        answer = asker.ask(spec, [*start, {"role": "user", "content": message}], settings)
        if as_json:
            _print_json({"model": spec.to_dict(), "settings": settings.to_dict(),
                         "system": system, "message": message, **answer.to_dict()})
        else:
            print(terminal_safe(answer.text))  # a model's words: no control sequences
        return
    _repl(spec, start, settings, asker)


def _repl(spec: Any, start: list[dict[str, str]], settings: Any, asker: Any) -> None:
    persona = " under a system prompt" if start else ""
    err_console.print(f"chatting with {spec.label} ({spec.provider}){persona}; "
                      "/reset clears the history, /exit (or Ctrl-D) leaves")
    history = list(start)
    while True:
        try:
            text = console.input(styled(("you>", "bold cyan"), " ")).strip()
        except EOFError:
            break
        if text == "/exit":
            break
        if text == "/reset":
            history = list(start)
            console.print("(history cleared)")
            continue
        if not text:
            continue
        try:
            with err_console.status(plain("thinking")):
                answer = asker.ask(spec, [*history, {"role": "user", "content": text}], settings)
        except TunelabError as error:  # a refused request ends the turn, not the chat
            err_console.print(styled(("error:", "bold red"), " ", error.render()))
            continue
        history += [{"role": "user", "content": text},
                    {"role": "assistant", "content": answer.text}]
        console.print(styled((f"{spec.label}>", "bold green"), " ", answer.text))


# compare --------------------------------------------------------------------------------
def compare(
    models: list[str] = typer.Argument(..., help="The models to compare. " + MODEL_HELP),
    eval_file: Path | None = typer.Option(None, "--eval", help="Held-out dialogues; each "
                                          "model answers up to the last assistant turn. "
                                          "Or preference pairs: the preferred answer is the "
                                          "reference, and local models get their reward "
                                          "accuracy. Default: the job's validation file."),
    limit: int | None = typer.Option(None, "--limit", "-n", min=1,
                                     help="Use the first N examples."),
    judge: str | None = typer.Option(None, "--judge", help="A model that scores persona "
                                     "fidelity and helpfulness (any MODEL form)."),
    report: Path | None = typer.Option(None, "--report", help="Write a self-contained HTML "
                                       "report here."),
    provider: str | None = PROVIDER_OPT,
    base_url: str | None = BASE_URL_OPT,
    max_new_tokens: int = MAX_NEW_TOKENS_OPT,
    temperature: float = TEMPERATURE_OPT,
    top_p: float = TOP_P_OPT,
    seed: int = SEED_OPT,
    repetition_penalty: float | None = PENALTY_OPT,
    no_cache: bool = typer.Option(False, "--no-cache", help="Ask again even if answered."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Did fine-tuning help? Every model answers every held-out example with the same
    settings; see the answers side by side with chrF, ROUGE-L, length, latency, price,
    held-out loss (local models) and an optional judge.

    `tunelab compare base JOB` compares a tuned job with its own base model. Answers are
    cached in TUNELAB_HOME/cache, so a re-run asks no model twice.
    """
    from tunelab.evaluate.compare import compare as run_compare

    settings = _settings(max_new_tokens, temperature, top_p, seed, repetition_penalty)
    with _progress() as progress:
        tasks: dict[str, Any] = {}

        def advance(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = progress.add_task(terminal_safe(what), total=total)
            progress.update(tasks[what], completed=done)

        comparison = run_compare(models, eval_file=eval_file, limit=limit, judge=judge,
                                 settings=settings, provider=provider, base_url=base_url,
                                 use_cache=not no_cache, progress=advance)
    written = None
    if report:
        from tunelab.evaluate.report import write_report

        written = str(write_report(comparison, report))
    if as_json:
        _print_json({**comparison.to_dict(), "report": written})
        return
    _show_answers(comparison)
    _show_metrics(comparison)
    _show_switch(comparison)
    console.print(f"answer cache: {comparison.cache_hits} hits, {comparison.cache_misses} "
                  "misses")
    if written:
        console.print(f"report: {written}")


def _show_answers(comparison: Any) -> None:
    for index, item in enumerate(comparison.items):
        table = Table(title=f"{index + 1}. {item.question}", show_lines=True,
                      title_justify="left")
        table.add_column("reference", ratio=1)
        for result in comparison.results:
            cached = " (cached)" if result.answers[index].cached else ""
            table.add_column(result.spec.label + cached, ratio=1)
        table.add_row(plain(item.reference),
                      *(_answer_text(r.answers[index].text, r.checks[index])
                        for r in comparison.results))
        console.print(table)


def _show_switch(comparison: Any) -> None:
    """Beside a recorded model, the "Can we switch?" verdict the HTML report gives, with
    the numbers and the rule that decided it (evaluate/switch.py)."""
    for verdict in comparison.switch:
        answer = ("yes", "bold green") if verdict.switch else ("not yet", "bold red")
        console.print(styled(f"Can {verdict.candidate} replace {verdict.recorded}? ", answer))
        for reason in verdict.reasons:
            console.print(plain(f"  {reason}"))


def _answer_text(text: str, check: Any) -> Any:
    """The answer, then what a reader would stumble on (a loop, another language) in red."""
    from tunelab.evaluate.report import answer_flags

    flags = answer_flags(check)
    return styled(text, (f"\n[{'; '.join(flags)}]", "red")) if flags else plain(text)


def _show_metrics(comparison: Any) -> None:
    """One row per metric, one column per model: model names are long, metrics are not."""
    from tunelab.evaluate.report import (
        JUDGE_COLUMNS,
        METRIC_COLUMNS,
        metric_cell,
        unavailable_notes,
    )

    columns = METRIC_COLUMNS + (JUDGE_COLUMNS if comparison.judge else ())
    table = Table(title=f"{len(comparison.items)} examples from {comparison.eval_file}",
                  title_justify="left")
    table.add_column("metric", no_wrap=True)
    values = []
    for result in comparison.results:
        table.add_column(result.spec.label, justify="right", overflow="fold")
        values.append({**result.metrics, **(result.judge or {})})
    for key, title, pattern in columns:
        if any(value.get(key) is not None or key in result.unavailable
               for value, result in zip(values, comparison.results, strict=True)):
            table.add_row(title, *(metric_cell(result, value, key, pattern)
                                   for value, result in zip(values, comparison.results,
                                                            strict=True)))
    console.print(table)
    for note in unavailable_notes(comparison):
        console.print(plain(note))
