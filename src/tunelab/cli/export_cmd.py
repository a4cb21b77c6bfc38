"""`tunelab export JOB -o DIR [--format hf|adapter|gguf]`: a local job's model, out of tunelab."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import typer

from tunelab.cli.console import emit_json, err


def export(
    job: str = typer.Argument(..., help="A local job id (ftjob-...), its ft: model name, or "
                                        "a run folder."),
    output: Path = typer.Option(..., "-o", "--output",
                                help="Folder to write; it must not exist or be empty."),
    fmt: str = typer.Option("hf", "--format", "-f",
                            help="hf: merged HF model folder; adapter: the LoRA adapter "
                                 "alone; gguf: one .gguf file with a Modelfile for Ollama."),
    quantize: str = typer.Option("f16", "--quantize", "-q",
                                 help="GGUF weights: f16, bf16 or q8_0."),
    checkpoint: str | None = typer.Option(None, "--checkpoint",
                                          help="Export a kept checkpoint instead of the "
                                               "final weights: best, latest or a step."),
    force: bool = typer.Option(False, "--force",
                               help="Replace DIR if it holds files (only once the new export "
                                    "is complete)."),
    no_modelfile: bool = typer.Option(False, "--no-modelfile",
                                      help="GGUF alone, for llama.cpp (needed for a chat "
                                           "template Ollama's TEMPLATE can't express)."),
    merge: bool = typer.Option(False, "--merge", hidden=True,
                               help="Same as --format hf (the default), kept for old scripts."),
    as_json: bool = typer.Option(False, "--json",
                                 help="Print one JSON object: paths, sizes and sha256 of "
                                      "every file written."),
) -> None:
    """Export a local job's model: merged HF weights (the default), its LoRA adapter, or a
    GGUF for llama.cpp, Ollama and LM Studio.

    A merged model keeps the tokenizer and chat template, and answers like the adapter. A
    --full job exports its whole model. A GGUF export writes DIR/<name>.gguf, DIR/Modelfile
    (Ollama: the chat template as a Go TEMPLATE, stop tokens, the training data's system
    prompt, `tunelab test`'s sampling) and DIR/README.md with the commands to run it.

    Cloud jobs can't be exported: their weights stay with the provider.
    """
    from tunelab.local.export import ExportRequest, export_job

    if merge and fmt != "hf":
        from tunelab.errors import UsageError

        raise UsageError(f"--merge with --format {fmt}: --merge means --format hf",
                         fix="drop --merge")
    request = ExportRequest(job, output, fmt, quantize, checkpoint, force, not no_modelfile,
                            *(_modelfile_defaults(job) if fmt == "gguf" else (None, {})))
    with _progress() as report:
        result = export_job(request, report)
    if as_json:
        emit_json(result.to_dict())
        return
    _print_result(result, job)


def _modelfile_defaults(job: str) -> tuple[str | None, dict[str, float | int]]:
    """The Modelfile's SYSTEM (what `tunelab test` puts first for this job) and sampling
    (`tunelab test`'s defaults)."""
    from tunelab.evaluate.job_files import training_system_prompt
    from tunelab.evaluate.runner import Settings
    from tunelab.evaluate.specs import ModelSpec
    from tunelab.local.generation import DEFAULT as GENERATION
    from tunelab.local.gguf.ollama import sampling_parameters
    from tunelab.registry import open_registry

    with open_registry() as registry:
        record = registry.find_job(job) or registry.find_job_by_model(job)
    system = None
    if record is not None:
        # Ollama bakes SYSTEM into every chat: only a prompt every example was trained with.
        system = training_system_prompt(ModelSpec(job, record.provider, job, job_id=record.id),
                                        share=1.0)
    settings = Settings()
    penalty = settings.repetition_penalty or GENERATION.repetition_penalty
    return system, sampling_parameters(temperature=settings.temperature, top_p=settings.top_p,
                                       seed=settings.seed, repetition_penalty=penalty)


@contextmanager
def _progress():
    """A spinner while the model loads and merges, a byte bar while tensors are written."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    with Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                  DownloadColumn(), console=err, transient=True) as progress:
        task = progress.add_task("exporting", total=None)

        def report(what: str, done: int, total: int) -> None:
            progress.update(task, description=what, completed=done, total=total or None)

        yield report


def _print_result(result, job: str) -> None:
    what = {"adapter": "adapter", "merged": "merged model"}.get(result.kind, "full model")
    fmt = " as GGUF" if result.format == "gguf" else ""
    print(f"exported {what} of {result.job_id or job}{fmt} to {result.output_dir} "
          f"({len(result.files)} files, {result.bytes / 1e6:.1f} MB, {result.seconds:.1f} s)")
    if result.format == "gguf":
        for item in result.files:
            print(f"  {item.path}  {item.bytes / 1e6:.1f} MB  sha256 {item.sha256[:16]}")
        print(f"see {Path(result.output_dir) / 'README.md'} for the ollama and llama.cpp "
              "commands")
    elif result.kind != "adapter":
        print(f"load it with AutoModelForCausalLM.from_pretrained({result.output_dir!r})")
