"""Would a person accept this answer? Loops, variety and language: plain functions on strings.

- loop: an answer "falls into a loop" when either
  - some run of LOOP_N words (lower-cased Unicode words, punctuation dropped) occurs
    LOOP_REPEATS or more times in it, overlapping counts included
    ("что это развость, что это развость, что это развость"), or
  - it ends in a span that repeats one unit of at least 2 characters, twice or more (the
    last copy may be cut short by the token limit), and covers at least LOOP_TAIL_SHARE of
    its characters: a long sentence said again, or a loop with no spaces to split words on.
  Three words three times is rare in a short natural answer and certain in a degenerate one;
  an answer whose last third or more restates what came just before has stopped answering.
- distinct-2 (Li et al., 2016): unique word bigrams over all word bigrams; 1.0 = no bigram
  repeats. Per answer, and pooled over a model's answers.
- language: an answer is in the question's language when at least SAME_SCRIPT_SHARE (95%)
  of its letters are in the question's script (Cyrillic, Latin or other: the script most of
  the question's letters are in). A cheap detector that tells Russian from English, the two
  languages of the sample data; it does not tell apart languages that share a script
  (English and French are both "latin"). "Most letters" was too lax: the demo's tuned
  answers passed as Russian while being word salad with Hebrew letters inside (issue 23).
- mixed script: no one script holds SAME_SCRIPT_SHARE of the answer's letters
  ("В Срегна «קול» («שביאַיִהְרָא…»)"); reported beside the language, per answer and counted.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

LOOP_N = 3
LOOP_REPEATS = 3
LOOP_TAIL_SHARE = 0.3
LOOP_TAIL_COPIES = 2
SAME_SCRIPT_SHARE = 0.95
_LONGEST_UNIT = 200  # characters: a repeated "unit" longer than this is a paragraph, not a loop

_WORD = re.compile(r"\w+", re.UNICODE)
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def repeated_ngram(text: str, n: int = LOOP_N, repeats: int = LOOP_REPEATS) -> bool:
    """Some run of `n` words occurs `repeats` or more times."""
    tokens = words(text)
    grams = Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
    return any(count >= repeats for count in grams.values())


def looping_tail(text: str, share: float = LOOP_TAIL_SHARE,
                 repeats: int = LOOP_TAIL_COPIES) -> bool:
    """The text ends in one unit (2+ characters) said `repeats`+ times in a row, covering at
    least `share` of it; the last copy may be cut short."""
    text = text.strip()
    size = len(text)
    for period in range(2, min(size // repeats, _LONGEST_UNIT) + 1):
        start = size - period - 1  # walk back while the text still repeats with this period
        while start >= 0 and text[start] == text[start + period]:
            start -= 1
        span = size - start - 1  # the suffix with this period
        if span >= repeats * period and span >= share * size:
            return True
    return False


def has_loop(text: str) -> bool:
    return repeated_ngram(text) or looping_tail(text)


def bigrams(text: str) -> list[tuple[str, str]]:
    tokens = words(text)
    return list(zip(tokens, tokens[1:], strict=False))


def distinct_2(texts: Sequence[str]) -> float | None:
    """Unique word bigrams over all word bigrams of `texts` pooled; None with no bigrams."""
    pooled = [pair for text in texts for pair in bigrams(text)]
    return len(set(pooled)) / len(pooled) if pooled else None


def script_shares(text: str) -> dict[str, float]:
    """The share of `text`'s letters in each script: 'cyrillic', 'latin' and 'other'
    (Hebrew, CJK...); empty with no letters."""
    letters = sum(char.isalpha() for char in text)
    if not letters:
        return {}
    cyrillic, latin = len(_CYRILLIC.findall(text)), len(_LATIN.findall(text))
    return {"cyrillic": cyrillic / letters, "latin": latin / letters,
            "other": (letters - cyrillic - latin) / letters}


def script(text: str) -> str | None:
    """'cyrillic', 'latin' or 'other', whichever has the most letters in `text`; None with
    no letters."""
    shares = script_shares(text)
    return max(shares, key=lambda name: shares[name]) if shares else None


def mixed_script(text: str) -> bool:
    """Letters of several scripts, none of them SAME_SCRIPT_SHARE of the whole."""
    shares = script_shares(text)
    return bool(shares) and max(shares.values()) < SAME_SCRIPT_SHARE


def same_language(question: str, answer: str) -> bool | None:
    """At least SAME_SCRIPT_SHARE of the answer's letters are in the question's script;
    None when the question has no letters."""
    asked = script(question)
    if asked is None:
        return None
    return script_shares(answer).get(asked, 0.0) >= SAME_SCRIPT_SHARE


@dataclass(frozen=True)
class AnswerCheck:
    """One answer's fluency, as compare reports it beside the answer."""

    loop: bool
    distinct_2: float | None
    script: str | None  # the script most of its letters are in
    same_language: bool | None
    mixed_script: bool

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def check(question: str, answer: str) -> AnswerCheck:
    return AnswerCheck(has_loop(answer), distinct_2([answer]), script(answer),
                       same_language(question, answer), mixed_script(answer))


def summary(questions: Sequence[str], answers: Sequence[str]) -> dict[str, float | None]:
    """A model's loop share, pooled distinct-2, language-match share (of the questions
    that have letters; None when none has) and how many answers mix scripts."""
    checks = [check(q, a) for q, a in zip(questions, answers, strict=True)]
    judged = [c.same_language for c in checks if c.same_language is not None]
    return {
        "loop_share": share([c.loop for c in checks]),
        "distinct_2": distinct_2(answers),
        "language_match": share(judged),
        "mixed_script_answers": sum(c.mixed_script for c in checks),
    }


def share(flags: Sequence[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None
