"""`tunelab compare`: resolve the models, pick the eval file, run, judge, collect one result."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tunelab.errors import DataError
from tunelab.evaluate import preferences, switch
from tunelab.evaluate.cache import AnswerCache, NoCache
from tunelab.evaluate.job_files import default_eval_file
from tunelab.evaluate.judge import Verdict, judge_results
from tunelab.evaluate.runner import (
    Asker,
    EvalItem,
    ModelResult,
    Progress,
    Settings,
    eval_items,
    run_models,
)
from tunelab.evaluate.specs import ModelSpec, resolve_spec, resolve_specs
from tunelab.evaluate.switch import SwitchVerdict


@dataclass
class Comparison:
    eval_file: str
    settings: Settings
    items: list[EvalItem]
    results: list[ModelResult]
    judge: ModelSpec | None = None
    verdicts: list[list[Verdict]] = field(default_factory=list)
    cache_hits: int = 0
    cache_misses: int = 0
    switch: list[SwitchVerdict] = field(default_factory=list)  # beside a recorded model
    pairs: bool = False  # the eval file holds preference pairs (references: preferred)

    def item_verdicts(self, index: int) -> list[Verdict]:
        return self.verdicts[index] if self.verdicts else []

    def to_dict(self) -> dict[str, Any]:
        return {
            "eval_file": self.eval_file,
            "examples": len(self.items),
            "eval_format": "preference" if self.pairs else "chat",
            "settings": self.settings.to_dict(),
            "cache": {"hits": self.cache_hits, "misses": self.cache_misses},
            "switch": [verdict.to_dict() for verdict in self.switch],
            "judge": self.judge.to_dict() if self.judge else None,
            "models": [{"label": r.spec.label, "spec": r.spec.to_dict(), "metrics": r.metrics,
                        "judge": r.judge, "unavailable": r.unavailable,
                        "answers": r.answer_dicts()}
                       for r in self.results],
            "items": [{"question": item.question, "reference": item.reference,
                       "verdicts": [asdict(v) for v in self.item_verdicts(index)]}
                      for index, item in enumerate(self.items)],
        }


def compare(models: list[str], *, eval_file: Path | None = None, limit: int | None = None,
            judge: str | None = None, settings: Settings | None = None,
            provider: str | None = None, base_url: str | None = None, use_cache: bool = True,
            progress: Progress | None = None) -> Comparison:
    """Ask every model every held-out example with the same settings, and score them."""
    from tunelab.data.reader import load_examples

    specs = resolve_specs(models, provider=provider, base_url=base_url)
    judge_spec = resolve_spec(judge, provider=provider, base_url=base_url) if judge else None
    source = eval_file or default_eval_file(specs)
    pairs = preferences.is_preference_file(source)
    if pairs:
        items, rows = preferences.pair_items(source)
        items, rows = items[:limit], rows[:limit]
    else:
        items, rows = eval_items(load_examples(source), str(source))[:limit], []
    if not items:
        raise DataError("no examples to evaluate on", path=str(source),
                        fix="give the eval file at least one dialogue")
    settings = settings or Settings()
    cache = AnswerCache() if use_cache else NoCache()
    try:
        asker = Asker(cache)
        results = run_models(specs, items, settings, asker, progress)
        for result in results if pairs else []:
            found, why = preferences.reward_accuracy(result.spec, rows, asker)
            result.metrics.update(found)
            if why:
                result.unavailable[preferences.REWARD_ACCURACY] = why
        verdicts = (judge_results(judge_spec, items, results, asker, progress)
                    if judge_spec else [])
    finally:
        cache.close()
    found = switch.verdicts(results)
    switch.remember(found)
    return Comparison(str(source), settings, items, results, judge_spec, verdicts,
                      cache.hits, cache.misses, found, pairs)

