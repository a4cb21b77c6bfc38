"""`tunelab compare/test/chat` against remote models, end to end through the real OpenAI SDK.

The remote is a loopback OpenAI-compatible endpoint declared in providers.yaml, standing in
for OpenAI/Kimi: a tuned model (`ft:` name) answers with the reference, its base does not,
and three judges (fair, position-biased, broken) score them.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tunelab.cli import main
from tunelab.registry import JobRecord, open_registry

SYSTEM = "Ты Наташа, коуч."
REFERENCES = {
    "Я потерялась.": "Потерялась? Значит, старая карта больше не ведёт. Нарисуй новую.",
    "I feel stuck.": "Stuck is a door you keep [pushing]. Try pulling [/]",  # not rich markup
    "Мне скучно жить.": "Скука — это голод души. Чем ты её кормишь?",
}
BASE_ANSWER = "I don't know."
JOB = "ftjob-remote1"
TUNED = f"ft:chatty-base:natasha:{JOB}"


def _verdict(model: str, prompt: str) -> str:
    if model == "judge-broken":
        return "I would rather not say."
    candidates = re.findall(r"\[([A-Z])\]\n(.*?)(?=\n\n\[[A-Z]\]|\n\nReply with JSON)", prompt,
                            re.DOTALL)
    scores = {}
    for position, (letter, text) in enumerate(candidates):
        if model == "judge-biased":  # always prefers whatever it reads first
            scores[letter] = {"persona": 8 if position == 0 else 4, "helpfulness": 5}
        else:
            good = text.strip() in REFERENCES.values()
            scores[letter] = {"persona": 9 if good else 2, "helpfulness": 8 if good else 3}
    return json.dumps({"scores": scores, "rationale": "the first sounds like her"})


def _answer(request: dict) -> str:
    model, messages = request["model"], request["messages"]
    if model.startswith("judge"):
        return _verdict(model, messages[-1]["content"])
    if model.startswith("ft:"):
        return REFERENCES[messages[-1]["content"]]
    return BASE_ANSWER


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(request)  # type: ignore[attr-defined]
        if request["messages"][-1]["content"] == "boom":
            return self._send(400, {"error": {"message": "content refused", "type": "invalid",
                                              "code": "content_filter"}})
        self._send(200, {
            "id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()),
            "model": request["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": _answer(request)}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150},
        })

    def _send(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def remote(tunelab_home, tmp_path):
    """A loopback endpoint `mylab`, priced, with a tuned job on it in the registry."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    tunelab_home.mkdir(parents=True, exist_ok=True)
    (tunelab_home / "providers.yaml").write_text(f"mylab:\n  base_url: {base_url}\n")
    (tunelab_home / "pricing.json").write_text(json.dumps({"models": [{
        "provider": "mylab", "model": "chatty-base", "training_per_1m": 1.0,
        "input_per_1m": 1.0, "output_per_1m": 2.0, "max_train_tokens": 4096,
        "as_of": "2026-11-22", "source": "test"}]}))
    valid = tmp_path / "valid.jsonl"
    valid.write_text("".join(json.dumps({"messages": [
        {"role": "system", "content": SYSTEM}, {"role": "user", "content": question},
        {"role": "assistant", "content": answer}]}, ensure_ascii=False) + "\n"
        for question, answer in REFERENCES.items()), encoding="utf-8")
    now = time.time()
    with open_registry() as registry:
        registry.create_job(JobRecord(
            id=JOB, provider="mylab", status="succeeded", created_at=now, updated_at=now,
            endpoint=base_url, base_model="chatty-base", fine_tuned_model=TUNED,
            training_file=str(valid), validation_file=str(valid)))
        for step, loss in enumerate([2.5, 1.9, 1.4], 1):
            registry.add_metrics(JOB, step, {"train_loss": loss, "valid_loss": loss + 0.2})
    yield server
    server.shutdown()


def _run_json(capsys, argv: list[str]) -> dict:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def test_compare_base_and_tuned_job_scores_metrics_and_writes_the_report(remote, capsys,
                                                                          tmp_path):
    report = tmp_path / "out" / "report.html"
    result = _run_json(capsys, ["compare", "base", JOB, "--report", str(report)])
    assert result["eval_file"].endswith("valid.jsonl")  # the job's validation file
    assert result["examples"] == 3
    base, tuned = result["models"]
    assert (base["label"], base["spec"]["model"]) == ("base", "chatty-base")
    assert (tuned["label"], tuned["spec"]["model"]) == (JOB, TUNED)
    assert tuned["metrics"]["chrf"] == 100.0 and tuned["metrics"]["rouge_l"] == 1.0
    assert tuned["metrics"]["length_ratio"] == 1.0
    assert base["metrics"]["chrf"] < 20 and base["metrics"]["rouge_l"] < 0.2
    # 100 prompt tokens at $1/1M plus 50 completion tokens at $2/1M, times 1,000 requests
    assert tuned["metrics"]["cost_per_1k_requests"] == pytest.approx(0.2)
    assert "valid_loss" not in tuned["metrics"]  # held-out loss needs the weights: local only
    assert [a["text"] for a in base["answers"]] == [BASE_ANSWER] * 3
    # every model was asked with the same recorded settings
    settings = {(r["temperature"], r["top_p"], r["seed"], r["max_tokens"])
                for r in remote.requests}
    assert settings == {(0.0, 1.0, 0, 128)}
    assert result["settings"] == {"max_new_tokens": 128, "temperature": 0.0, "top_p": 1.0,
                                  "seed": 0, "repetition_penalty": None}  # the model's own
    assert all("repetition_penalty" not in r for r in remote.requests)  # not OpenAI's
    html = report.read_text(encoding="utf-8")
    assert result["report"] == str(report)
    for text in ("base", JOB, TUNED, "Скука — это голод души.", BASE_ANSWER.replace("'", "&#x27;"),
                 "data:image/png;base64,", "chrF 100.0"):  # per answer, too
        assert text in html


