"""Ask every model every held-out example, with the same settings, and score the answers.

An eval example is a conversation; the model sees it up to its last assistant turn, and that
turn is the reference. Every answer goes through the answer cache and the provider
contract's `chat()`, except a local model's: it answers many prompts at once, in batches
(`Asker.ask_many`, local/inference.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from tunelab.errors import DataError, NotFoundError, command
from tunelab.evaluate import fluency, golden, metrics
from tunelab.evaluate.cache import AnswerCache, cache_key
from tunelab.evaluate.specs import ModelSpec
from tunelab.local.generation import DEFAULT
from tunelab.providers.base import ChatOptions, Provider
from tunelab.registry.metrics import VALID_ACCURACY, VALID_LOSS

Progress = Callable[[str, int, int], None]  # (what, done, total)


@dataclass(frozen=True)
class Settings:
    """Generation settings, the same for every model and recorded with the results. The
    defaults are local/generation.py's; a repetition penalty of None means the model's own
    (its generation config's, else tunelab's default)."""

    max_new_tokens: int = DEFAULT.max_new_tokens
    temperature: float = DEFAULT.temperature
    top_p: float = DEFAULT.top_p
    seed: int = DEFAULT.seed
    repetition_penalty: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def cache_dict(self) -> dict[str, Any]:
        """The settings as the answer cache keys them: a default penalty is named with its
        value, so answers cached under another default are not reused."""
        penalty = self.repetition_penalty
        return {**self.to_dict(), "repetition_penalty": penalty if penalty is not None
                else f"model's own, else {DEFAULT.repetition_penalty}"}

    def chat_options(self) -> ChatOptions:
        return ChatOptions(max_tokens=self.max_new_tokens, temperature=self.temperature,
                           top_p=self.top_p, seed=self.seed,
                           repetition_penalty=self.repetition_penalty)


@dataclass(frozen=True)
class EvalItem:
    prompt: list[dict[str, Any]]  # the conversation up to the last assistant turn
    reference: str  # that assistant turn
    example: dict[str, Any]

    @property
    def question(self) -> str:
        """The last user message, for tables."""
        users = [m.get("content") or "" for m in self.prompt if m.get("role") == "user"]
        return users[-1] if users else ""

    @property
    def system(self) -> str:
        return next((m.get("content") or "" for m in self.prompt if m.get("role") == "system"),
                    "")


@dataclass
class Answer:
    text: str
    latency_s: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ModelResult:
    spec: ModelSpec
    answers: list[Answer] = field(default_factory=list)
    metrics: dict[str, float | None] = field(default_factory=dict)
    judge: dict[str, Any] | None = None
    checks: list[fluency.AnswerCheck] = field(default_factory=list)  # one per answer
    unavailable: dict[str, str] = field(default_factory=dict)  # metric -> why it has none

    def answer_dicts(self) -> list[dict[str, Any]]:
        """Each answer with its loop, distinct-2 and language check, as JSON shows it."""
        return [{**answer.to_dict(), **check.to_dict()}
                for answer, check in zip(self.answers, self.checks, strict=True)]


def eval_items(examples: list[dict[str, Any]], source: str = "eval file") -> list[EvalItem]:
    """Split each example at its last assistant turn."""
    items = []
    for number, example in enumerate(examples, 1):
        messages = example["messages"]
        last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"),
                   default=-1)
        if last <= 0:
            raise DataError(f"example {number} has no assistant answer after a prompt",
                            path=source, fix="every eval example needs a final assistant turn")
        items.append(EvalItem(messages[:last], messages[last].get("content") or "", example))
    return items


class Asker:
    """Asks models through their providers, once per (model, messages, settings)."""

    def __init__(self, cache: AnswerCache) -> None:
        self.cache = cache
        self._providers: dict[tuple[str, str | None], Provider] = {}
        self._golden: dict[str, golden.GoldenSet] = {}

    def ask(self, spec: ModelSpec, messages: list[dict[str, Any]],
            settings: Settings) -> Answer:
        if spec.is_recorded:
            return self.recorded(spec, messages)
        def send() -> dict[str, Any]:
            reply = self.provider(spec).chat(spec.model, messages, settings.chat_options())
            return Answer(reply.text, reply.latency_s, reply.prompt_tokens,
                          reply.completion_tokens).to_dict()

        value, hit = self.cached(spec, messages, settings.cache_dict(), send)
        return Answer(**{**value, "cached": hit})

    def ask_many(self, spec: ModelSpec, conversations: list[list[dict[str, Any]]],
                 settings: Settings, advance: Callable[[int], None] | None = None
                 ) -> list[Answer]:
        """`ask` for each conversation, in order; `advance` is told how many more are
        answered. A local model answers those the cache lacks in batches, and each one's
        latency is its batch's time over the batch's rows (the machine's time per answer)."""
        if not spec.is_local:
            answers = []
            for messages in conversations:
                answers.append(self.ask(spec, messages, settings))
                if advance:
                    advance(1)
            return answers
        keys = [cache_key(spec.identity, messages, settings.cache_dict())
                for messages in conversations]
        found = [self.cache.get(key) for key in keys]
        missing = [index for index, value in enumerate(found) if value is None]
        if advance:
            advance(len(keys) - len(missing))
        if missing:
            from tunelab.local.inference import load_chat_model

            completions = load_chat_model(spec.model).complete_many(
                [conversations[index] for index in missing],
                max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
                top_p=settings.top_p, seed=settings.seed,
                repetition_penalty=settings.repetition_penalty, progress=advance)
            for index, done in zip(missing, completions, strict=True):
                found[index] = Answer(done.text, done.seconds, done.prompt_tokens,
                                      done.completion_tokens).to_dict()
                self.cache.put(keys[index], spec.identity, found[index])
        asked = set(missing)
        return [Answer(**{**value, "cached": index not in asked})
                for index, value in enumerate(found)]

    def recorded(self, spec: ModelSpec, messages: list[dict[str, Any]]) -> Answer:
        """A recorded model's greedy answer to `messages`, as it was given (with its
        latency and tokens); nothing is asked."""
        if spec.model not in self._golden:
            self._golden[spec.model] = golden.load(spec.model)
        found = self._golden[spec.model].greedy(messages)
        if found is None:
            asked = next((m.get("content") for m in reversed(messages)
                          if m.get("role") == "user"), "")
            raise NotFoundError(f"{spec.model} was not recorded answering {str(asked)[:60]!r}",
                                fix="compare on its golden set (drop --eval), or record it: "
                                    f"`{command('tunelab', 'migrate', 'record', spec.model)}"
                                    " --prompts FILE`")
        return Answer(found.answer, found.latency_s, found.prompt_tokens,
                      found.completion_tokens)

    def provider(self, spec: ModelSpec) -> Provider:
        from tunelab.providers import get_provider

        slot = (spec.provider, spec.base_url)
        if slot not in self._providers:
            self._providers[slot] = get_provider(spec.provider, base_url=spec.base_url)
        return self._providers[slot]

    def held_out(self, spec: ModelSpec, items: list[EvalItem]) -> dict[str, float]:
        """A local model's validation loss and token accuracy on the eval examples, by the
        trainer's own validation function (cached too), in the metric vocabulary."""
        examples = [item.example for item in items]

        def measure() -> dict[str, Any]:
            from tunelab.local.inference import load_chat_model

            result = load_chat_model(spec.model).validation(examples)
            return {VALID_LOSS: result.loss, VALID_ACCURACY: result.accuracy}

        # Keyed "validation": values cached as "mean_loss" were cut at 4096 tokens.
        value, _ = self.cached(spec, {"validation": examples}, {}, measure)
        return value

    def cached(self, spec: ModelSpec, request: Any, settings: dict[str, Any],
               compute: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
        """The stored value for (model, request, settings), or compute and store it."""
        key = cache_key(spec.identity, request, settings)
        hit = self.cache.get(key)
        if hit is not None:
            return hit, True
        value = compute()
        self.cache.put(key, spec.identity, value)
        return value, False


def run_models(specs: list[ModelSpec], items: list[EvalItem], settings: Settings,
               asker: Asker, progress: Progress | None = None) -> list[ModelResult]:
    """Every model answers every item; then each model's metrics."""
    results = []
    for spec in specs:
        result = ModelResult(spec)
        done = 0

        def advance(count: int, label: str = spec.label) -> None:
            nonlocal done
            done += count
            if progress:
                progress(label, done, len(items))

        result.answers = asker.ask_many(spec, [item.prompt for item in items], settings,
                                        advance)
        result.metrics = score(spec, result.answers, items)
        result.checks = [fluency.check(item.question, answer.text)
                         for item, answer in zip(items, result.answers, strict=True)]
        if spec.is_local:
            held_out = asker.held_out(spec, items)
            result.metrics.update(held_out, perplexity=metrics.perplexity(held_out[VALID_LOSS]))
        results.append(result)
    return results


def score(spec: ModelSpec, answers: list[Answer], items: list[EvalItem]) -> dict[str, Any]:
    """Similarity to the references, length, latency, price, loops, variety and language of
    one model's answers."""
    texts = [answer.text for answer in answers]
    references = [item.reference for item in items]
    latencies = [answer.latency_s for answer in answers]
    pairs = list(zip(texts, references, strict=True))
    return {
        "chrf": metrics.corpus_chrf(texts, references),
        "rouge_l": metrics.mean([metrics.rouge_l(a, r) for a, r in pairs]),
        "length_ratio": metrics.mean([metrics.length_ratio(a, r) for a, r in pairs]),
        "latency_p50_s": metrics.percentile(latencies, 50),
        "latency_p95_s": metrics.percentile(latencies, 95),
        "cost_per_1k_requests": cost_per_1k(spec, answers),
        **fluency.summary([item.question for item in items], texts),
    }


def cost_per_1k(spec: ModelSpec, answers: list[Answer]) -> float | None:
    """Dollars for 1,000 requests the size of these; 0 on this machine; None if unpriced."""
    if spec.is_local:
        return 0.0
    prompt = [a.prompt_tokens for a in answers if a.prompt_tokens is not None]
    completion = [a.completion_tokens for a in answers if a.completion_tokens is not None]
    if not prompt or not completion:
        return None
    from tunelab.data.pricing import inference_cost_per_1k

    return inference_cost_per_1k(spec.priced_as or spec.provider, spec.model,
                                 metrics.mean(prompt), metrics.mean(completion))

