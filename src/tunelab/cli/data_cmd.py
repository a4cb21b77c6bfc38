"""`tunelab data ...`: check, cost, convert and split a dataset of chat examples or
preference pairs."""

from __future__ import annotations

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn

from tunelab.cli import pairs_cmd
from tunelab.cli.console import emit_json
from tunelab.cli.console import err as err_console
from tunelab.cli.console import out as console
from tunelab.errors import DataError, command

app = typer.Typer(help="Check, price, convert and split a dataset.", no_args_is_help=True)

PROVIDER_HELP = ("Who will train: openai, vertex, kimi, local, or an endpoint from "
                 "providers.yaml. Decides the tokenizer, the length limit and the price.")
MODEL_HELP = ("Target model (default per provider: gpt-4o-mini-2024-07-18, gemini-2.5-flash, "
              "moonshot-v1-8k, the embedded SmolLM2).")
EPOCHS_HELP = "Epochs to price (default: OpenAI's rule, 3 adjusted toward 100..25,000 steps)."


def _known_provider(provider: str) -> str:
    from tunelab.cli.train_options import known_provider
    from tunelab.data import pricing

    # Pricing rows (TUNELAB_HOME/pricing.json may add some) can be priced, if not trained.
    priced = set(pricing.DEFAULT_MODELS) | {row.provider for row in pricing.load_pricing()}
    return known_provider(provider.strip().lower(), also=priced)


def _check(file: str, provider: str, model: str | None, epochs: int | None):
    from tunelab.data.check import check_file

    provider = _known_provider(provider)
    tokenizer = None
    if provider == "local":  # local models count with their own chat template
        from tunelab.local.model_source import load_tokenizer

        tokenizer = load_tokenizer(model)
    with Progress(SpinnerColumn(), TextColumn("checked {task.completed:,} examples"),
                  console=err_console, transient=True) as progress:
        task = progress.add_task("check", total=None)
        return check_file(file, provider=provider, model=model, epochs=epochs,
                          tokenizer=tokenizer,
                          on_progress=lambda done: progress.update(task, completed=done))


def _data_errors(count: int, file: str, priced: bool = False) -> DataError:
    # Raised rather than typer.Exit(1): the CLI edge turns it into one line and exit code 1.
    what = "; those examples are not priced" if priced else ""
    return DataError(f"{count:,} data error{'s' if count != 1 else ''} in {file}{what}",
                     fix="fix the lines listed above" if not priced
                     else f"see them with `{command('tunelab', 'data', 'check', file)}`")


def _print_json(payload: dict) -> None:
    emit_json(payload)