def test_a_rerun_is_answered_from_the_cache(remote, capsys):
    argv = ["compare", "base", JOB, "--limit", "2"]
    first = _run_json(capsys, argv)
    asked = len(remote.requests)
    assert first["cache"] == {"hits": 0, "misses": 4} and asked == 4
    second = _run_json(capsys, argv)
    assert second["cache"] == {"hits": 4, "misses": 0}
    assert len(remote.requests) == asked  # nobody was asked, nobody paid twice
    assert all(a["cached"] for m in second["models"] for a in m["answers"])
    assert [m["answers"][0]["text"] for m in second["models"]] == \
        [m["answers"][0]["text"] for m in first["models"]]
    _run_json(capsys, [*argv, "--seed", "1"])  # other settings: asked again
    assert len(remote.requests) == asked + 4


def test_the_judge_reads_both_orders_and_keeps_its_rationale(remote, capsys):
    result = _run_json(capsys, ["compare", "base", JOB, "--judge", "mylab:judge-fair"])
    base, tuned = (model["judge"] for model in result["models"])
    assert tuned["persona"] == 9 and tuned["helpfulness"] == 8
    assert base["persona"] == 2 and tuned["judged"] == 6 and tuned["unparsed"] == 0
    verdicts = result["items"][0]["verdicts"]
    assert [v["order"] for v in verdicts] == [["base", JOB], [JOB, "base"]]
    assert verdicts[0]["rationale"] == "the first sounds like her"


def test_swapping_the_order_cancels_a_judge_that_prefers_the_first_answer(remote, capsys):
    result = _run_json(capsys, ["compare", "base", JOB, "--judge", "mylab:judge-biased"])
    assert [model["judge"]["persona"] for model in result["models"]] == [6.0, 6.0]


def test_a_judge_that_answers_nonsense_leaves_scores_empty(remote, capsys):
    result = _run_json(capsys, ["compare", "base", JOB, "--judge", "mylab:judge-broken"])
    judged = result["models"][1]["judge"]
    assert judged["persona"] is None and judged["unparsed"] == 6


