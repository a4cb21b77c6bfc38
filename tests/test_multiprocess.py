"""`tunelab train --nproc 2`: two gloo processes on this CPU train like one process.

Same global batch both ways: 2 processes x batch 1 against 1 process x batch 1 x
--grad-accum 2. The trainer's batch order is a function of (seed, epoch, batch size), so
these two runs see the same two examples in every optimizer step, and both average two
per-example mean losses (DDP averages gradients over ranks; accumulation over micro-batches).
What may differ is only float summation order (gloo's all-reduce against local
accumulation) at fp32: about 1e-7 relative per step, carried a few steps through AdamW.
Hence the tolerance: 1e-4 absolute on each step's loss (losses here are about 2 to 4),
which is loose for rounding and tight against any real mistake (a wrong shard, an
un-averaged gradient or a skipped step moves the loss by 1e-2 or more).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_export import write_tiny_chats
from tunelab.cli import main
from tunelab.errors import UsageError
from tunelab.local import launch
from tunelab.registry import open_registry

REPO = Path(__file__).resolve().parents[1]
ACCELERATE_CONFIGS = sorted((REPO / "configs" / "accelerate").glob("*.yaml"))

STEPS = 3
TOLERANCE = 1e-4


@pytest.fixture
def tiny_run(tmp_path: Path) -> tuple[Path, Path]:
    """Six short chats and a config that skips the after-training samples (slow, not tested)."""
    data = write_tiny_chats(tmp_path / "tiny.jsonl")
    config = tmp_path / "run.yaml"
    config.write_text("max_samples: 0\nsave_every: 100\n", encoding="utf-8")
    return data, config


def common_flags(config: Path) -> list[str]:
    return ["--config", str(config), "--batch-size", "1", "--max-steps", str(STEPS),
            "--max-length", "64", "--precision", "fp32", "--lora-r", "4", "--seed", "3",
            "--json"]


def step_values(run_dir: str, name: str) -> list[float]:
    lines = Path(run_dir, "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)[name] for line in lines if name in json.loads(line)]


def step_losses(run_dir: str) -> list[float]:
    return step_values(run_dir, "train_loss")


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_at_the_same_global_batch(
        tiny_run: tuple[Path, Path], capfd: pytest.CaptureFixture[str]) -> None:
    data, config = tiny_run
    assert main(["train", str(data), "--nproc", "2", *common_flags(config)]) == 0
    out = capfd.readouterr().out.strip().splitlines()
    assert len(out) == 1, "rank 1 must print nothing: one JSON object on stdout"
    two = json.loads(out[0])

    assert main(["train", str(data), "--grad-accum", "2", *common_flags(config)]) == 0
    one = json.loads(capfd.readouterr().out.strip().splitlines()[-1])

    assert two["status"] == one["status"] == "succeeded"
    losses_two, losses_one = step_losses(two["run_dir"]), step_losses(one["run_dir"])
    assert len(losses_two) == len(losses_one) == STEPS
    assert losses_two == pytest.approx(losses_one, abs=TOLERANCE)
    assert two["metrics"]["trained_tokens"] == one["metrics"]["trained_tokens"], \
        "same examples seen"
    # each process counts its own hits: summed over both, the step's accuracy is the same
    accuracy = "train_mean_token_accuracy"
    assert step_values(two["run_dir"], accuracy) == pytest.approx(
        step_values(one["run_dir"], accuracy), abs=0.02)
    registry = open_registry()
    assert sorted(job.id for job in registry.list_jobs()) == sorted([two["id"], one["id"]]), \
        "rank 1 registers no job of its own"
    assert (Path(two["run_dir"]) / "adapter" / "adapter_config.json").is_file()


def test_cpu_launch_is_torchrun_over_gloo_with_the_cores_shared() -> None:
    command, env = launch.launch_command(2, ["train", "x.jsonl"], gpus=0, cpu_count=8,
                                         port=29999)
    assert command[1:3] == ["-m", "accelerate.commands.launch"]
    assert "--multi_gpu" in command and "--cpu" not in command  # --cpu means one process
    assert command[command.index("--num_processes") + 1] == "2"
    assert command[command.index("--num_cpu_threads_per_process") + 1] == "4"
    assert command[-4:] == ["-m", "tunelab", "train", "x.jsonl"]
    assert "OMP_WAIT_POLICY" in env  # PASSIVE unless the user chose otherwise


def test_gpu_launch_is_plain_ddp_and_refuses_more_processes_than_gpus() -> None:
    command, _ = launch.launch_command(4, ["train", "x.jsonl"], gpus=4, port=29999)
    assert "--multi_gpu" in command and "--num_cpu_threads_per_process" not in command
    with pytest.raises(UsageError, match="only 2 GPU"):
        launch.launch_command(4, ["train", "x.jsonl"], gpus=2)


def test_nproc_below_one_is_a_usage_error(tiny_run: tuple[Path, Path], capsys) -> None:
    data, config = tiny_run
    assert main(["train", str(data), "--nproc", "0", "--config", str(config)]) == 2
    assert "--nproc 0" in capsys.readouterr().err


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=lambda path: path.name)
def test_shipped_accelerate_configs_load_with_accelerates_own_parser(path: Path) -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))
    assert config.num_machines == 1 and config.num_processes >= 2
    file = (config.deepspeed_config or {}).get("deepspeed_config_file")
    if file:  # relative to the repo root, where the README says to launch from
        assert json.loads((REPO / file).read_text())["train_micro_batch_size_per_gpu"]
