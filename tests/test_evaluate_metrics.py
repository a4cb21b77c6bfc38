"""Metric values on known strings, the judge's parsing and order swap, eval splitting, specs."""

from __future__ import annotations

import json
import math
import time

import pytest

from tunelab.errors import DataError, NotFoundError, UsageError
from tunelab.evaluate import metrics
from tunelab.evaluate.cache import AnswerCache, cache_key
from tunelab.evaluate.judge import judge_prompt, parse_verdict
from tunelab.evaluate.prompts import DEFAULT_PROMPTS, load_prompts
from tunelab.evaluate.runner import eval_items
from tunelab.evaluate.specs import resolve_specs
from tunelab.registry import JobRecord, open_registry


# metrics ----------------------------------------------------------------------------------
def test_chrf_is_100_for_identical_and_0_for_disjoint_text():
    assert metrics.chrf("Пустота — это комната.", "Пустота — это комната.") == 100.0
    assert metrics.chrf("xyz", "абв") == 0.0
    assert metrics.chrf("hello there", "hello world") == pytest.approx(31.197, abs=1e-3)


def test_corpus_chrf_pools_ngrams_over_all_answers():
    assert metrics.corpus_chrf(["a b", "c"], ["a b", "d"]) == pytest.approx(83.333, abs=1e-3)


def test_rouge_l_keeps_cyrillic_words():
    # rouge-score's own tokenizer keeps only [a-z0-9]: both sides would be empty.
    from rouge_score import rouge_scorer

    default = rouge_scorer.RougeScorer(["rougeL"]).score("привет мир", "привет мир")
    assert default["rougeL"].fmeasure == 0.0
    assert metrics.rouge_l("Привет, мир!", "привет мир") == 1.0
    # longest common subsequence: 3 of 4 words on each side
    assert metrics.rouge_l("кот сидел на ковре", "кот лежал на ковре") == pytest.approx(0.75)
    assert metrics.rouge_l("The cat sat", "the cat sat on the mat") == pytest.approx(2 * 0.5 / 1.5)


def test_length_ratio_counts_characters():
    assert metrics.length_ratio("абвг", "аб") == 2.0
    assert metrics.length_ratio("  ab  ", "abcd") == 0.5
    assert metrics.length_ratio("ab", "") == 2.0  # an empty reference is no crash


def test_percentiles_interpolate_between_ranks():
    assert metrics.percentile([4, 1, 3, 2], 50) == 2.5
    assert metrics.percentile(list(range(1, 11)), 95) == pytest.approx(9.55)
    assert metrics.percentile([7.0], 95) == 7.0
    with pytest.raises(ValueError):
        metrics.percentile([], 50)


def test_perplexity_is_exp_of_loss():
    assert metrics.perplexity(math.log(8)) == pytest.approx(8.0)


# judge ------------------------------------------------------------------------------------
ITEM = eval_items([{"messages": [
    {"role": "system", "content": "Ты Наташа."},
    {"role": "user", "content": "Я потерялась."},
    {"role": "assistant", "content": "Нарисуй новую карту."}]}])[0]


def test_judge_prompt_letters_answers_in_the_given_order():
    prompt = judge_prompt(ITEM, ["first answer", "second answer"])[-1]["content"]
    assert prompt.index("[A]\nfirst answer") < prompt.index("[B]\nsecond answer")
    assert "Ты Наташа." in prompt and "Нарисуй новую карту." in prompt


def test_verdict_maps_letters_back_to_models_whatever_the_order():
    reply = ('Sure: {"scores": {"A": {"persona": 9, "helpfulness": 7}, '
             '"B": {"persona": 2, "helpfulness": 3}}, "rationale": "A sounds like her."}')
    verdict = parse_verdict(reply, ["tuned", "base"])
    assert verdict.scores == {"tuned": {"persona": 9, "helpfulness": 7},
                              "base": {"persona": 2, "helpfulness": 3}}
    assert verdict.rationale == "A sounds like her."
    swapped = parse_verdict(reply, ["base", "tuned"])
    assert swapped.scores["base"]["persona"] == 9


@pytest.mark.parametrize("reply", ["no json here", '{"scores": {"A": {"persona": 11, '
                                   '"helpfulness": 5}}}', '{"scores": {"A": {"persona": 5}}}'])
def test_a_malformed_verdict_is_an_error_not_made_up_scores(reply):
    verdict = parse_verdict(reply, ["only"])
    assert verdict.scores == {} and verdict.error


