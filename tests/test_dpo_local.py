"""DPO on the local trainer, on the embedded SmolLM2-135M: the first loss is ln 2 (policy ==
reference), a learnable preference is learned on held-out pairs, resume after kill -9
repeats every loss, the reference log-probabilities are kept and reused, --from a job and
--full train, and a DPO job exports and chats like any other.

The rule to learn: the preferred answer ends with "friend", the other with one of seven
words. The base model ranks "friend" above three of them (buddy, pal, mate) and below the
other four (sir, dear, folks, everyone), so it starts near 0.5 on held-out pairs, whatever
the thing asked about. One trained job is shared by the module's tests.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import copy_registry
from test_train_local import losses, result_of, wait_for_checkpoint
from tunelab.cli import main
from tunelab.local import model_source
from tunelab.local.pair_scores import encode_pairs, pair_logps, reward_accuracy
from tunelab.local.reference_logps import cache_key, read_cached
from tunelab.registry import open_registry
from tunelab.registry.metrics import (
    STEP_METRICS,
    TRAIN_REWARD_ACCURACY,
    VALID_PREFERRED_LOGP,
    VALID_REWARD_ACCURACY,
)

pytestmark = pytest.mark.slow

FAVOURED, DISFAVOURED = ("buddy", "pal", "mate"), ("sir", "dear", "folks", "everyone")
TRAIN_THINGS = ["apples", "rivers", "books", "cats", "trains", "songs", "lamps", "boats"]
HELD_OUT = ["clouds", "bridges", "candles", "coins", "stars", "shoes", "birds", "maps"]
LN2 = math.log(2)
ARGS = ["--method", "dpo", "--max-steps", "4", "--batch-size", "4", "--max-length", "32",
        "--save-every", "2", "--precision", "fp32", "--seed", "3", "--lora-r", "8",
        "--learning-rate", "2e-3", "--warmup-ratio", "0"]


def pair(thing: str, other: str) -> dict:
    return {"input": {"messages": [{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": f"{thing.title()}?"}]},
            "preferred_output": [{"role": "assistant", "content": f"{thing.title()}, friend."}],
            "non_preferred_output": [{"role": "assistant",
                                      "content": f"{thing.title()}, {other}."}]}


def pairs(things: list[str], shift: int = 0) -> list[dict]:
    # Favoured and disfavoured words alternate, so the base ranks about half right.
    words = [word for couple in zip(FAVOURED * 2, DISFAVOURED * 2, strict=False)
             for word in couple]
    return [pair(thing, words[(index + shift) % len(words)])
            for index, thing in enumerate(things)]


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def data(folder: Path) -> list[str]:
    """The training command's data arguments (16 pairs, 8 held out), written to `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    train = write(folder / "train.jsonl", pairs(TRAIN_THINGS) + pairs(TRAIN_THINGS, 3))
    valid = write(folder / "valid.jsonl", pairs(HELD_OUT, 1))
    (folder / "cfg.json").write_text(json.dumps({"max_samples": 0}))
    return [str(train), "--validation-file", str(valid), "--config", str(folder / "cfg.json")]


