"""`tunelab export JOB -o DIR [--merge]`: take a local job's model out of tunelab."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tunelab.cli.console import err, plain


def export(
    job: str = typer.Argument(..., help="A local job id (ftjob-...), its ft: model name, or "
                                        "a run folder."),
    output: Path = typer.Option(..., "-o", "--output",
                                help="Folder to write; it must not exist or be empty."),
    merge: bool = typer.Option(False, "--merge",
                               help="Merge the LoRA adapter into its base: a plain HF model "
                                    "that loads with transformers alone."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Export a local job's model: its adapter folder, or with --merge a merged HF model.

    A merged model keeps the tokenizer and chat template, and answers like the adapter. A
    --full job exports its whole model (--merge changes nothing there).

    Cloud jobs can't be exported: their weights stay with the provider.
    """
    from tunelab.local.export import export_job

    with err.status(plain(f"exporting {job}" + (" (merging the adapter)" if merge else ""))):
        result = export_job(job, output, merge=merge)
    if as_json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
        return
    what = {"adapter": "adapter", "merged": "merged model"}.get(result.kind, "full model")
    print(f"exported {what} of {result.job_id or job} to {result.output_dir} "
          f"({len(result.files)} files, {result.bytes / 1e6:.1f} MB)")
    if result.kind != "adapter":
        print(f"load it with AutoModelForCausalLM.from_pretrained({result.output_dir!r})")
