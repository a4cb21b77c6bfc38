"""Hub ids download on first use, through huggingface_hub, from a stand-in hub (HF_ENDPOINT):
only the files a model needs, resumed after a broken connection, gated ones with a token,
none at all offline; the size is shown first and a big download asked about; the dry run
estimates from the config alone; refusals come before any weights are fetched."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections import namedtuple
from pathlib import Path

import pytest

from conftest import TRAIN, write_chats
from tunelab.cli import main
from tunelab.errors import AuthError, UsageError
from tunelab.local import hub as hub_module
from tunelab.local import model_source

pytest_plugins = ["hub_double"]
WEIGHTS = "model.safetensors"


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def serve_extra(hub, tiny_models, tmp_path: Path, repo_id: str, edits: dict) -> Path:
    """A copy of the tiny model under `repo_id` with files added, removed or replaced."""
    folder = tmp_path / repo_id.replace("/", "--")
    shutil.copytree(tiny_models["tiny"], folder)
    for name, content in edits.items():
        path = folder / name
        if content is None:
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
    hub.add(repo_id, folder)
    return folder


def test_a_broken_download_resumes_and_only_the_models_files_come(hub, tiny_models, tmp_path):
    source = serve_extra(hub, tiny_models, tmp_path, "tiny/extras", {
        "README.md": "# card", "onnx/model.onnx": b"\0" * 4096,
        "original/consolidated.pth": b"\0" * 4096})
    hub.break_once("tiny/extras", WEIGHTS)

    folder = model_source.resolve_model_dir("tiny/extras")

    tries = hub.downloads(WEIGHTS)
    assert [t.range for t in tries][0] is None and tries[1].range.startswith("bytes=")
    assert int(tries[1].range[len("bytes="):].rstrip("-")) > 0  # resumed, not restarted
    assert (folder / WEIGHTS).read_bytes() == (source / WEIGHTS).read_bytes()
    fetched = {r.path.rsplit("/", 1)[-1] for r in hub.downloads()}
    assert fetched == {p.name for p in tiny_models["tiny"].iterdir()}  # no card, onnx, .pth
    hub.requests.clear()
    assert model_source.resolve_model_dir("tiny/extras") == folder  # cached: no request
    assert hub.requests == []


def test_a_gated_model_needs_a_token_and_says_where_to_accept_it(hub, monkeypatch, capsys):
    with pytest.raises(AuthError) as refused:
        model_source.resolve_model_dir("tiny/gated")
    line = refused.value.render()
    assert "gated" in line and "accept its licence" in line and "HF_TOKEN" in line
    assert f"{hub.url}/tiny/gated" in line
    assert hub.downloads() == []  # refused before any file
    code, _, err = run(["models", "pull", "tiny/gated", "--yes"])
    assert code == 2 and "is gated" in err and "to download" not in err  # before the size

    monkeypatch.setenv("HF_TOKEN", hub.token)
    folder = model_source.resolve_model_dir("tiny/gated")
    assert (folder / WEIGHTS).is_file()
    assert all(r.authorized for r in hub.downloads())
    assert hub.token not in capsys.readouterr().err


def test_offline_never_asks_the_hub(hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UsageError) as refused:
        model_source.resolve_model_dir("tiny/llama")
    assert "HF_HUB_OFFLINE" in refused.value.render()
    monkeypatch.delenv("HF_HUB_OFFLINE")
    code, _, err = run(["--offline", "models", "pull", "tiny/llama"])
    assert code == 2 and "downloads are off" in err and "Traceback" not in err
    assert hub.requests == []


def test_a_big_download_is_asked_about_and_yes_skips_the_question(hub, monkeypatch):
    monkeypatch.setenv("TUNELAB_ASK_DOWNLOAD_GB", "0.001")  # the tiny model is ~13 MB
    code, _, err = run(["models", "pull", "tiny/llama"])
    assert code == 2 and "not an interactive terminal" in err and "--yes" in err
    assert "MB to download into" in err and str(hub_module.cache_root()) in err
    assert hub.downloads() == []

    code, out, err = run(["models", "pull", "tiny/llama", "--yes", "--json"])
    assert code == 0, err
    assert json.loads(out)["model"]["parameters"] > 0
    assert hub.downloads(WEIGHTS)


def test_too_little_disk_is_refused_before_the_first_byte(hub, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(hub_module.shutil, "disk_usage", lambda _path: usage(10**9, 10**9, 1000))
    with pytest.raises(UsageError, match="free on the disk"):
        model_source.resolve_model_dir("tiny/llama")
    assert hub.downloads() == []


def test_a_gguf_repo_is_named_by_its_quantization(hub, tmp_path):
    folder = tmp_path / "gguf"
    folder.mkdir()
    for name in ("tiny-Q4_K_M.gguf", "tiny-Q8_0.gguf"):
        (folder / name).write_bytes(b"GGUF" + name.encode())
    hub.add("tiny/tiny-GGUF", folder)
    path = hub_module.ensure(hub_module.parse("tiny/tiny-GGUF:Q8_0"))
    assert path.name == "tiny-Q8_0.gguf" and path.read_bytes() == b"GGUFtiny-Q8_0.gguf"
    assert [r.path.rsplit("/", 1)[-1] for r in hub.downloads()] == ["tiny-Q8_0.gguf"]
    with pytest.raises(UsageError, match="matches no file.*tiny-Q4_K_M.gguf"):
        hub_module.ensure(hub_module.parse("tiny/tiny-GGUF:Q2_K"))


def test_the_dry_run_estimates_a_hub_model_from_its_config_alone(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # so that what --offline sets below is undone
    data = write_chats(tmp_path / "train.jsonl", TRAIN)
    code, out, err = run(["train", str(data), "--model", "tiny/llama", "--dry-run", "--json"])
    assert code == 0, err
    report = json.loads(out)
    assert hub.downloads(WEIGHTS) == []  # config and tokenizer only
    assert report["model"]["source"] == "hub" and report["model"]["chat_template"] is True
    estimate = report["estimate_from_config"]
    assert estimate["fits"] and estimate["weights_bytes"] == 4 * report["model"]["parameters"]
    assert estimate["seconds_per_epoch"] > 0 and "estimate" not in report  # nothing timed
    assert report["data"]["train"]["tokens_after_truncation"] > 0
    hub.requests.clear()  # offline, the config and tokenizer it fetched are enough
    code, text, _ = run(["--offline", "train", str(data), "--model", "tiny/llama", "--dry-run"])
    assert code == 0 and "from its config: memory about" in text and "(fits)" in text
    assert hub.requests == []


@pytest.mark.parametrize(("repo", "edits", "said"), [
    ("tiny/plain", None, "no chat template"),
    ("tiny/t5", {"config.json": json.dumps({"model_type": "t5",
                 "architectures": ["T5ForConditionalGeneration"], "d_model": 32,
                 "num_layers": 2, "num_heads": 4, "vocab_size": 100})},
     "not a causal language model"),
    ("tiny/huge", {"config.json": json.dumps({
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 16384,
        "intermediate_size": 53248, "num_hidden_layers": 126, "num_attention_heads": 128,
        "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False})},
     "GB short"),
])
def test_refusals_come_before_any_weights(hub, tiny_models, tmp_path, repo, edits, said):
    if edits is not None:
        serve_extra(hub, tiny_models, tmp_path, repo, edits)
    data = write_chats(tmp_path / "train.jsonl", TRAIN)
    code, _, err = run(["train", str(data), "--model", repo, "--yes"])
    assert code == 2 and said in err and "Traceback" not in err
    assert hub.downloads(WEIGHTS) == []


@pytest.mark.slow
def test_a_real_run_trains_the_downloaded_model(hub, tmp_path):
    data = write_chats(tmp_path / "train.jsonl", TRAIN)
    config = tmp_path / "quiet.json"
    config.write_text(json.dumps({"max_samples": 0}), encoding="utf-8")
    code, out, err = run(["train", str(data), "--model", "tiny/llama", "--config", str(config),
                          "--max-steps", "2", "--batch-size", "2", "--max-length", "64",
                          "--precision", "fp32", "--json", "--yes"])
    assert code == 0, err[-2000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result["status"] == "succeeded" and result["metrics"]["steps"] == 2
    assert "MB to download into" in err and hub.downloads(WEIGHTS)
    adapter = json.loads((Path(result["run_dir"]) / "adapter" / "adapter_config.json")
                         .read_text(encoding="utf-8"))
    assert adapter["base_model_name_or_path"] == "tiny/llama"
