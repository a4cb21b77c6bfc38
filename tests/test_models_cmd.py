"""`tunelab models`: what is here with its facts and features, a hub model described before
it is downloaded, removal that never takes a model a job needs; and a local job's token
counts with its model's own tokenizer (the dashboard's data panel)."""

from __future__ import annotations

import contextlib
import io
import json
import time

from tunelab.cli import main
from tunelab.local import hub as hub_module
from tunelab.registry import JobRecord, open_registry

pytest_plugins = ["hub_double"]


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def pull(*names: str) -> None:
    for name in names:
        hub_module.ensure(hub_module.parse(name))


def add_local_job(job_id: str, base_model: str) -> None:
    now = time.time()
    with open_registry() as registry:
        registry.create_job(JobRecord(id=job_id, provider="local", status="succeeded",
                                      created_at=now, updated_at=now, base_model=base_model))


def test_models_list_shows_each_models_facts_and_features(hub, monkeypatch):
    pull("tiny/llama", "tiny/plain")
    add_local_job("ftjob-on-tiny", "tiny/llama")
    code, out, err = run(["models", "list", "--json"])
    assert code == 0, err
    models = {item["name"]: item for item in json.loads(out)["models"]}
    embedded = models["HuggingFaceTB/SmolLM2-135M-Instruct"]
    assert embedded["source"] == "embedded"
    tiny, plain = models["tiny/llama"], models["tiny/plain"]
    assert tiny["source"] == "hub cache" and tiny["model_type"] == "llama"
    # hidden 64, 2 layers, tied embeddings: the safetensors headers and the config agree
    assert tiny["parameters_from"] == "safetensors"
    from tunelab.local.catalog import parameter_count, read_config

    assert tiny["parameters"] == parameter_count(read_config(
        hub_module.cached(hub_module.parse("tiny/llama")) / "config.json"))
    assert tiny["context_length"] == 1024 and tiny["chat_template"] is True
    assert tiny["trainer"] and tiny["kernels"] and tiny["gguf_export"] and tiny["ollama"]
    assert tiny["jobs"] == ["ftjob-on-tiny"] and tiny["size_bytes"] > 10**7
    assert plain["chat_template"] is False and not plain["ollama"]

    monkeypatch.setenv("COLUMNS", "80")
    code, table, _ = run(["models"])
    assert code == 0 and "tiny/llama" in table and "train, kernels," in table  # fits 80


def test_models_show_describes_a_hub_model_before_it_is_downloaded(hub):
    code, out, err = run(["models", "show", "tiny/llama", "--json"])
    assert code == 0, err
    shown = json.loads(out)["model"]
    assert shown["source"] == "hub" and shown["parameters_from"] == "config"
    assert shown["size_bytes"] > 10**7 and shown["chat_template"] is True
    assert hub.downloads("model.safetensors") == []
    code, text, _ = run(["models", "show", "tiny/llama"])
    assert "GGUF export:        yes" in text and "chat template:      yes" in text


def test_rm_never_takes_a_model_a_job_needs_without_force(hub):
    pull("tiny/llama", "tiny/plain")
    add_local_job("ftjob-needs-it", "tiny/llama")
    code, _, err = run(["models", "rm", "tiny/llama", "--yes"])
    assert code == 2 and "ftjob-needs-it" in err and "--force" in err
    assert hub_module.cached(hub_module.parse("tiny/llama")) is not None

    code, _, err = run(["models", "rm", "tiny/plain"])  # asks first; nobody to ask here
    assert code == 2 and "--yes" in err
    code, out, _ = run(["models", "rm", "tiny/plain", "--yes", "--json"])
    assert code == 0 and json.loads(out)["freed_bytes"] > 10**7
    assert not hub_module.repo_folder(hub_module.parse("tiny/plain")).exists()

    code, out, _ = run(["models", "rm", "tiny/llama", "--yes", "--force", "--json"])
    assert code == 0 and json.loads(out)["jobs"] == ["ftjob-needs-it"]
    assert hub_module.cached(hub_module.parse("tiny/llama")) is None


def test_the_light_tokenizer_counts_as_the_models_own():
    from conftest import SYSTEM, TRAIN
    from tunelab.data.tokens import ChatTemplateCounter
    from tunelab.local.chat_tokens import for_model
    from tunelab.local.model_source import load_tokenizer

    reference = load_tokenizer(None)  # converts the embedded model (once per session)

    chats = [{"messages": [{"role": "system", "content": SYSTEM},
                           {"role": "user", "content": question},
                           {"role": "assistant", "content": answer}]}
             for question, answer in TRAIN]
    light = ChatTemplateCounter(for_model(None), "m").count(chats)
    assert light == ChatTemplateCounter(reference, "m").count(chats)


def test_the_dashboard_counts_a_local_jobs_data_with_its_models_tokenizer(tiny_job):
    from fastapi.testclient import TestClient

    from tunelab.server.app import create_app
    from tunelab.server.settings import ServeSettings

    app = create_app(ServeSettings(run_worker=False))
    with TestClient(app, base_url="http://127.0.0.1:8000") as http:
        page = http.get(f"/jobs/{tiny_job['id']}").text
    assert "tokens (chat template of HuggingFaceTB/SmolLM2-135M-Instruct)" in page
    assert "o200k_base" not in page


def test_models_list_shows_exports_and_pulled_weights(tmp_path):
    from tunelab.local.model_list import PULLED_FROM

    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64,
              "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "vocab_size": 100, "max_position_embeddings": 512}
    export, pulled = tmp_path / "natasha-merged", tmp_path / "run-pulled"
    for folder in (export, pulled / "model"):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    add_local_job("ftjob-exported", "HuggingFaceTB/SmolLM2-135M-Instruct")
    now = time.time()
    with open_registry() as registry:
        registry.add_event("ftjob-exported", f"exported hf to {export}", type="export",
                           data={"output_dir": str(export), "format": "hf"})
        registry.create_job(JobRecord(
            id="ftjob-pulled", provider="local", status="succeeded", created_at=now,
            updated_at=now, base_model="Qwen/Qwen2.5-0.5B-Instruct",
            fine_tuned_model="natasha-local", run_dir=str(pulled),
            metadata={PULLED_FROM: "together:ft-123"}))
    code, out, _ = run(["models", "list", "--json"])
    models = {item["name"]: item for item in json.loads(out)["models"]}
    assert code == 0 and models[str(export)]["source"] == "export"
    assert models[str(export)]["jobs"] == ["ftjob-exported"]
    assert models[str(export)]["parameters"] == 2 * (64 * 16 * 16 + 3 * 64 * 128 + 128) \
        + 100 * 64 + 64  # from the config: attention, MLP, norms per layer; embeddings
    assert models["natasha-local"]["source"] == "pulled"
    assert models["natasha-local"]["notes"] == ["pulled from together:ft-123"]
