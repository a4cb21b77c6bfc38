"""Chat over HTTP (`tunelab serve`): what a client may name, what it may send, how much.

The promises tested here (SECURITY.md repeats them):
- a chat `model` is one of the names GET /v1/models lists (the embedded model, succeeded local
  fine-tunes, their checkpoints, aliases); anything else, a path above all, is the same 404
  without a file being looked at or a model loaded;
- a malformed request is a 400, never a 500;
- a prompt longer than the model's context is a 400 that gives both numbers;
- generation waits in a bounded queue: full or waited too long, it is a 503 with Retry-After;
- `--alias OLD=JOB` (or a job's `replaces` metadata) answers under an old model name.
"""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

import httpx
import openai
import pytest

from faultproxy import serve_in_thread, serve_process
from tunelab.cli import main
from tunelab.local import model_source
from tunelab.registry import Checkpoint, JobRecord, open_registry
from tunelab.server import ServeSettings, create_app
from tunelab.server.chat import completion_budget
from tunelab.server.errors import ApiError

KEY = "test-chat-key-41d2"
MODEL = model_source.DEFAULT_MODEL
OLD_NAME = "ft:gpt-4o-mini-2024-07-18:acme:natasha:AbC123"
RETIRED = "ft:gpt-4.1-mini-2025-04-14:acme:natasha-v0:Zz9"
JOB = "ftjob-natasha"
TUNED = f"ft:SmolLM2-135M-Instruct:natasha:{JOB}"
CHECKPOINT = f"{TUNED}:ckpt-step-000002"
SAY_HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture
def app_and_url(tunelab_home: Path, request: pytest.FixtureRequest):
    settings = ServeSettings(api_key=KEY, run_worker=False,
                             **getattr(request, "param", {}))
    app = create_app(settings)
    with serve_in_thread(app) as port:
        yield app, f"http://127.0.0.1:{port}"


def post_chat(url: str, body: dict) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=300,
                      headers={"Authorization": f"Bearer {KEY}"})


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"])
    return body["error"]


# item 2: only listed names ---------------------------------------------------------------
def test_a_chat_model_is_a_listed_name_never_a_path(app_and_url, tmp_path: Path) -> None:
    _, url = app_and_url
    model_folder = tmp_path / "hf-model"
    model_folder.mkdir()
    (model_folder / "config.json").write_text('{"model_type": "llama"}', encoding="utf-8")
    gguf = tmp_path / "copy.gguf"
    gguf.symlink_to(model_source.embedded_gguf_path())
    names = ["/etc", "/nonexist/x", "", "   ", str(gguf), str(model_folder), "../..",
             "x" * 5000, "default", "HuggingFaceTB/SmolLM2-360M-Instruct",
             "ftjob-missing", f"{TUNED}:ckpt-step-000009"]
    messages = set()
    for name in names:
        response = post_chat(url, {"model": name, "messages": SAY_HELLO, "max_tokens": 1})
        assert response.status_code == 404, (name[:40], response.text[:300])
        error = error_of(response)
        assert (error["code"], error["param"]) == ("model_not_found", "model")
        # The same sentence whatever the name is: the answer says nothing about the disk.
        messages.add(error["message"].replace(repr(name[:80]), "NAME"))
    assert len(messages) == 1, messages
    assert "config" not in messages.pop()


def test_models_lists_fine_tunes_checkpoints_and_aliases(tunelab_home: Path,
                                                         tmp_path: Path) -> None:
    _job_with_weights(tmp_path, adapter=None)
    settings = ServeSettings(api_key=KEY, run_worker=False, aliases=((OLD_NAME, JOB),))
    with serve_in_thread(create_app(settings)) as port:
        client = openai.OpenAI(api_key=KEY, base_url=f"http://127.0.0.1:{port}/v1",
                               max_retries=0)
        listed = [model.id for model in client.models.list()]
        assert listed == [MODEL, TUNED, CHECKPOINT, RETIRED, OLD_NAME]
        assert client.models.retrieve(CHECKPOINT).id == CHECKPOINT
        assert client.models.retrieve(OLD_NAME).owned_by == "tunelab"
        # the names the checkpoints route gives are the ones the models route lists
        listed_ckpts = client.fine_tuning.jobs.checkpoints.list(JOB).data
        assert [c.fine_tuned_model_checkpoint for c in listed_ckpts] == [CHECKPOINT]


