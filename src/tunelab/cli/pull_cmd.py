"""`tunelab pull JOB [--name NAME]`: a cloud job's trained weights, home as a local model."""

from __future__ import annotations

from typing import Annotated

import typer

from tunelab.cli.console import emit_json, err, out, plain
from tunelab.cli.train_options import BaseUrlFlag, TimeoutFlag
from tunelab.errors import UsageError, command


def pull(
    job: Annotated[str, typer.Argument(help="A cloud job id, as `tunelab jobs list` shows it.")],
    name: Annotated[str | None, typer.Option(
        "--name", help="The local model's name (default: the provider's model name + "
                       "-local).")] = None,
    kind: Annotated[str, typer.Option(
        "--kind", help="adapter (a LoRA adapter on its base) or merged (the whole model, "
                       "adapter merged in).")] = "adapter",
    base_model: Annotated[str | None, typer.Option(
        "--base-model", help="The local base the adapter goes on (a folder, a .gguf or a "
                             "cached hub id), when the name it carries is not on this "
                             "machine.")] = None,
    base_url: BaseUrlFlag = None,
    timeout: TimeoutFlag = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Bring a cloud job's weights home: download its adapter (or merged model), check it
    against the base model it names (the base must be on this machine and the adapter must
    load onto it), and record it as a local model. Then `chat`, `compare`, `serve` and
    `export --format gguf` take NAME, with no network.

    Only providers that let you download what they trained can (together); OpenAI, Azure and
    Vertex keep the weights.
    """
    from tunelab.cli.cloud_cmd import provider_for_job, refresh
    from tunelab.local.pulled import bring_home
    from tunelab.registry import open_registry

    remote = provider_for_job(job, None, base_url, timeout)
    if kind not in remote.capabilities.weights:
        if not remote.capabilities.weights:
            from tunelab.providers.base import no_weights

            raise no_weights(remote.name)
        raise UsageError(f"{remote.name} gives weights as "
                         f"{' or '.join(sorted(remote.capabilities.weights))}, not {kind}",
                         fix="pass --kind " + sorted(remote.capabilities.weights)[0])
    refresh(remote, job)
    with open_registry() as registry:
        source = registry.get_job(job)
    with err.status("pulling", spinner="dots") as status:
        pulled = bring_home(source, kind,
                            lambda dest: remote.download_weights(source.id, kind, dest),
                            name=name, base=base_model,
                            on_step=lambda what: status.update(plain(what)))
    if as_json:
        emit_json(pulled.to_dict())
        return
    out.print(plain(f"pulled the {kind} of {source.id} as {pulled.name} ({pulled.job_id}, "
                    f"{pulled.bytes / 1e6:.1f} MB) into {pulled.path}"))
    export = command("tunelab", "export", pulled.name, "--format", "gguf", "-o", "DIR")
    out.print(plain(f"try it: {command('tunelab', 'chat', pulled.name)}; export it: {export}"))
