"""Answers a person would accept: loops, distinct-2 and the question's language, per answer
and per model in `compare`, and the one home of the generation defaults (issue 17)."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

import test_compare_remote as remote_double
from test_inference import one_torch_thread  # noqa: F401 (an autouse fixture, shared)
from tunelab.cli import main
from tunelab.evaluate import fluency
from tunelab.evaluate.runner import Settings
from tunelab.local.generation import DEFAULT, Generation, model_default

# The demo's tuned answer the issue quotes (samples.json of a `make demo` run).
ISSUE_LOOP = ("Не хочешь почитать, что это развость. Почто развость это развость, что это "
              "развость, что это развость, что это развость, ч")
NORMAL_RU = ("Потерялась? Значит, старая карта больше не ведёт. Возьми чистый лист и нарисуй "
             "новую: куда ты хочешь прийти через год, и что ты сделаешь для этого завтра?")
NORMAL_EN = ("Start small: tonight, ask her one question you do not know the answer to, and "
             "listen without fixing anything. A real conversation begins with curiosity, "
             "not with a plan.")


# fluency on fixed strings ---------------------------------------------------------------
def test_the_issues_looping_answer_counts_as_a_loop_and_normal_answers_do_not():
    assert fluency.has_loop(ISSUE_LOOP)
    assert fluency.repeated_ngram(ISSUE_LOOP)  # "что это развость" three times
    assert not fluency.has_loop(NORMAL_RU)
    assert not fluency.has_loop(NORMAL_EN)
    # two occurrences of a phrase are speech, three are a loop
    assert not fluency.has_loop("Ты можешь всё. Правда, ты можешь всё.")
    assert fluency.has_loop("Ты можешь всё. Ты можешь всё. Ты можешь всё.")


def test_a_loop_words_miss_is_caught_at_the_tail():
    # no spaces to split on, and the last copy is cut off by the token limit
    text = "Answer: " + "абв" * 8 + "а"
    assert not fluency.repeated_ngram(text) and fluency.looping_tail(text)
    assert fluency.has_loop("Думай. " + "!?" * 10)
    # a sentence said again (its third copy cut off) over the last 30%+ of the answer
    said_twice = ("Открытые пробурсы, чтобарубы, не очень. Открытые пробурсы, чтобарубы, не "
                  "очень. Открытые пробурсы, чтоба")
    assert not fluency.repeated_ngram(said_twice) and fluency.has_loop(said_twice)
    # a repeated tail too short against the whole answer is no loop
    assert not fluency.looping_tail(NORMAL_EN + " Ha ha ha.")


def test_distinct_2_counts_unique_word_bigrams():
    assert fluency.distinct_2(["a b c d"]) == 1.0
    assert fluency.distinct_2(["a b a b a b"]) == pytest.approx(2 / 5)
    assert fluency.distinct_2(["a b", "a b"]) == 0.5  # pooled over the answers
    assert fluency.distinct_2(["one"]) is None  # no bigram at all
    assert fluency.distinct_2([ISSUE_LOOP]) < 0.7 < fluency.distinct_2([NORMAL_RU])


def test_the_answer_is_judged_in_the_script_of_the_question():
    assert fluency.script(NORMAL_RU) == "cyrillic" and fluency.script(NORMAL_EN) == "latin"
    assert fluency.script("Ok, Наташа слушает тебя") == "cyrillic"  # most letters decide
    assert fluency.script("42!") is None
    assert fluency.script("В «קול» («שביאַיִהְרָא למנת הדְּחֹסֶ‍) аще") == "other"  # word salad
    assert fluency.same_language("Как начать свой бизнес?", NORMAL_RU) is True
    assert fluency.same_language("Where do I start?", NORMAL_RU) is False
    assert fluency.same_language("???", NORMAL_RU) is None
    summary = fluency.summary(["Где я?", "Where am I?", "..."], [ISSUE_LOOP, NORMAL_RU, "x y"])
    assert summary["loop_share"] == pytest.approx(1 / 3)
    assert summary["language_match"] == 0.5  # the question without letters is not judged
    assert summary["mixed_script_answers"] == 0


# The demo's tuned answers that "most letters" counted as in the question's language.
ISSUE_MIXED = "В Срегна «קול» («שביאַיִהְרָא…»)"  # Hebrew letters inside Russian
ISSUE_WRONG = "В среднюг «на»..."  # to an English question
OPENS_WRONG = "В среднюг «на» Start with one thing at a time; it might be something small."


def test_an_answer_is_in_the_questions_language_only_with_95_percent_of_its_letters():
    assert fluency.mixed_script(ISSUE_MIXED) and fluency.script(ISSUE_MIXED) == "other"
    assert fluency.same_language("Как начать свой бизнес?", ISSUE_MIXED) is False
    # wrong language, but one script: not mixed
    assert fluency.same_language("Where do I start?", ISSUE_WRONG) is False
    assert not fluency.mixed_script(ISSUE_WRONG)
    # mostly English after a Cyrillic opening: "most letters" said yes, 95% says no
    assert fluency.script(OPENS_WRONG) == "latin" and fluency.mixed_script(OPENS_WRONG)
    assert fluency.same_language("Where do I start?", OPENS_WRONG) is False
    # the bar itself: 19 Cyrillic letters and 1 Latin are 95%, 18 and 2 are not
    assert fluency.same_language("Где я?", "абвгдежзиклмнопрсту x") is True
    assert fluency.same_language("Где я?", "абвгдежзиклмнопрст xy") is False
    assert fluency.mixed_script("абвгдежзиклмнопрст xy")
    checks = [fluency.check("Где я?", ISSUE_MIXED), fluency.check("Where?", ISSUE_WRONG)]
    assert [(c.same_language, c.mixed_script) for c in checks] == [(False, True),
                                                                    (False, False)]
    summary = fluency.summary(["Где я?", "Where?", "Где ты?"],
                              [ISSUE_MIXED, ISSUE_WRONG, NORMAL_RU])
    assert summary["language_match"] == pytest.approx(1 / 3)
    assert summary["mixed_script_answers"] == 1


# the one home of the generation defaults -------------------------------------------------
def test_a_models_own_repetition_penalty_wins_over_tunelabs():
    from transformers import GenerationConfig

    assert model_default(GenerationConfig()) == DEFAULT  # SmolLM2's: token ids only
    assert model_default(GenerationConfig(repetition_penalty=1.05)).repetition_penalty == 1.05
    assert DEFAULT.hf_kwargs(10)["do_sample"] is False  # greedy unless asked
    sampled = Generation(temperature=0.7, top_p=0.9).hf_kwargs(10)
    assert sampled["do_sample"] and sampled["temperature"] == 0.7


def test_compare_settings_default_to_the_home_and_key_the_cache_by_the_penalty():
    settings = Settings()
    assert (settings.max_new_tokens, settings.temperature) == (DEFAULT.max_new_tokens, 0.0)
    assert settings.chat_options().repetition_penalty is None  # the model's own
    # answers cached without a penalty (or under another default) are not reused
    assert settings.cache_dict() != Settings(repetition_penalty=1.0).cache_dict()
    assert str(DEFAULT.repetition_penalty) in str(settings.cache_dict()["repetition_penalty"])


# compare reports them ----------------------------------------------------------------------
# None: the reference, in the question's language
ANSWERS = {"loopy": ISSUE_LOOP, "fine": None, "mixed": ISSUE_MIXED}
REFERENCES = {"Я потерялась.": NORMAL_RU, "Where do I start with my wife?": NORMAL_EN}


class _Handler(remote_double._Handler):
    """test_compare_remote's loopback endpoint, with a loopy model and a fine one."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = ANSWERS[request["model"]] or REFERENCES[request["messages"][-1]["content"]]
        self._send(200, {
            "id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()),
            "model": request["model"], "choices": [{"index": 0, "finish_reason": "stop",
                                                    "message": {"role": "assistant",
                                                                "content": text}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}})


def _eval_file(path: Path) -> Path:
    path.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": question}, {"role": "assistant", "content": answer}]},
        ensure_ascii=False) + "\n" for question, answer in REFERENCES.items()),
        encoding="utf-8")
    return path