def test_aliases_are_checked_when_the_server_starts(tunelab_home: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    _job_with_weights(tmp_path, adapter=None)
    for alias, says in [("no-equals-sign", "OLD=JOB"), (f"{OLD_NAME}=ftjob-nope", "ftjob-nope"),
                        (f"={JOB}", "OLD=JOB"), (f"{MODEL}={JOB}", "already")]:
        assert main(["serve", "--port", "0", "--alias", alias]) == 2, alias
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err, err


# item 9: malformed requests are 400s -----------------------------------------------------
def test_malformed_chat_requests_are_400s(app_and_url) -> None:
    _, url = app_and_url
    user = {"role": "user", "content": "hi"}
    bodies = [
        {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
        {"messages": [user], "seed": 2**70},
        {"messages": [user], "seed": -(2**70)},
        {"messages": [{"role": "wizard", "content": "hi"}]},
        {"messages": [{"role": "user"}]},
        {"messages": [{"role": "user", "content": {"text": "hi"}}]},
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
        {"messages": ["hi"]},
        {"messages": "hi"},
        {"messages": []},
        {"messages": [user], "max_tokens": 0},
        {"messages": [user], "temperature": 3},
    ]
    for body in bodies:
        response = post_chat(url, {"model": MODEL, **body})
        assert response.status_code == 400, (body, response.text)
        error = error_of(response)
        assert error["type"] == "invalid_request_error" and error["message"]


# item 8: context, max_tokens, queue -------------------------------------------------------
def test_completion_budget_fits_the_context() -> None:
    assert completion_budget(100, context=8192, requested=None) == 256
    assert completion_budget(8100, context=8192, requested=None) == 92  # clamped, not refused
    assert completion_budget(100, context=None, requested=50) == 50
    with pytest.raises(ApiError, match=r"8192 tokens.*9000 in the messages"):
        completion_budget(9000, context=8192, requested=None)
    with pytest.raises(ApiError, match=r"8192 tokens.*5000 in the messages, 4096 in the comp"):
        completion_budget(5000, context=8192, requested=4096)
    with pytest.raises(ApiError, match="8192"):
        completion_budget(8192, context=8192, requested=None)  # no room for one token


@pytest.mark.parametrize("app_and_url", [{"chat_queue": 0}], indirect=True)
def test_a_full_queue_answers_503_with_retry_after(app_and_url) -> None:
    app, url = app_and_url
    with app.state.chat.queue.slot():  # another request is generating
        response = post_chat(url, {"model": MODEL, "messages": SAY_HELLO})
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert error_of(response)["code"] == "server_overloaded"


@pytest.mark.parametrize("app_and_url", [{"chat_queue": 1, "chat_wait_s": 0.01}],
                         indirect=True)
def test_a_request_that_waits_too_long_answers_503(app_and_url) -> None:
    app, url = app_and_url
    with app.state.chat.queue.slot():
        response = post_chat(url, {"model": MODEL, "messages": SAY_HELLO})
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"


@pytest.mark.slow
def test_a_prompt_over_the_context_is_a_400_that_counts(app_and_url) -> None:
    _, url = app_and_url
    long = [{"role": "user", "content": "hello " * 9000}]
    response = post_chat(url, {"model": MODEL, "messages": long})
    assert response.status_code == 400
    error = error_of(response)
    counted = re.search(r"context length is 8192 tokens.* resulted in (\d+) tokens",
                        error["message"])
    assert counted and int(counted[1]) > 9000, error["message"]
    assert (error["code"], error["param"]) == ("context_length_exceeded", "messages")
    # far over: the count is a lower bound, from a prefix, and still names the limit
    # (300k words: far over, and under the server's 2 MB limit for a JSON body)
    huge = [{"role": "user", "content": "hello " * 300_000}]
    error = error_of(post_chat(url, {"model": MODEL, "messages": huge}))
    assert "8192" in error["message"] and "at least" in error["message"]
    mid = [{"role": "user", "content": "hello " * 5000}]
    error = error_of(post_chat(url, {"model": MODEL, "messages": mid, "max_tokens": 4096}))
    assert "4096 in the completion" in error["message"]


# issue 14: serving under an old name -------------------------------------------------------
def _job_with_weights(root: Path, adapter: Path | None) -> Path:
    """A succeeded local job in the trainer's layout that replaces RETIRED, with one
    checkpoint (step 2) and its `latest` pointer. Without `adapter` the weights are
    only their small JSON files: enough to list, not to load."""
    run = root / "runs" / JOB
    checkpoint = run / "checkpoints" / "step-000002"
    for folder in (run / "adapter", checkpoint / "adapter"):
        folder.parent.mkdir(parents=True, exist_ok=True)
        if adapter is not None:
            folder.symlink_to(adapter, target_is_directory=True)
        else:
            folder.mkdir()
            (folder / "adapter_config.json").write_text(
                '{"base_model_name_or_path": "default"}', encoding="utf-8")
    now = time.time()
    with open_registry() as registry:
        registry.create_job(JobRecord(
            id=JOB, provider="local", status="succeeded", created_at=now, updated_at=now,
            base_model=MODEL, fine_tuned_model=TUNED, suffix="natasha", run_dir=str(run),
            origin="server", metadata={"replaces": RETIRED}))
        for name, extra in (("step-000002", {}), ("latest", {"points_to": "step-000002"})):
            registry.upsert_checkpoint(Checkpoint(JOB, name, "step", now, 2, 1.0,
                                                  str(checkpoint), extra))
    return run


@pytest.mark.slow
def test_a_listed_checkpoint_answers_in_chat(tunelab_home: Path, tmp_path: Path,
                                             random_lora: Path) -> None:
    _job_with_weights(tmp_path, random_lora)
    with serve_in_thread(create_app(ServeSettings(api_key=KEY, run_worker=False))) as port:
        client = openai.OpenAI(api_key=KEY, base_url=f"http://127.0.0.1:{port}/v1",
                               max_retries=0)
        listed = client.fine_tuning.jobs.checkpoints.list(JOB).data
        name = listed[0].fine_tuned_model_checkpoint
        assert name == CHECKPOINT
        assert _answer(client, name) == (name, _answer(client, TUNED)[1])
        assert name in [model.id for model in client.models.list()]  # as OpenAI lists them


def _answer(client: openai.OpenAI, model: str) -> tuple[str, str]:
    reply = client.chat.completions.create(model=model, messages=SAY_HELLO, max_tokens=6,
                                           temperature=0)
    return reply.model, reply.choices[0].message.content


@pytest.mark.slow
def test_old_names_answer_with_the_replacement_through_the_sdk(
        tunelab_home: Path, tmp_path: Path, random_lora: Path) -> None:
    _job_with_weights(tmp_path, random_lora)
    settings = ServeSettings(api_key=KEY, run_worker=False, aliases=((OLD_NAME, JOB),))
    with serve_in_thread(create_app(settings)) as port:
        client = openai.OpenAI(api_key=KEY, base_url=f"http://127.0.0.1:{port}/v1",
                               max_retries=0)
        name, tuned = _answer(client, TUNED)
        assert name == TUNED and tuned
        assert _answer(client, OLD_NAME) == (OLD_NAME, tuned)  # --alias
        assert _answer(client, RETIRED) == (RETIRED, tuned)  # the registry's `replaces`
        assert _answer(client, CHECKPOINT) == (CHECKPOINT, tuned)  # item 12
        assert _answer(client, MODEL)[1] != tuned  # the alias is not the base model


def _free_ipv6_port() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        sock.bind(("::1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_serve_alias_flag_and_bracketed_ipv6_host(tunelab_home: Path, tmp_path: Path,
                                                  shared_cache: Path,
                                                  random_lora: Path) -> None:
    """The real command: `tunelab serve --host [::1] --alias OLD=JOB`, then the SDK."""
    _job_with_weights(tmp_path, random_lora)
    port = _free_ipv6_port()
    env = {**os.environ, "TUNELAB_HOME": str(tunelab_home), "TUNELAB_SERVE_API_KEY": KEY,
           "TUNELAB_CACHE_DIR": str(shared_cache)}
    log = tmp_path / "serve.log"
    base = f"http://[::1]:{port}"
    args = ["--host", "[::1]", "--port", str(port), "--alias", f"{OLD_NAME}={JOB}"]
    with serve_process(args, base_url=base, env=env, log=log):
        client = openai.OpenAI(api_key=KEY, base_url=base + "/v1", max_retries=0)
        assert OLD_NAME in [model.id for model in client.models.list()]
        name, text = _answer(client, OLD_NAME)
        assert name == OLD_NAME and text
    assert KEY not in log.read_text(errors="replace")


# item 22: keys that can never authenticate --------------------------------------------------
@pytest.mark.parametrize("key", ["   ", "\t", " padded-key "])
def test_a_key_with_surrounding_whitespace_is_refused(key: str, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--host", "0.0.0.0", "--port", "0", "--api-key", key]) == 2
    err = capsys.readouterr().err
    assert "API key" in err and len(err.strip().splitlines()) == 1
    assert key.strip() not in err or not key.strip()
    monkeypatch.setenv("TUNELAB_SERVE_API_KEY", key)
    assert main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "TUNELAB_SERVE_API_KEY" in capsys.readouterr().err
