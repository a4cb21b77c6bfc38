"""OpenAI chat <-> Gemini tuning records, and Gemini's limits as data."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunelab.data.gemini import (
    SUPPORTED_MODELS,
    adapter_size_enum,
    gemini_to_openai,
    limits_for,
    openai_to_gemini,
)
from tunelab.errors import DataError, UsageError

EXAMPLE = {"messages": [
    {"role": "system", "content": "Ты — Наташа."},
    {"role": "user", "content": "Привет"},
    {"role": "assistant", "content": "Здравствуй!"},
    {"role": "user", "content": "Как дела?"},
    {"role": "assistant", "content": "Отлично."},
]}


def test_openai_example_becomes_gemini_record():
    assert openai_to_gemini(EXAMPLE) == {
        "systemInstruction": {"role": "system", "parts": [{"text": "Ты — Наташа."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Привет"}]},
            {"role": "model", "parts": [{"text": "Здравствуй!"}]},
            {"role": "user", "parts": [{"text": "Как дела?"}]},
            {"role": "model", "parts": [{"text": "Отлично."}]},
        ],
    }


def test_example_without_system_has_no_system_instruction():
    record = openai_to_gemini({"messages": EXAMPLE["messages"][1:3]})
    assert "systemInstruction" not in record
    assert [content["role"] for content in record["contents"]] == ["user", "model"]


texts = st.text(max_size=40)
turns = st.lists(st.tuples(st.sampled_from(["user", "assistant"]), texts), min_size=1, max_size=6)


@settings(max_examples=150, deadline=None)
@given(systems=st.lists(texts, max_size=2), turns=turns)
def test_round_trip_is_lossless_where_gemini_can_hold_it(systems, turns):
    example = {"messages": [{"role": "system", "content": text} for text in systems]
               + [{"role": role, "content": text} for role, text in turns]}
    assert gemini_to_openai(openai_to_gemini(example)) == example


def test_name_and_weight_one_are_dropped_as_documented():
    example = {"messages": [{"role": "user", "content": "hi", "name": "ann"},
                            {"role": "assistant", "content": "yo", "weight": 1}]}
    assert gemini_to_openai(openai_to_gemini(example)) == {"messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}


@pytest.mark.parametrize(("messages", "says"), [
    ([{"role": "user", "content": "a"}, {"role": "system", "content": "late"},
      {"role": "assistant", "content": "b"}], "system message after the first turn"),
    ([{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}], "'tool'"),
    ([{"role": "user", "content": "a"},
      {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]}], "tool calls"),
    ([{"role": "user", "content": [{"type": "text", "text": "a"}]}], "must be a string"),
    ([{"role": "system", "content": "only a system prompt"}], "no user or assistant turn"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "weight": 0}],
     "weight 0 has no Gemini equivalent"),
])
def test_what_gemini_cannot_hold_is_refused_naming_the_message(messages, says):
    with pytest.raises(DataError) as caught:
        openai_to_gemini({"messages": messages})
    assert says in str(caught.value)
    assert "\n" not in caught.value.render()


def test_gemini_record_with_several_parts_and_no_role_reads_back():
    record = {"systemInstruction": {"parts": [{"text": "a"}, {"text": "b"}]},
              "contents": [{"parts": [{"text": "hel"}, {"text": "lo"}]},
                           {"role": "model", "parts": [{"text": "hi"}]}]}
    assert gemini_to_openai(record) == {"messages": [
        {"role": "system", "content": "a"}, {"role": "system", "content": "b"},
        {"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}]}


@pytest.mark.parametrize(("record", "says"), [
    ({"contents": [{"role": "user", "parts": [{"inlineData": {"mimeType": "image/png"}}]}]},
     "only text parts"),
    ({"contents": [{"role": "function", "parts": [{"text": "x"}]}]}, "not user or model"),
    ({"messages": []}, '"contents" list'),
])
def test_gemini_records_openai_cannot_hold_are_refused(record, says):
    with pytest.raises(DataError, match=says):
        gemini_to_openai(record)


def test_limits_are_data_for_every_supported_model():
    for model, limits in SUPPORTED_MODELS.items():
        assert limits.max_example_tokens == 131_072, model
        assert limits.max_validation_examples == 5_000
        assert limits.max_file_bytes == 1 << 30
    assert adapter_size_enum("gemini-2.5-flash", 16) == "ADAPTER_SIZE_SIXTEEN"
    assert adapter_size_enum("gemini-2.5-pro", 8) == "ADAPTER_SIZE_EIGHT"


def test_unsupported_model_and_adapter_size_name_the_flag():
    with pytest.raises(UsageError, match="--model 'gpt-4o'"):
        limits_for("gpt-4o")
    with pytest.raises(UsageError, match="--adapter-size 16") as caught:
        adapter_size_enum("gemini-2.5-pro", 16)
    assert "1, 2, 4, 8" in caught.value.render()