def test_terminal_output_shows_answers_side_by_side_and_the_metrics(remote, capsys):
    assert main(["compare", "base", JOB, "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert "Я потерялась." in out and "reference" in out and "chrF" in out
    assert "answer cache: 0 hits, 2 misses" in out


def test_test_and_chat_one_shot_on_a_remote_tuned_model(remote, capsys, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Я потерялась.\nI feel stuck.\n", encoding="utf-8")
    tested = _run_json(capsys, ["test", JOB, "--prompts", str(prompts)])
    assert [row["text"] for row in tested["results"]] == [
        REFERENCES["Я потерялась."], REFERENCES["I feel stuck."]]
    # a tuned job is asked under the system prompt its training data used
    assert [row["system"] for row in tested["results"]] == [SYSTEM, SYSTEM]
    assert remote.requests[-1]["messages"][0] == {"role": "system", "content": SYSTEM}
    chatted = _run_json(capsys, ["chat", TUNED, "-m", "Мне скучно жить.", "--system", "Be brief."])
    assert chatted["text"] == REFERENCES["Мне скучно жить."] and chatted["system"] == "Be brief."
    assert remote.requests[-1]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert main(["chat", f"mylab:{TUNED}", "-m", "I feel stuck."]) == 0  # no job: no system
    assert capsys.readouterr().out.strip() == REFERENCES["I feel stuck."]
    assert remote.requests[-1]["messages"] == [{"role": "user", "content": "I feel stuck."}]


def test_test_checks_each_answers_language_as_compare_does(remote, capsys, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Я потерялась.\nI feel stuck.\n", encoding="utf-8")
    tested = _run_json(capsys, ["test", "mylab:chatty-base", "--prompts", str(prompts)])
    russian, english = tested["results"]  # "I don't know." to both
    assert (russian["same_language"], english["same_language"]) == (False, True)
    assert not russian["mixed_script"] and not russian["loop"]
    assert tested["summary"] == {"loop_share": 0.0, "distinct_2": 0.5,
                                 "language_match": 0.5, "mixed_script_answers": 0}
    assert main(["test", "mylab:chatty-base", "--prompts", str(prompts)]) == 0
    out = capsys.readouterr().out
    assert out.count("not in the question's language") == 1
    assert "2 answers: 0% in a loop, 50% in the question's language, 0 mixing scripts" in out


def test_chat_repl_keeps_history_until_reset(remote, capsys, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("Я потерялась.\nboom\nI feel stuck.\n"
                                                  "/reset\nМне скучно жить.\n/exit\n"))
    assert main(["chat", JOB]) == 0
    sent = [len(request["messages"]) for request in remote.requests]
    # system + the turns so far; a refused turn is not kept; /reset keeps only the system
    assert sent == [2, 4, 4, 2]
    assert remote.requests[3]["messages"][0]["content"] == SYSTEM
    captured = capsys.readouterr()
    assert "content refused" in captured.err and "Traceback" not in captured.err
    assert REFERENCES["I feel stuck."] in captured.out.replace("\n", "")


def test_an_empty_eval_file_is_a_data_error(remote, capsys, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    assert main(["compare", JOB, "--eval", str(empty)]) != 0
    assert "Traceback" not in capsys.readouterr().err


def test_bad_input_is_one_line_and_an_exit_code(remote, capsys, tmp_path):
    assert main(["compare", "openai:gpt-4o-mini", "--eval", str(tmp_path / "none.jsonl")]) == 2
    assert main(["compare", "mylab:chatty-base"]) == 2
    err = capsys.readouterr().err
    assert "--eval" in err and "Traceback" not in err
    valid = remote.requests  # nothing was asked for either
    assert valid == []
    assert main(["compare", "openai:gpt-4o-mini", "--eval",
                 str(tmp_path / "valid.jsonl")]) == 2  # no OPENAI_API_KEY in tests
    assert "OPENAI_API_KEY" in capsys.readouterr().err


# held-out preference pairs (issue 23) ---------------------------------------------------
FLUENT = "Скука — это голод души. Чем ты её кормишь?"
GARBLED = "Зщк хъв ьёюж цщ ыъэ — фщь? Щъыь ёжэю хъц."  # as long, no language at all


def _prefs(path, pairs: list[tuple[str, str, str]]):
    path.write_text("".join(json.dumps({
        "input": {"messages": [{"role": "system", "content": SYSTEM},
                               {"role": "user", "content": question}]},
        "preferred_output": [{"role": "assistant", "content": preferred}],
        "non_preferred_output": [{"role": "assistant", "content": other}]},
        ensure_ascii=False) + "\n" for question, preferred, other in pairs), encoding="utf-8")
    return path


def test_compare_on_pairs_says_why_a_remote_model_has_no_reward_accuracy(
        remote, capsys, tmp_path):
    prefs = _prefs(tmp_path / "prefs.jsonl", [("Мне скучно жить.", FLUENT, GARBLED),
                                              ("Я потерялась.", REFERENCES["Я потерялась."],
                                               BASE_ANSWER)])
    result = _run_json(capsys, ["compare", JOB, "--eval", str(prefs)])
    assert result["eval_format"] == "preference" and result["examples"] == 2
    [tuned] = result["models"]
    # answers are scored against the preferred ones, as chat eval data's references
    assert [item["reference"] for item in result["items"]] == [FLUENT,
                                                               REFERENCES["Я потерялась."]]
    assert tuned["metrics"]["chrf"] == 100.0
    assert tuned["metrics"]["reward_accuracy"] is None
    assert "log-probabilities" in tuned["unavailable"]["reward_accuracy"]
    assert main(["compare", JOB, "--eval", str(prefs)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"reward accuracy \(pairs\)\s+│?\s*n/a", out)
    assert f"reward accuracy (pairs) of {JOB}: n/a: a remote API returns no" in out


@pytest.mark.slow
def test_compare_on_pairs_gives_a_local_models_reward_accuracy(remote, capsys, tmp_path):
    # the embedded model finds the fluent answer likelier than the garbled one, whichever
    # the file prefers: one pair right, one wrong
    prefs = _prefs(tmp_path / "prefs.jsonl", [("Мне скучно жить.", FLUENT, GARBLED),
                                              ("Мне скучно жить!", GARBLED, FLUENT)])
    result = _run_json(capsys, ["compare", "local:default", "mylab:chatty-base", "--eval",
                                str(prefs), "--max-new-tokens", "4"])
    local, cloud = result["models"]
    assert local["metrics"]["reward_accuracy"] == 0.5 and local["metrics"]["scored_pairs"] == 2
    assert local["unavailable"] == {} and local["metrics"]["valid_loss"] > 0
    assert cloud["metrics"]["reward_accuracy"] is None and cloud["unavailable"]
    again = _run_json(capsys, ["compare", "local:default", "--eval", str(prefs),
                               "--max-new-tokens", "4"])
    assert again["models"][0]["metrics"]["reward_accuracy"] == 0.5  # from the cache
