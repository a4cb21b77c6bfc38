"""`tunelab models`: the models here (list, show), fetching one (pull), removing one (rm);
and the terminal's side of a download: the size and place shown, a big one asked about.

Thin: the facts and the removal are tunelab.local.model_list's, the download tunelab.local
.hub's. `TerminalConsent` is what every command's downloads go through (installed by
cli/app.py); `prepare_train_model` is the train command's preflight before its live display.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from tunelab.cli.console import emit_json, err, out, styled
from tunelab.cli.formatting import Col, fitted_table
from tunelab.errors import UsageError, command

if TYPE_CHECKING:
    from tunelab.config import TrainConfig
    from tunelab.local.catalog import ModelFacts
    from tunelab.local.hub import Download

app = typer.Typer(help="The models on this machine: list, show, pull from the hub, remove.",
                  no_args_is_help=False, invoke_without_command=True)

JsonFlag = typer.Option(False, "--json", help="Print JSON.")
YesFlag = typer.Option(False, "--yes", "-y", help="Don't ask for confirmation.")


class TerminalConsent:
    """Before a download: what, how much and where, on stderr; past the size threshold a
    question (refused where nobody can answer it), unless --yes."""

    def __init__(self, *, yes: bool = False) -> None:
        self.yes = yes

    def __call__(self, plan: Download) -> None:
        from tunelab.cli.run_reporter import interactive
        from tunelab.local.hub import gigabytes, needs_question

        size = gigabytes(plan.download_bytes)
        err.print(f"model {plan.name}: {len(plan.missing)} file(s), {size} to download "
                  f"into {plan.where}", markup=False)
        if self.yes or not needs_question(plan):
            return
        pull = command("tunelab", "models", "pull", str(plan.name), "--yes")
        if not interactive():
            raise UsageError(f"model {plan.name}: {size} to download, and this is not an "
                             "interactive terminal to ask", fix=f"pass --yes, or run `{pull}`")
        if not typer.confirm(f"Download {size}?", err=True):
            raise UsageError("download not started", fix=f"fetch it later with `{pull}`")


def prepare_train_model(config: TrainConfig, *, yes: bool) -> None:
    """A local run's model, checked and fetched before training starts (and before the live
    display, so the question has the terminal): refusals from the config alone, then the
    download with its question and progress bar. A dry run fetches no weights."""
    from tunelab.local import dryrun, hub, model_source

    dryrun.preflight(config)
    name = hub.parse(config.model) if config.model else None
    if name is None or config.model.strip().lower() in model_source.EMBEDDED_ALIASES \
            or hub.cached(name) is not None:
        return
    hub.ensure(name, consent=TerminalConsent(yes=yes))


@app.callback()
def models(ctx: typer.Context, json_out: bool = JsonFlag) -> None:
    """The models here: `tunelab models` lists them (as `models list`)."""
    if ctx.invoked_subcommand is None:
        list_models(json_out=json_out)


COLUMNS = (Col("model", key=True), Col("source", drop=5), Col("size"), Col("arch", drop=4),
           Col("params"), Col("context", drop=3), Col("template", drop=2),
           Col("features", wrap=True, min_width=8, drop=1))


@app.command("list")
def list_models(json_out: bool = JsonFlag) -> None:
    """List the models here: the embedded default, hub models in the Hugging Face cache,
    models exported from jobs, with size, architecture, parameters, context length, chat
    template and the tunelab features that apply (train, kernels, gguf, ollama)."""
    from tunelab.local import model_list

    found = model_list.list_models()
    if json_out:
        emit_json({"models": [item.as_dict() for item in found]})
        return
    rows = [[item.name, item.source, _size(item.size_bytes), item.model_type or "?",
             _params(item.parameters), _count(item.context_length),
             {True: "yes", False: "no", None: "?"}[item.chat_template],
             ", ".join(item.features) or "-"] for item in found]
    out.print(fitted_table(COLUMNS, rows, out.width, title="models here"))


@app.command("show")
def show(name: str = typer.Argument(..., help="A hub id, `default` or an export folder."),
         json_out: bool = JsonFlag) -> None:
    """Everything tunelab knows of one model; a hub id not here is read from the hub
    (its config and tokenizer files only, a few MB)."""
    from tunelab.local import model_list

    item = model_list.show(name)
    if json_out:
        emit_json({"model": item.as_dict(), "gguf_support": _gguf_line(item)})
        return
    _print_facts(item)


@app.command("pull")
def pull(name: str = typer.Argument(..., help="A hub id: ORG/NAME, or ORG/NAME-GGUF:QUANT."),
         yes: bool = YesFlag, json_out: bool = JsonFlag) -> None:
    """Download a hub model into the Hugging Face cache (only the files a model needs;
    resumes an interrupted download; HF_TOKEN for gated models)."""
    from tunelab.local import hub, model_list

    parsed = hub.parse(name)
    if parsed is None:
        raise UsageError(f"{name!r} is not a hub id",
                         fix="name it ORG/NAME (e.g. Qwen/Qwen2.5-0.5B-Instruct), or "
                             "ORG/NAME-GGUF:Q4_K_M for one GGUF file")
    path = hub.ensure(parsed, consent=TerminalConsent(yes=yes))
    item = model_list.find(parsed.repo_id)
    if json_out:
        emit_json({"model": item.as_dict(), "path": str(path)})
        return
    err.print(styled(("pulled", "bold green"), f" {name} -> {path}"))
    _print_facts(item)


@app.command("rm")
def rm(name: str = typer.Argument(..., help="A hub id in the cache, or an export folder."),
       yes: bool = YesFlag, force: bool = typer.Option(
           False, "--force", help="Remove it even if registry jobs were trained on it."),
       json_out: bool = JsonFlag) -> None:
    """Remove a hub model from the Hugging Face cache (or an exported model's folder). A
    model that jobs in the registry were trained on stays unless --force."""
    from tunelab.cli.run_reporter import interactive
    from tunelab.local import model_list

    item = model_list.find(name)
    if item.jobs and not force:
        model_list.remove(name)  # refuses, naming the jobs
    if not yes:
        if not interactive():
            raise UsageError(f"removing {item.name} needs a yes, and this is not an "
                             "interactive terminal", fix="pass --yes")
        if not typer.confirm(f"Remove {item.name} ({_size(item.size_bytes)}) from "
                             f"{item.path}?", err=True):
            raise typer.Exit(1)
    removed = model_list.remove(name, force=force)
    if json_out:
        emit_json({"removed": removed.name, "path": removed.path,
                   "freed_bytes": removed.freed_bytes, "jobs": list(removed.jobs)})
        return
    err.print(f"removed {removed.name} ({_size(removed.freed_bytes)})", markup=False)


# rendering ----------------------------------------------------------------------------------
def _print_facts(item: ModelFacts) -> None:
    template = {True: "yes", False: "no (training refuses it; see `tunelab models show`)",
                None: "unknown (tokenizer not here)"}[item.chat_template]
    lines: list[tuple[str, Any]] = [
        ("model", item.name), ("source", item.source), ("path", item.path or "-"),
        ("size", _size(item.size_bytes)),
        ("architecture", ", ".join(item.architectures) or item.model_type or "?"),
        ("parameters", f"{_params(item.parameters)} (from {item.parameters_from})"
         if item.parameters else "?"),
        ("context length", _count(item.context_length)), ("chat template", template),
        ("local training", "yes" if item.trainer else "no: transformers has no causal LM "
                                                      f"for {item.model_type!r}"),
        ("speed kernels", "yes" if item.kernels else "no (trains without them)"),
        ("GGUF export", _gguf_line(item)),
        ("Ollama", "yes" if item.ollama else "no (needs GGUF export and a chat template)"),
        ("jobs trained on it", ", ".join(item.jobs) or "none"),
    ]
    lines += [("note", note) for note in item.notes if note]
    for key, value in lines:
        out.print(f"{key + ':':<20}{value}", markup=False)


def _gguf_line(item: ModelFacts) -> str:
    from tunelab.local.gguf.writer import SUPPORTED

    return "yes" if item.gguf_export else f"no (the GGUF writer supports {SUPPORTED})"


def _size(size: int | None) -> str:
    from tunelab.local.hub import gigabytes

    return "?" if size is None else gigabytes(size)


def _params(count: int | None) -> str:
    if not count:
        return "?"
    return f"{count / 1e9:.2f}B" if count >= 1e9 else f"{count / 1e6:.0f}M"


def _count(value: int | None) -> str:
    return f"{value:,}" if value else "?"
