"""Token counting: offline tiktoken tables, the fast counter against tiktoken, local models."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunelab.data.tokens import (
    TABLE_SHA256,
    TIKTOKEN_URL,
    TiktokenCounter,
    encoding_for,
    install_tables,
    load_encoding,
)
from tunelab.home import cache_dir


def test_tables_are_installed_under_tiktoken_names_with_pinned_hashes() -> None:
    folder = install_tables()
    assert folder == cache_dir() / "tiktoken"
    for name, sha256 in TABLE_SHA256.items():
        key = hashlib.sha1(TIKTOKEN_URL.format(name=name).encode()).hexdigest()
        assert hashlib.sha256((folder / key).read_bytes()).hexdigest() == sha256
    load_encoding("cl100k_base")
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(folder)


def test_a_corrupted_table_is_replaced_not_trusted() -> None:
    folder = install_tables()
    key = hashlib.sha1(TIKTOKEN_URL.format(name="o200k_base").encode()).hexdigest()
    (folder / key).write_bytes(b"garbage")
    install_tables()
    assert hashlib.sha256((folder / key).read_bytes()).hexdigest() == TABLE_SHA256["o200k_base"]


@pytest.mark.parametrize("model, table", [
    ("gpt-4o-mini-2024-07-18", "o200k_base"), ("gpt-4.1-nano", "o200k_base"),
    ("ft:gpt-4o-2024-08-06:acme::abc", "o200k_base"), ("gpt-3.5-turbo-0125", "cl100k_base"),
    ("gpt-4-0613", "cl100k_base"), ("gemini-2.5-flash", "o200k_base"),
])
def test_models_map_to_their_tables(model: str, table: str) -> None:
    assert encoding_for(model) == table


@pytest.mark.parametrize("table", ["o200k_base", "cl100k_base"])
@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=300))
def test_fast_count_equals_tiktoken(table: str, text: str) -> None:
    counter = TiktokenCounter(table)
    reference = load_encoding(table)
    example = {"messages": [{"role": "user", "content": text, "name": "ann"}]}
    [(total, _, _)] = counter.count([example])
    assert total == 3 + 3 + len(reference.encode_ordinary(text)) + 1 + 1 + 1  # role, name


def test_lone_surrogates_from_json_escapes_are_counted_like_tiktoken() -> None:
    text = json.loads('"broken \\ud83d pair"')
    counter = TiktokenCounter("o200k_base")
    assert counter.text_tokens(text) == len(load_encoding("o200k_base").encode_ordinary(text))


@pytest.mark.slow
def test_local_target_counts_with_the_models_chat_template(tmp_path: Path) -> None:
    from tunelab.data.check import check_file
    from tunelab.local.model_source import load_tokenizer

    example = {"messages": [{"role": "system", "content": "You are Natasha."},
                            {"role": "user", "content": "What is love?"},
                            {"role": "assistant", "content": "A river that remembers."}]}
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(example) for _ in range(10)) + "\n")
    tokenizer = load_tokenizer(None)
    report = check_file(path, provider="local", tokenizer=tokenizer)
    ids = tokenizer.apply_chat_template(example["messages"], tokenize=True)
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    reply = len(tokenizer("A river that remembers.", add_special_tokens=False)["input_ids"])
    assert report.tokens["per_example"]["max"] == len(ids)
    assert report.tokens["assistant"] == 10 * reply
    assert "chat template" in report.tokenizer
