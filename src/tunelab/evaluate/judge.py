"""An LLM judge: scores persona fidelity and helpfulness (1-10) against a written rubric.

Judges favour whichever answer they read first, so every example is judged twice: once with
the answers in the models' order and once reversed, and each model's scores are averaged
over both. The judge's rationale is kept for the report. Judge replies go through the same
answer cache as the models, so a re-run does not pay for them again.
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass, field
from typing import Any

from tunelab.evaluate.metrics import mean
from tunelab.evaluate.runner import Asker, EvalItem, ModelResult, Progress, Settings
from tunelab.evaluate.specs import ModelSpec

CRITERIA = ("persona", "helpfulness")
# No repetition penalty: a JSON reply repeats its braces, quotes and key names by design.
JUDGE_SETTINGS = Settings(max_new_tokens=512, temperature=0.0, top_p=1.0, seed=0,
                          repetition_penalty=1.0)

SYSTEM = "You are a careful, impartial judge of chat assistant answers. Reply with JSON only."
RUBRIC = """Score each candidate answer on two criteria, each from 1 to 10:
- persona: does it speak in the persona's voice, style and values, as set by the system
  prompt and shown by the reference answer? (1 = generic assistant, 10 = indistinguishable)
- helpfulness: does it actually help the user with their last message? (1 = useless or
  harmful, 10 = as helpful as the best possible answer)
Judge content, not length or position. The reference shows the voice; it is not the only
good answer."""
REPLY_FORMAT = ('Reply with JSON only, shaped like {"scores": {"A": {"persona": 7, '
                '"helpfulness": 8}, ...}, "rationale": "two sentences at most"}.')


@dataclass
class Verdict:
    order: list[str]  # model labels in the order the judge read them
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # label -> criterion
    rationale: str = ""
    error: str | None = None


def judge_prompt(item: EvalItem, answers: list[str]) -> list[dict[str, str]]:
    """The judge's messages for one example, candidates lettered in the given order."""
    conversation = "\n".join(f"{m['role']}: {m.get('content') or ''}" for m in item.prompt
                             if m.get("role") != "system")
    lettered = zip(string.ascii_uppercase, answers, strict=False)
    candidates = "\n\n".join(f"[{letter}]\n{answer}" for letter, answer in lettered)
    body = (f"{RUBRIC}\n\nPersona (system prompt):\n{item.system or '(none)'}\n\n"
            f"Conversation:\n{conversation}\n\nReference answer in the persona's voice:\n"
            f"{item.reference}\n\nCandidate answers:\n{candidates}\n\n{REPLY_FORMAT}")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": body}]


def parse_verdict(text: str, order: list[str]) -> Verdict:
    """Read the judge's JSON; a reply that is not the asked shape becomes an error, not
    made-up scores."""
    verdict = Verdict(order=list(order))
    match = re.search(r"\{.*\}", text, re.DOTALL)
    try:
        data = json.loads(match.group(0)) if match else None
        raw_scores = data["scores"]
        for letter, label in zip(string.ascii_uppercase, order, strict=False):
            verdict.scores[label] = {c: _score(raw_scores[letter][c]) for c in CRITERIA}
        verdict.rationale = str(data.get("rationale", ""))
    except (ValueError, TypeError, KeyError):
        verdict.scores = {}
        verdict.error = f"the judge did not reply in the asked JSON shape: {text[:200]!r}"
    return verdict


def _score(value: Any) -> float:
    number = float(value)
    if not 1 <= number <= 10:
        raise ValueError(f"score {number} outside 1-10")
    return number


def judge_results(judge: ModelSpec, items: list[EvalItem], results: list[ModelResult],
                  asker: Asker, progress: Progress | None = None) -> list[list[Verdict]]:
    """Judge every item in both orders; store each model's mean scores on its result."""
    labels = [result.spec.label for result in results]
    orders = [labels, labels[::-1]] if len(labels) > 1 else [labels]
    verdicts: list[list[Verdict]] = []
    for index, item in enumerate(items):
        answers = {r.spec.label: r.answers[index].text for r in results}
        item_verdicts = []
        for order in orders:
            reply = asker.ask(judge, judge_prompt(item, [answers[label] for label in order]),
                              JUDGE_SETTINGS)
            item_verdicts.append(parse_verdict(reply.text, order))
        verdicts.append(item_verdicts)
        if progress:
            progress(f"judge {judge.label}", index + 1, len(items))
    for result in results:
        result.judge = _summary(result.spec.label, verdicts)
    return verdicts


def _summary(label: str, verdicts: list[list[Verdict]]) -> dict[str, Any]:
    flat = [verdict for item in verdicts for verdict in item]
    scored = [verdict.scores[label] for verdict in flat if label in verdict.scores]
    summary: dict[str, Any] = {c: (mean([s[c] for s in scored]) if scored else None)
                               for c in CRITERIA}
    summary["win_rate"] = win_rate(label, flat)
    summary["judged"] = len(scored)
    summary["unparsed"] = sum(verdict.error is not None for verdict in flat)
    return summary


def win_rate(label: str, verdicts: list[Verdict]) -> float | None:
    """The share of verdicts in which `label` scored highest (criteria summed); a tie for
    the top shares the win. None when no verdict scored it."""
    wins, judged = 0.0, 0
    for verdict in verdicts:
        if label not in verdict.scores:
            continue
        totals = {name: sum(scores.values()) for name, scores in verdict.scores.items()}
        best = max(totals.values())
        judged += 1
        if totals[label] == best:
            wins += 1 / sum(total == best for total in totals.values())
    return wins / judged if judged else None
