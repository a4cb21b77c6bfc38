"""The embedded default model converts once and reloads fast; hub ids never download."""

from __future__ import annotations

import pytest

from tunelab.errors import UsageError
from tunelab.local import model_source


@pytest.mark.slow
def test_embedded_model_converts_once_and_keeps_chat_template():
    first = model_source.resolve_model_dir(None)
    assert (first / "model.safetensors").is_file()
    assert model_source.resolve_model_dir(model_source.DEFAULT_MODEL) == first
    tokenizer = model_source.load_tokenizer(None)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                         add_generation_prompt=True)
    assert text.rstrip().endswith("<|im_start|>assistant")
    model = model_source.load_model(None)
    assert getattr(model, "hf_quantizer", None) is None


def test_uncached_hub_id_offline_fails_with_the_fix():
    # conftest sets HF_HUB_OFFLINE=1: a hub id not in the cache is refused without a request
    with pytest.raises(UsageError) as caught:
        model_source.resolve_model_dir("nobody-here/no-such-model")
    line = caught.value.render()
    assert "nobody-here/no-such-model" in line and "unset HF_HUB_OFFLINE" in line


@pytest.mark.parametrize(("name", "parsed"), [
    ("Qwen/Qwen2.5-0.5B-Instruct", ("Qwen/Qwen2.5-0.5B-Instruct", None)),
    ("org/repo-GGUF:Q4_K_M", ("org/repo-GGUF", "Q4_K_M")),
    ("org/repo-GGUF:model.Q8_0.gguf", ("org/repo-GGUF", "model.Q8_0.gguf")),
    ("./models/x", None), ("a/b/c", None), ("org/", None), ("org/repo:", None),
])
def test_hub_ids_are_told_from_paths(name, parsed):
    from tunelab.local import hub

    found = hub.parse(name)
    assert (found.repo_id, found.gguf) == parsed if parsed else found is None


@pytest.mark.parametrize("bad", ["missing.gguf", "./no/such/folder"])
def test_bad_paths_are_usage_errors(bad, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError):
        model_source.resolve_model_dir(bad)


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(UsageError, match="config.json"):
        model_source.resolve_model_dir(str(tmp_path))