@app.command("check")
def check(
    file: str = typer.Argument(..., help="A .jsonl (OpenAI chat or DPO pairs), .json (array) "
                               "or .csv file."),
    provider: str = typer.Option("openai", "--provider", "-p", help=PROVIDER_HELP),
    model: str | None = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    epochs: int | None = typer.Option(None, "--epochs", "-e", help=EPOCHS_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead."),
) -> None:
    """Validate FILE against OpenAI's fine-tuning rules, count its tokens and price training.

    Every error names its line and a short code (invalid_json, missing_messages,
    unrecognized_role, no_assistant_message, ...); warnings flag missing system prompts,
    duplicates, examples over the model's length limit (and which part gets cut) and
    examples that end on a user turn. Tokens are counted the way the target bills them:
    tiktoken (o200k_base or cl100k_base) with the cookbook's per-message overhead for
    OpenAI-style providers, the model's own chat template for --provider local. Gemini has
    no offline tokenizer: its counts are o200k_base estimates.

    A file of preference pairs (OpenAI's DPO rows: input.messages, preferred_output,
    non_preferred_output; its first valid row decides) is checked by the pair rules (one
    assistant answer per output, the input ending on the user's turn, two different
    answers, no chat rows mixed in), counted as its input once plus both answers, and
    priced for DPO on the models that train it (--model defaults to gpt-4.1-mini for
    OpenAI); "unknown" where no source gives a DPO price.

    Exit code: 0 valid (warnings allowed), 1 data errors, 2 unreadable file or bad usage.
    """
    report = _check(file, provider, model, epochs)
    if as_json:
        _print_json(report.as_dict())
    else:
        from tunelab.cli.data_view import show_check

        show_check(console, report)
    if not report.ok:
        raise _data_errors(report.errors.total, file)


@app.command("cost")
def cost(
    file: str = typer.Argument(..., help="A .jsonl, .json or .csv dataset."),
    epochs: int | None = typer.Option(None, "--epochs", "-e", help=EPOCHS_HELP),
    provider: str = typer.Option("openai", "--provider", "-p", help=PROVIDER_HELP),
    model: str | None = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead."),
) -> None:
    """Price training on FILE across providers and models, and inference per 1k requests.

    Prices come from the packaged table (each row with its as-of date and source URL);
    TUNELAB_HOME/pricing.json overrides or adds rows. Kimi has no fine-tuning API, so it
    shows an inference price only. Tokens are counted with the --provider/--model
    tokenizer and reused for every row, so other families' rows are estimates.
    A file of preference pairs is priced for DPO, on the models that train it.
    Exit code 1 if the file has data errors (those examples are not priced).
    """
    report = _check(file, provider, model, epochs)
    if as_json:
        _print_json({"ok": report.ok, "format": report.format, "method": report.method,
                     "examples": report.valid_examples,
                     "billing_tokens": report.billing_tokens, "epochs": report.epochs,
                     "tokenizer": report.tokenizer,
                     "cost": [row.as_dict() for row in report.cost]})
    else:
        from tunelab.cli.data_view import cost_table, unit

        console.print(cost_table(report.cost))
        console.print(f"{report.valid_examples:,} {unit(report)}, {report.billing_tokens:,} "
                      f"billing tokens per epoch ({report.tokenizer}), {report.epochs} epochs")
    if not report.ok:
        raise _data_errors(report.errors.total, file, priced=True)


@app.command("convert")
def convert(
    source: str = typer.Argument(..., metavar="IN", help="A .jsonl, .json or .csv dataset in "
                                 "any supported format (detected from its first record)."),
    out: str = typer.Argument(..., metavar="OUT", help="The file to write (.jsonl, .json or "
                              ".csv)."),
    to: str | None = typer.Option(None, "--to", help="Chat: openai, gemini, csv, sharegpt or "
                                  "alpaca. Preference pairs: openai (DPO rows), trl, trl-text, "
                                  "trl-implicit, alpaca or sharegpt. Default: from OUT's name "
                                  "(.csv; gemini, vertex, sharegpt, alpaca or trl in the name), "
                                  "else openai."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead."),
) -> None:
    """Convert IN between OpenAI chat JSONL, Vertex Gemini JSONL, CSV, ShareGPT and Alpaca,
    or preference pairs between OpenAI's DPO rows and TRL's, LLaMA-Factory's and Axolotl's.

    OpenAI -> X -> OpenAI gives back the same messages wherever X can hold them; what X
    cannot hold (tool calls, multi-turn dialogues in CSV, weight 0 outside OpenAI) stops the
    conversion with the line to fix. OUT is written only when every example converted, and
    an existing OUT is never replaced without --force.

    Preference pairs (a first row with chosen/rejected or preferred_output) are read from
    TRL's prompt/chosen/rejected (message lists: trl; strings: trl-text), TRL's implicit
    prompt and other whole-conversation chosen/rejected rows (Axolotl argilla_chat,
    SageMaker: trl-implicit), LLaMA-Factory's pairwise alpaca and sharegpt rows, and
    OpenAI's own; a row that does not map stops the conversion with its line and the reason.
    """
    from tunelab.data.convert import convert as run_convert

    result = run_convert(source, out, to=to, force=force)
    if as_json:
        _print_json(result)
    else:
        rows = "preference pairs" if result.get("format") == "preference" else "examples"
        console.print(f"✅ Converted {result['examples']:,} {rows}: {result['from']} → "
                      f"{result['to']} in {result['out']}")


@app.command("split")
def split(
    file: str = typer.Argument(..., help="A .jsonl, .json or .csv dataset."),
    val: float = typer.Option(0.1, "--val", help="Fraction held out for validation (0..1)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the shuffle: same seed, same split."),
    out_dir: str | None = typer.Option(None, "--out-dir", help="Folder for the two files "
                                       "(default: next to FILE)."),
    force: bool = typer.Option(False, "--force", help="Replace the outputs if they exist."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead."),
) -> None:
    """Split FILE into FILE_train.jsonl and FILE_val.jsonl (OpenAI format), deterministically.

    The same file, --val and --seed always give the same split, and each side keeps the
    file's order. Every example must be valid first (see `tunelab data check`).
    """
    from tunelab.data.split import split as run_split

    result = run_split(file, val=val, seed=seed, out_dir=out_dir, force=force)
    if as_json:
        _print_json(result)
    else:
        console.print(f"✅ Split {result['examples']:,} examples: {result['train']:,} → "
                      f"{result['train_file']}, {result['val']:,} → {result['val_file']}")


app.command("pairs")(pairs_cmd.pairs)  # preference pairs: cli/pairs_cmd.py
