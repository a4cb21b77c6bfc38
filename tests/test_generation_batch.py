"""Answers in batches: the same greedy answers as one prompt at a time, each row stopping on
its own, and the after-training samples still one per prompt in the file's order."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tunelab.local.generation import plan_batches

SYSTEM = "Ты Наташа, коуч."
# Of different lengths (the batch pads on the left), in both of the persona's languages.
QUESTIONS = [
    "Я потерялась.",
    "Write a long story about a sailor who became a coach after a storm at sea, with every "
    "detail of the storm, the ship and the crew, and of what each of them learned.",
    "Как начать свой бизнес, если страшно и нет денег?",
]
TOKENS = 16
# Under the model's own default system prompt, this greeting is answered in 10 tokens
# ("Hello! How can I assist you today?"), well before the others stop.
GREETING = [{"role": "user", "content": "Hi"}]


def test_batches_group_similar_lengths_within_the_token_budget() -> None:
    lengths = [10, 300, 12, 290, 11]
    batches = plan_batches(lengths, 100, batch_tokens=1000, batch_rows=2)
    assert batches == [[1, 3], [2, 4], [0]]  # longest first; 2 x 400 fits, 3 rows do not
    assert plan_batches(lengths, 100, batch_tokens=100) == [[1], [3], [2], [4], [0]]
    assert sorted(i for batch in plan_batches(lengths, 8) for i in batch) == list(range(5))


@pytest.fixture(scope="module")
def answers(one_torch_thread_module: None) -> dict[str, list]:
    """The embedded model's greedy answers (tunelab's default repetition penalty, over the
    prompt) to GREETING and QUESTIONS, one prompt at a time and all in one call."""
    from tunelab.local.inference import load_chat_model

    chat = load_chat_model("default")
    prompts = [chat.prompt(GREETING).ids] + [
        chat.prompt([{"role": "system", "content": SYSTEM},
                     {"role": "user", "content": question}]).ids for question in QUESTIONS]
    assert len({len(ids) for ids in prompts}) == len(prompts)  # all of different lengths
    return {"alone": [chat.complete_prompt(ids, max_new_tokens=TOKENS) for ids in prompts],
            "together": chat.complete_prompts(prompts, max_new_tokens=TOKENS),
            "prompts": prompts}


@pytest.fixture(scope="module")
def one_torch_thread_module() -> None:
    # as tests/test_inference.py's one_torch_thread: on a shared 2-core box, one thread
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _seen(completion) -> tuple[str, int, int]:
    return completion.text, completion.prompt_tokens, completion.completion_tokens


@pytest.mark.slow
def test_batched_greedy_answers_are_those_of_one_prompt_at_a_time(answers) -> None:
    assert [_seen(c) for c in answers["together"]] == [_seen(c) for c in answers["alone"]]
    assert [c.prompt_tokens for c in answers["together"]] == [len(p) for p in answers["prompts"]]
    assert all(c.text for c in answers["together"])


@pytest.mark.slow
def test_a_row_that_ends_early_stops_there_while_the_others_go_on(answers) -> None:
    short, *others = answers["together"]
    assert short.completion_tokens < TOKENS  # it ended its turn
    assert any(c.completion_tokens == TOKENS for c in others)  # these ran to the limit
    assert _seen(short) == _seen(answers["alone"][0])  # nothing of the others' tokens after


@pytest.mark.slow
def test_samples_after_training_keep_one_answer_per_prompt_in_order(tiny_run, tmp_path) -> None:
    from tunelab.config import validate_config
    from tunelab.local import samples
    from tunelab.local.inference import load_chat_model

    run_dir = tmp_path / "ftjob-samples"
    shutil.copytree(Path(tiny_run.result["run_dir"]) / "adapter", run_dir / "adapter")
    prompts_file = tmp_path / "prompts.txt"
    prompts_file.write_text("# comment\n" + "\n".join(QUESTIONS) + "\n", encoding="utf-8")
    config = validate_config({"train_file": str(tmp_path / "t.jsonl"),
                              "prompts": str(prompts_file), "max_samples": 3,
                              "sample_max_new_tokens": 6})
    train = [{"messages": [{"role": "system", "content": SYSTEM},
                           {"role": "user", "content": "?"},
                           {"role": "assistant", "content": "!"}]}]

    class Recorder:
        def message(self, text: str, level: str = "info") -> None:
            assert level == "info", text

    samples.write_samples(config, run_dir, train, Recorder())
    written = json.loads((run_dir / "samples.json").read_text(encoding="utf-8"))
    assert [s["prompt"] for s in written["samples"]] == QUESTIONS[:3]
    tuned = load_chat_model(str(run_dir))
    assert [s["answer"] for s in written["samples"]] == [
        tuned.generate([{"role": "system", "content": SYSTEM},
                        {"role": "user", "content": question}], max_new_tokens=6)
        for question in QUESTIONS[:3]]