# eval items and prompts -------------------------------------------------------------------
def test_eval_items_split_at_the_last_assistant_turn():
    example = {"messages": [
        {"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}]}
    item = eval_items([example])[0]
    assert item.reference == "a2"
    assert [m["content"] for m in item.prompt] == ["q1", "a1", "q2"]
    assert item.question == "q2"


def test_an_eval_example_without_an_answer_names_itself():
    with pytest.raises(DataError, match="example 2"):
        eval_items([ITEM.example, {"messages": [{"role": "user", "content": "q"}]}], "x.jsonl")


def test_prompts_from_text_file_with_a_system_prompt(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("# greetings\nПривет\n\nКак дела?\n", encoding="utf-8")
    conversations = load_prompts(path, system="Ты Наташа.")
    assert conversations == [
        [{"role": "system", "content": "Ты Наташа."}, {"role": "user", "content": "Привет"}],
        [{"role": "system", "content": "Ты Наташа."}, {"role": "user", "content": "Как дела?"}]]
    assert len(load_prompts(None)) == len(DEFAULT_PROMPTS) == 5
    (tmp_path / "empty.txt").write_text("\n", encoding="utf-8")
    with pytest.raises(UsageError, match="no prompts"):
        load_prompts(tmp_path / "empty.txt")


# answer cache -----------------------------------------------------------------------------
def test_cache_keys_change_with_model_prompt_and_settings(tmp_path):
    messages = [{"role": "user", "content": "hi"}]
    key = cache_key("openai||gpt", messages, {"seed": 0})
    assert key == cache_key("openai||gpt", [dict(m) for m in messages], {"seed": 0})
    assert key != cache_key("openai||gpt", messages, {"seed": 1})
    assert key != cache_key("kimi||gpt", messages, {"seed": 0})
    cache = AnswerCache(tmp_path / "answers.sqlite")
    assert cache.get(key) is None
    cache.put(key, "openai||gpt", {"text": "hello"})
    assert cache.get(key) == {"text": "hello"}
    assert (cache.hits, cache.misses) == (1, 1)


# model specs ------------------------------------------------------------------------------
def _job(job_id: str, provider: str, **fields) -> JobRecord:
    now = time.time()
    record = JobRecord(id=job_id, provider=provider, status="succeeded", created_at=now,
                       updated_at=now, **fields)
    registry = open_registry()
    registry.create_job(record)
    registry.close()
    return record


def test_specs_resolve_jobs_base_and_provider_prefixes():
    _job("ftjob-abc", "openai", base_model="gpt-4o-mini-2024-07-18",
         fine_tuned_model="ft:gpt-4o-mini-2024-07-18:org:natasha:abc",
         endpoint="https://api.openai.com/v1")
    base, tuned, kimi, local, bare = resolve_specs(
        ["base", "ftjob-abc", "kimi:moonshot-v1-8k", "local:default", "some/folder"])
    assert (base.provider, base.model, base.job_id) == ("openai", "gpt-4o-mini-2024-07-18", None)
    assert (tuned.provider, tuned.model, tuned.job_id) == (
        "openai", "ft:gpt-4o-mini-2024-07-18:org:natasha:abc", "ftjob-abc")
    assert tuned.base_url == "https://api.openai.com/v1"
    assert (kimi.provider, kimi.model) == ("kimi", "moonshot-v1-8k")
    assert (local.provider, local.model) == ("local", "default")
    assert (bare.provider, bare.model) == ("local", "some/folder")
    by_name = resolve_specs(["ft:gpt-4o-mini-2024-07-18:org:natasha:abc"])[0]
    assert by_name.job_id == "ftjob-abc"


def test_provider_flag_sends_bare_names_to_that_provider():
    spec = resolve_specs(["gpt-4o-mini"], provider="openai", base_url="http://x/v1")[0]
    assert (spec.provider, spec.model, spec.base_url) == ("openai", "gpt-4o-mini", "http://x/v1")


def test_base_needs_a_job_beside_it_and_a_local_job_needs_its_weights(tmp_path):
    with pytest.raises(UsageError, match="base"):
        resolve_specs(["base", "local:default"])
    _job("ftjob-running", "local", base_model="default", run_dir=str(tmp_path))
    with pytest.raises(NotFoundError, match="no trained weights"):
        resolve_specs(["ftjob-running"])
    with pytest.raises(NotFoundError, match="jobs list"):
        resolve_specs(["ftjob-unknown"])


def test_rewritten_local_weights_are_a_new_model_for_the_cache(tmp_path):
    weights = tmp_path / "adapter" / "adapter_model.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"epoch 1")
    spec = resolve_specs([f"local:{weights.parent}"])[0]
    before = spec.identity
    weights.write_bytes(b"epoch 2, resumed")
    assert spec.identity != before
    assert resolve_specs(["openai:gpt-4o-mini"])[0].identity == "openai||gpt-4o-mini"


def test_specs_serialise_for_json_output():
    spec = resolve_specs(["openai:gpt-4o-mini"])[0]
    assert json.loads(json.dumps(spec.to_dict()))["provider"] == "openai"