def _compare(capsys, argv: list[str]) -> dict:
    code = main(["compare", *argv, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_compare_reports_loops_variety_and_language_per_answer_and_per_model(
        tunelab_home, tmp_path, capsys):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        tunelab_home.mkdir(parents=True, exist_ok=True)
        (tunelab_home / "providers.yaml").write_text(
            f"mylab:\n  base_url: http://127.0.0.1:{server.server_address[1]}/v1\n")
        report = tmp_path / "report.html"
        result = _compare(capsys, ["mylab:loopy", "mylab:fine", "mylab:mixed", "--eval",
                                   str(_eval_file(tmp_path / "eval.jsonl")),
                                   "--report", str(report)])
        assert main(["compare", "mylab:mixed", "--eval", str(tmp_path / "eval.jsonl")]) == 0
        text = capsys.readouterr().out
    finally:
        server.shutdown()
    loopy, fine, mixed = result["models"]
    assert mixed["metrics"]["mixed_script_answers"] == 2
    assert [a["mixed_script"] for a in mixed["answers"]] == [True, True]
    assert mixed["metrics"]["language_match"] == 0.0
    assert loopy["metrics"]["mixed_script_answers"] == 0
    assert text.count("mixed scripts") == 2 and re.search(r"answers mixing scripts\s+│?\s*2",
                                                          text)
    assert loopy["metrics"]["loop_share"] == 1.0 and fine["metrics"]["loop_share"] == 0.0
    assert loopy["metrics"]["language_match"] == 0.5  # Russian to the English question
    assert fine["metrics"]["language_match"] == 1.0
    assert loopy["metrics"]["distinct_2"] < fine["metrics"]["distinct_2"]
    english = loopy["answers"][1]
    assert english["loop"] is True and english["script"] == "cyrillic"
    assert english["same_language"] is False and english["distinct_2"] < 0.7
    html = report.read_text(encoding="utf-8")
    assert "answers in a loop" in html and "distinct-2" in html
    assert html.count("not in the question&#x27;s language") == 3  # loopy 1, mixed 2
    assert html.count("<strong>loops") == 2 and html.count("mixed scripts</strong>") == 2


@pytest.mark.slow
def test_compare_on_the_embedded_model_reports_them_too(tmp_path, capsys):
    """The real thing: the embedded SmolLM2 answers; every figure is consistent with the
    answers it was computed from."""
    result = _compare(capsys, ["local:default", "--eval", str(_eval_file(tmp_path / "e.jsonl")),
                               "--max-new-tokens", "24"])
    [model] = result["models"]
    assert result["settings"]["repetition_penalty"] is None  # the model's own, else tunelab's
    answers = model["answers"]
    assert [a["loop"] for a in answers] == [fluency.has_loop(a["text"]) for a in answers]
    assert model["metrics"]["loop_share"] == sum(a["loop"] for a in answers) / len(answers)
    assert model["metrics"]["distinct_2"] == fluency.distinct_2([a["text"] for a in answers])
    judged = [a["same_language"] for a in answers]
    assert None not in judged
    assert model["metrics"]["language_match"] == sum(judged) / len(judged)
