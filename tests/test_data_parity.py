"""Parity with the OpenAI cookbook's data-prep algorithm (Chat_finetuning_data_prep).

The algorithm is restated here from its documented rules, independently of tunelab's
code: json.loads per line; the format checks per example and per message; tokens as
3 per message + tiktoken tokens of every string value + 1 per name + 3 for priming;
billing tokens capped per example; default epochs 3, moved toward 100..25,000 examples
x epochs within 1..25. On generated data our counts must equal its counts.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tunelab.data.check import check_file
from tunelab.data.cost import default_epochs
from tunelab.data.tokens import load_encoding

_PIECES = ("love soul river money fear light path мама душа река деньги страх свет путь "
         "karma 42 1999 don't it's!? « » — ... \n\n  tabs\t emoji 🌊🔥 日本語")
WORDS = _PIECES.split(" ")


def restated_cookbook(path: Path, encoding_name: str, limit: int) -> dict:
    encoding = load_encoding(encoding_name)  # tiktoken itself, not tunelab's counter
    with path.open(encoding="utf-8") as handle:
        dataset = [json.loads(line) for line in handle]
    format_errors = 0
    good = []
    for ex in dataset:
        if not isinstance(ex, dict) or not ex.get("messages"):
            format_errors += 1
            continue
        bad = False
        for message in ex["messages"]:
            if "role" not in message or "content" not in message:
                bad = True
            if any(k not in ("role", "content", "name", "function_call", "weight")
                   for k in message):
                bad = True
            if message.get("role") not in ("system", "user", "assistant", "function"):
                bad = True
            content = message.get("content")
            if (not content and not message.get("function_call")) or not isinstance(content, str):
                bad = True
        if not any(message.get("role") == "assistant" for message in ex["messages"]):
            bad = True
        format_errors += bad
        if not bad:
            good.append(ex)
    lengths, assistant = [], 0
    for ex in good:
        tokens = 3
        for message in ex["messages"]:
            tokens += 3
            for key, value in message.items():
                if isinstance(value, str):
                    tokens += len(encoding.encode(value))
                if key == "name":
                    tokens += 1
        lengths.append(tokens)
        assistant += sum(len(encoding.encode(m["content"])) for m in ex["messages"]
                         if m["role"] == "assistant")
    n = len(good)
    epochs = 3
    if n * 3 < 100:
        epochs = min(25, 100 // n)
    elif n * 3 > 25000:
        epochs = max(1, 25000 // n)
    return {"bad": format_errors, "tokens": sum(lengths), "assistant": assistant,
            "billing": sum(min(limit, length) for length in lengths), "epochs": epochs}


def text(rng: random.Random, low: int, high: int) -> str:
    return "".join(rng.choice(WORDS) + rng.choice(("", " ", ", ", ". "))
                   for _ in range(rng.randint(low, high))) or "x"


def generated_line(rng: random.Random, index: int) -> dict | list:
    if index % 17 == 3:  # broken the ways both algorithms agree are broken
        return rng.choice([[], {"messages": []}, {"messages": [{"role": "user", "content": "q"}]},
                           {"messages": [{"role": "bot", "content": "x"},
                                         {"role": "assistant", "content": "y"}]},
                           {"messages": [{"role": "user", "content": 5},
                                         {"role": "assistant", "content": "y"}]},
                           {"messages": [{"role": "user", "content": "q", "mood": "x"},
                                         {"role": "assistant", "content": "y"}]}])
    messages = [{"role": "system", "content": "You are Natasha, a warm provocative coach."}]
    for _ in range(rng.randint(1, 3)):
        user = {"role": "user", "content": text(rng, 1, 30)}
        if rng.random() < 0.1:
            user["name"] = rng.choice(("ann", "Борис"))
        messages += [user, {"role": "assistant", "content": text(rng, 1, 80)}]
    if index % 50 == 10:  # a long one, over gpt-3.5's 16,385-token limit
        messages[-1]["content"] = "river of light " * 6000
    return {"messages": messages}


@pytest.mark.parametrize("model, encoding, limit, count", [
    ("gpt-4o-mini-2024-07-18", "o200k_base", 65536, 400),
    ("gpt-3.5-turbo-0125", "cl100k_base", 16385, 150),
    ("gpt-4.1-nano-2025-04-14", "o200k_base", 65536, 25),
])
def test_counts_equal_the_cookbook(model: str, encoding: str, limit: int, count: int,
                                   tmp_path: Path) -> None:
    rng = random.Random(count)
    path = tmp_path / "generated.jsonl"
    lines = [json.dumps(generated_line(rng, i), ensure_ascii=False) for i in range(count)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected = restated_cookbook(path, encoding, limit)

    report = check_file(path, provider="openai", model=model)
    bad_lines = {problem.line for problem in report.errors.listed}
    ours = {"bad": len(bad_lines), "tokens": report.tokens["total"],
            "assistant": report.tokens["assistant"], "billing": report.billing_tokens,
            "epochs": report.epochs}
    assert expected["bad"] > 0 and expected["billing"] <= expected["tokens"]
    assert ours == expected


@pytest.mark.parametrize("examples", [1, 2, 10, 33, 34, 50, 100, 8333, 8334, 10_000, 30_000])
def test_default_epochs_follow_the_documented_rule(examples: int) -> None:
    epochs = 3
    if examples * 3 < 100:
        epochs = min(25, 100 // examples)
    elif examples * 3 > 25_000:
        epochs = max(1, 25_000 // examples)
    assert default_epochs(examples) == epochs
