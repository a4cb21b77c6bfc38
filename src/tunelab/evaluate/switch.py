"""Can we switch? A replacement measured against the recorded answers of the model it
replaces (`tunelab compare recorded:MODEL NEW_JOB`).

Each model beside a recorded one is scored against the recorded answers themselves (not the
eval file's references, which may differ under --eval): chrF and ROUGE-L, the judge's win
rate when a judge ran, and its latency and cost per 1k requests beside the recorded model's.
The verdict is a stated rule, shown in the report with the numbers that decided it:

    with a judge    win rate >= 40% (head to head, ties shared: 50% is parity)
    without one     chrF >= 50 and ROUGE-L >= 0.40 against the recorded answers

It is a bar for "close enough to try", not a proof: the report shows every answer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from tunelab.evaluate import golden, metrics
from tunelab.evaluate.runner import ModelResult

CHRF_BAR = 50.0
ROUGE_BAR = 0.40
WIN_BAR = 0.40


@dataclass
class SwitchVerdict:
    recorded: str  # the recorded model's name
    candidate: str  # the candidate's label
    job_id: str | None
    chrf: float
    rouge_l: float
    win_rate: float | None
    latency_p50_s: float | None
    recorded_latency_p50_s: float | None
    cost_per_1k_requests: float | None
    recorded_cost_per_1k_requests: float | None
    switch: bool = False
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _decide(verdict: SwitchVerdict) -> SwitchVerdict:
    if verdict.win_rate is not None:
        verdict.switch = verdict.win_rate >= WIN_BAR
        verdict.reasons.append(f"the judge preferred it in {verdict.win_rate:.0%} of "
                               f"verdicts (bar {WIN_BAR:.0%})")
    else:
        verdict.switch = verdict.chrf >= CHRF_BAR and verdict.rouge_l >= ROUGE_BAR
        verdict.reasons.append(f"chrF {verdict.chrf:.1f} (bar {CHRF_BAR:g}) and ROUGE-L "
                               f"{verdict.rouge_l:.2f} (bar {ROUGE_BAR:.2f}) against the "
                               "recorded answers; no judge ran (--judge MODEL adds one)")
    mine, theirs = verdict.cost_per_1k_requests, verdict.recorded_cost_per_1k_requests
    if mine is not None and theirs is not None:
        verdict.reasons.append(f"${mine:,.4f} per 1k requests against ${theirs:,.4f}")
    return verdict


def verdicts(results: list[ModelResult]) -> list[SwitchVerdict]:
    """One verdict per (recorded model, other model) in the comparison."""
    found = []
    for recorded in (r for r in results if r.spec.provider == golden.RECORDED):
        references = [answer.text for answer in recorded.answers]
        for other in (r for r in results if r.spec.provider != golden.RECORDED):
            texts = [answer.text for answer in other.answers]
            pairs = list(zip(texts, references, strict=True))
            found.append(_decide(SwitchVerdict(
                recorded=recorded.spec.model, candidate=other.spec.label,
                job_id=other.spec.job_id, chrf=metrics.corpus_chrf(texts, references),
                rouge_l=metrics.mean([metrics.rouge_l(a, r) for a, r in pairs]),
                win_rate=(other.judge or {}).get("win_rate"),
                latency_p50_s=other.metrics.get("latency_p50_s"),
                recorded_latency_p50_s=recorded.metrics.get("latency_p50_s"),
                cost_per_1k_requests=other.metrics.get("cost_per_1k_requests"),
                recorded_cost_per_1k_requests=recorded.metrics.get("cost_per_1k_requests"))))
    return found


def remember(found: list[SwitchVerdict], report: str | None = None) -> None:
    """Keep each recorded model's latest verdicts beside its golden set (migrate status)."""
    for model in {verdict.recorded for verdict in found}:
        mine = [verdict for verdict in found if verdict.recorded == model]
        golden.note_comparison(model, {
            "candidates": [verdict.job_id or verdict.candidate for verdict in mine],
            "verdicts": [verdict.to_dict() for verdict in mine], "report": report})
