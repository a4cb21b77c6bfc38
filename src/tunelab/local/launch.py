"""`tunelab train --nproc N`: the same command again, under `accelerate launch`.

accelerate is the distributed engine; this module only builds its command line. On GPUs it
is plain DDP, one process per GPU (NCCL). Without CUDA, `--multi_gpu` still starts N
processes through torchrun, and accelerate sees no GPU and joins them over gloo on the CPU
(`--cpu` would not do: it selects accelerate's single-process launcher). FSDP and DeepSpeed
take an accelerate config file: see configs/accelerate/README.md.

Inside the launched processes, rank 0 owns the job (registry rows, run folder, output) and
the other ranks run the very same loop silently: `follow` is their whole job.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from tunelab.errors import TunelabError, UsageError

NPROC_FLAG = "--nproc"


def world_size() -> int:
    """How many processes train together (1 unless started by accelerate launch/torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main_rank() -> bool:
    return rank() == 0


def launch_command(nproc: int, cli_args: list[str], *, gpus: int | None = None,
                   cpu_count: int | None = None, port: int | None = None) -> tuple[list[str],
                                                                                  dict[str, str]]:
    """The `accelerate launch` command line (and environment) that runs `tunelab CLI_ARGS`
    in `nproc` processes (at least 1: cli TrainOptions checks it, for --dry-run too).
    `gpus` defaults to the CUDA devices visible here."""
    gpus = visible_gpus() if gpus is None else gpus
    if gpus and nproc > gpus:
        raise UsageError(f"{NPROC_FLAG} {nproc}: only {gpus} GPU(s) are visible",
                         fix=f"use {NPROC_FLAG} {gpus} or fewer, or set CUDA_VISIBLE_DEVICES")
    env = dict(os.environ)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--quiet",
               "--num_processes", str(nproc), "--num_machines", "1",
               "--main_process_port", str(port or free_port()),
               "--mixed_precision", "no",  # the trainer picks its own precision (--precision)
               "--dynamo_backend", "no"]
    if nproc > 1:
        command.append("--multi_gpu")  # torchrun's N processes; gloo when there is no CUDA
    if not gpus:
        threads = max(1, (cpu_count or os.cpu_count() or 1) // nproc)
        command += ["--num_cpu_threads_per_process", str(threads)]
        # N processes share the cores: idle OpenMP threads must sleep, not spin, or each
        # process burns the cores the others need (measured: bench/README.md).
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        # Without this, each process sees no GPU and trains alone: accelerate joins CPU
        # processes (gloo) only when told the run is on the CPU.
        env["ACCELERATE_USE_CPU"] = "true"
    command += ["-m", "tunelab", *cli_args]
    return command, env


def relaunch_train(nproc: int, config: Any, *, json_out: bool) -> int:
    """Train the resolved `config` in `nproc` processes; the exit code.

    The children get the resolved config as a file, so it is validated once, here, and every
    rank trains exactly what rank 0 records.
    """
    with tempfile.TemporaryDirectory(prefix="tunelab-launch-") as folder:
        path = Path(folder) / "config.json"
        path.write_text(config.model_dump_json(), encoding="utf-8")
        args = ["train", str(config.train_file), "--config", str(path)]
        return relaunch(nproc, args + (["--json"] if json_out else []))


def relaunch_resume(nproc: int, job_id: str, overrides: dict[str, Any], *,
                    json_out: bool) -> int:
    """Resume local job `job_id` in `nproc` processes with `overrides` (e.g. epochs)."""
    with tempfile.TemporaryDirectory(prefix="tunelab-launch-") as folder:
        path = Path(folder) / "overrides.json"
        path.write_text(json.dumps(overrides), encoding="utf-8")
        args = ["train", "--resume", job_id, "--config", str(path)]
        return relaunch(nproc, args + (["--json"] if json_out else []))


def relaunch(nproc: int, cli_args: list[str]) -> int:
    """Run `tunelab CLI_ARGS` under accelerate launch in `nproc` processes; the exit code."""
    command, env = launch_command(nproc, cli_args)
    try:
        return subprocess.run(command, env=env, check=False).returncode
    except OSError as error:
        raise TunelabError(f"could not start accelerate launch: {error.strerror}",
                           fix="check that accelerate is installed: pip install "
                               "'tunelab[local]'") from None


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def free_port() -> int:
    """A free TCP port for the rendezvous: the default 29500 clashes with other runs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def follow(config: Any, resume_from: Path | None = None,
           stop: threading.Event | None = None) -> dict[str, Any]:
    """A rank other than 0: the same setup and loop as rank 0, with no bookkeeping.

    DDP needs every rank to run every forward, backward and collective; only rank 0 writes
    the registry, the run folder and the output, so this rank's hooks do nothing and its
    run folder is a scratch one (checkpoints are written by rank 0 alone).
    """
    from tunelab.local import prepare, trainer
    from tunelab.local.model_source import load_tokenizer
    from tunelab.local.state import TrainState

    tokenizer = load_tokenizer(config.model)
    data = prepare.tokenize(config, tokenizer, prepare.read_examples(config))
    session = trainer.setup(config, tokenizer, data.train, data.validation,
                            base_ref=prepare.base_model_ref(config.model),
                            resume_from=resume_from)
    state = trainer.restore_position(resume_from) if resume_from else TrainState()
    _silence(sys.stdout)
    with tempfile.TemporaryDirectory(prefix="tunelab-rank-") as scratch:
        status = trainer.train(session, state, trainer.Hooks(), Path(scratch), stop)
    _silence(sys.stderr)  # the loop is done: whatever the CLI says now, rank 0 says it too
    return {"id": None, "status": status, "provider": "local", "run_dir": None, "metrics": {},
            "rank": rank()}


def _silence(stream: Any) -> None:
    """Send `stream` (stdout or stderr) of this process to /dev/null.

    Rank 0 alone prints the result (one JSON object for --json). The other ranks' stdout is
    silenced before training, their stderr only after it, so an error on any rank is seen.
    """
    stream.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stream.fileno())
    os.close(devnull)
