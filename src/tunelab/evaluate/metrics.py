"""How close an answer is to the reference, and how fast it came: plain functions on strings.

- chrF (sacrebleu): character n-gram F-score, 0-100; kind to Russian morphology.
- ROUGE-L (rouge-score): F1 of the longest common word subsequence, 0-1. rouge-score's own
  tokenizer keeps only [a-z0-9], so Cyrillic text would score as empty: we hand it one that
  keeps every Unicode word.
- length ratio: answer characters over reference characters (1.0 = same length).
- latency percentiles: linear interpolation between ranks, as numpy's default does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from functools import lru_cache

_WORD = re.compile(r"\w+", re.UNICODE)


class UnicodeWords:
    """A rouge-score tokenizer: lower-cased Unicode words, punctuation dropped."""

    def tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text.lower())


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], tokenizer=UnicodeWords())


def rouge_l(answer: str, reference: str) -> float:
    """ROUGE-L F1 of `answer` against `reference`, 0-1."""
    return _rouge_scorer().score(reference, answer)["rougeL"].fmeasure


def chrf(answer: str, reference: str) -> float:
    """Sentence-level chrF, 0-100."""
    from sacrebleu.metrics import CHRF

    return CHRF().sentence_score(answer, [reference]).score


def corpus_chrf(answers: Sequence[str], references: Sequence[str]) -> float:
    """chrF over all answers at once (n-gram counts pooled, as sacrebleu reports it)."""
    from sacrebleu.metrics import CHRF

    return CHRF().corpus_score(list(answers), [list(references)]).score


def length_ratio(answer: str, reference: str) -> float:
    """Answer length over reference length, in characters."""
    return len(answer.strip()) / max(len(reference.strip()), 1)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def perplexity(loss: float) -> float:
    """exp(loss), capped: the exponential of a diverged loss is noise, not a number."""
    return math.exp(min(loss, 50.0))