@pytest.fixture(scope="module")
def dpo_home(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> dict:
    """One 4-step DPO run (LoRA) in a home of its own; later runs in that home share its
    reference log-probabilities."""
    folder = tmp_path_factory.mktemp("dpo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNELAB_HOME", str(folder / "home"))
        patch.setenv("TUNELAB_CACHE_DIR", str(shared_cache))
        patch.setenv("HF_HUB_OFFLINE", "1")
        args = ["train", *data(folder / "data"), *ARGS, "--json", "--yes"]
        assert main(args) == 0
        [job] = open_registry(folder / "home" / "registry.sqlite").list_jobs()
    return {"home": folder / "home", "job": job, "args": args}


@pytest.fixture
def in_dpo_home(dpo_home: dict, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("TUNELAB_HOME", str(dpo_home["home"]))
    return dpo_home


def log_of(run_dir: Path) -> str:
    return (Path(run_dir) / "train.log").read_text()


def test_first_loss_is_ln2_and_metrics_speak_the_vocabulary(dpo_home: dict) -> None:
    job = dpo_home["job"]
    assert job.status == "succeeded"
    steps = losses(Path(job.run_dir))
    assert sorted(steps) == [1, 2, 3, 4]
    assert abs(steps[1] - LN2) < 1e-4, steps  # policy == reference, dropout off
    assert steps[4] < steps[1]
    lines = [json.loads(line) for line in
             (Path(job.run_dir) / "metrics.jsonl").read_text().splitlines()]
    assert all(set(line) <= set(STEP_METRICS) for line in lines)
    assert lines[0][TRAIN_REWARD_ACCURACY] == 0.0  # no reward yet: no pair ranked right
    assert {VALID_REWARD_ACCURACY, VALID_PREFERRED_LOGP} <= set(job.metrics)
    assert "reference log-probs: computed in" in log_of(job.run_dir)


def test_held_out_reward_accuracy_rises_from_about_half(dpo_home: dict) -> None:
    from tunelab.local.inference import load_chat_model

    rows = pairs(HELD_OUT, 1)
    tokenizer = model_source.load_tokenizer(None)
    before = reward_accuracy(pair_logps(model_source.load_model(None), tokenizer, rows))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNELAB_HOME", str(dpo_home["home"]))
        tuned = load_chat_model(dpo_home["job"].id)
    after = reward_accuracy(pair_logps(tuned.model, tuned.tokenizer, rows))
    assert 0.25 <= before <= 0.75, before
    assert after >= 0.8, (before, after)


def test_resume_after_kill_9_repeats_every_loss_from_cached_references(
        in_dpo_home: dict, capsys: pytest.CaptureFixture) -> None:
    # The same run, checkpointed after every step so that it is killed after the first.
    home, args = in_dpo_home["home"], [*in_dpo_home["args"], "--save-every", "1"]
    process = subprocess.Popen([sys.executable, "-m", "tunelab", *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run_dir = wait_for_checkpoint(home, process, step=1)
    finally:
        process.kill()  # SIGKILL: no handler runs, nothing gets flushed
        process.wait()
    assert main(["train", "--resume", run_dir.name, "--json"]) == 0
    assert result_of(capsys)["status"] == "succeeded"
    expected, resumed = losses(Path(in_dpo_home["job"].run_dir)), losses(run_dir)
    assert sorted(resumed) == sorted(expected)
    for step, loss in expected.items():
        assert abs(resumed[step] - loss) < 1e-4, (step, resumed[step], loss)
    # The second run and its resume read the first run's reference log-probabilities.
    said = [line for line in log_of(run_dir).splitlines() if "reference log-probs" in line]
    assert len(said) == 2 and all("cached (24 pairs)" in line for line in said), said


def test_the_cache_key_changes_with_the_data_and_the_length(in_dpo_home: dict) -> None:
    tokenizer = model_source.load_tokenizer(None)
    identity = {"model": "m", "adapter": None}
    rows = pairs(TRAIN_THINGS)
    encoded = encode_pairs(tokenizer, rows, max_length=32, source="t")
    key = cache_key(encoded, identity, 32)
    assert key == cache_key(encode_pairs(tokenizer, rows, max_length=32, source="t"),
                            identity, 32)
    changed = [cache_key(encoded, identity, 24),
               cache_key(encode_pairs(tokenizer, rows, max_length=24, source="t"), identity,
                         24),
               cache_key(encode_pairs(tokenizer, pairs(TRAIN_THINGS, 1), max_length=32,
                                      source="t"), identity, 32),
               cache_key(encoded, {"model": "m", "adapter": [("a", 1, "x")]}, 32)]
    assert len({key, *changed}) == 5
    assert all(read_cached(other, len(rows)) is None for other in changed)


def test_dpo_from_an_sft_job_starts_at_ln2(tiny_job: dict, tunelab_home: Path,
                                           tmp_path: Path) -> None:
    train = write(tmp_path / "prefs.jsonl", pairs(TRAIN_THINGS[:4]))
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps({"max_samples": 0}))
    assert main(["train", str(train), "--config", str(config), "--method", "dpo", "--from",
                 tiny_job["id"], "--max-steps", "1", "--batch-size", "4", "--max-length", "32",
                 "--precision", "fp32", "--json", "--yes"]) == 0
    [job] = [job for job in open_registry().list_jobs() if job.id != tiny_job["id"]]
    assert job.status == "succeeded" and job.config_dict()["from_job"] == tiny_job["id"]
    assert abs(losses(Path(job.run_dir))[1] - LN2) < 1e-4
    # It went on from the SFT job's adapter (rank 4 there; this run asked for none).
    adapter = json.loads((Path(job.run_dir) / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 4


def test_full_dpo_trains_a_step_on_the_cached_references(in_dpo_home: dict,
                                                         tmp_path: Path) -> None:
    args = in_dpo_home["args"]
    train_args = args[1:args.index("--validation-file")]
    config = args[args.index("--config") + 1]
    assert main(["train", *train_args, "--config", config, "--method", "dpo", "--full",
                 "--max-steps", "1", "--batch-size", "2", "--max-length", "32",
                 "--learning-rate", "1e-5", "--save-every", "1000", "--precision", "fp32",
                 "--output-dir", str(tmp_path / "full"), "--json", "--yes"]) == 0
    step = losses(tmp_path / "full")
    assert list(step) == [1] and abs(step[1] - LN2) < 1e-4
    assert "reference log-probs: cached (16 pairs)" in log_of(tmp_path / "full")
    assert (tmp_path / "full" / "model" / "config.json").is_file()


def test_a_dpo_job_exports_and_chats(dpo_home: dict, tunelab_home: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    copy_registry(dpo_home["home"], tunelab_home)
    job = dpo_home["job"].id
    assert main(["export", job, "-o", str(tmp_path / "out"), "--format", "adapter"]) == 0
    assert (tmp_path / "out" / "adapter_config.json").is_file()
    capsys.readouterr()
    assert main(["chat", job, "-m", "Apples?", "--max-new-tokens", "4", "--json"]) == 0
    assert result_of(capsys)


def test_the_per_row_chunked_loss_matches_plain_cross_entropy() -> None:
    # The kernel's per-row path (DPO sums token losses per sequence, then weighs sequences
    # unequally): values and both gradients as F.cross_entropy gives them, across chunks.
    import torch

    from tunelab.local.kernels.chunked_loss import projected_token_losses

    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(7, 5, generator=generator, requires_grad=True)
    weight = torch.randn(11, 5, generator=generator, requires_grad=True)
    targets = torch.randint(0, 11, (7,), generator=generator)
    scales = torch.randn(7, generator=generator)
    workspace = torch.empty(3, 11)  # 3 rows a chunk: 7 rows make three chunks
    ours = projected_token_losses(hidden, weight, targets, workspace)
    (ours * scales).sum().backward()
    got = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    plain = torch.nn.functional.cross_entropy(hidden @ weight.t(), targets, reduction="none")
    (plain * scales).sum().backward()
    assert torch.allclose(ours, plain, atol=1e-5)
    assert torch.allclose(got[0], hidden.grad, atol=1e-5)
    assert torch.allclose(got[1], weight.grad, atol=1e-5)
