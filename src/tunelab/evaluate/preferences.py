"""`compare --eval prefs.jsonl`: held-out preference pairs as an eval file.

Each pair is an eval item whose reference is the preferred answer, so every model answers
the pairs' inputs and gets compare's usual metrics against the preferred answers. Beside
them, each local model's reward accuracy: the share of pairs whose preferred answer has the
higher summed log-probability under the model, given the input (the DPO trainer's own
scoring, local/pair_scores.py). A remote model has none: an API returns log-probabilities
of what it generates, not of an answer it is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunelab.evaluate.runner import Asker, EvalItem
from tunelab.evaluate.specs import ModelSpec

REWARD_ACCURACY = "reward_accuracy"
SCORED_PAIRS = "scored_pairs"
NO_LOGPROBS = ("n/a: a remote API returns no log-probabilities for an answer it is given "
               "(only for the tokens it generates)")
NO_WEIGHTS = "n/a: a recorded model is its answers; there are no weights to score with"


def is_preference_file(path: Path) -> bool:
    from tunelab.data.preference import file_format

    return file_format(path) == "preference"


def pair_items(path: Path) -> tuple[list[EvalItem], list[dict[str, Any]]]:
    """The pairs as eval items (input -> preferred answer; the example, for the held-out
    loss, is the conversation ending in it) and as OpenAI rows, for scoring."""
    from tunelab.data.preference import read_pairs

    pairs = read_pairs(path)
    items = [EvalItem(pair.messages, str(pair.preferred.get("content") or ""),
                      {"messages": pair.chosen}) for pair in pairs]
    return items, [pair.as_row() for pair in pairs]


def reward_accuracy(spec: ModelSpec, rows: list[dict[str, Any]],
                    asker: Asker) -> tuple[dict[str, float | int | None], str | None]:
    """(metrics, why there are none): the model's reward accuracy on `rows` and how many
    pairs it could score (a pair longer than its context is left out), cached like answers."""
    if spec.is_recorded:
        return {REWARD_ACCURACY: None}, NO_WEIGHTS
    if not spec.is_local:
        return {REWARD_ACCURACY: None}, NO_LOGPROBS

    def measure() -> dict[str, Any]:
        from tunelab.local import pair_scores
        from tunelab.local.inference import load_chat_model

        chat = load_chat_model(spec.model)
        scores = pair_scores.pair_logps(chat.model, chat.tokenizer, rows, source="eval pairs")
        return {REWARD_ACCURACY: pair_scores.reward_accuracy(scores),
                SCORED_PAIRS: sum(score is not None for score in scores)}

    value, _ = asker.cached(spec, {"pair_logps": rows}, {}, measure)
    return value, None
