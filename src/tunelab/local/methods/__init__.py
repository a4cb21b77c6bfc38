"""Training methods: what a run learns from its examples, as a component the loop is handed.

    protocol    the Method Protocol (encode, collate, loss module, loss, metrics, validate)
                and Measured, what a step or a validation measured
    supervised  supervised fine-tuning on assistant turns, the kernels' chunked loss behind it
    dpo         direct preference optimisation on preference pairs, against the reference
                log-probabilities computed once (reference_logps.py)

A new method is a class meeting the Protocol, one entry in METHODS and its name in
config.MethodName; its metric names join the vocabulary (registry/metrics.py).
"""

from __future__ import annotations

from collections.abc import Callable

from tunelab.config import TrainConfig
from tunelab.local.methods.dpo import DPO
from tunelab.local.methods.protocol import Measured, Method
from tunelab.local.methods.supervised import Supervised
from tunelab.registry.metrics import STEP_METRICS

__all__ = ["METHODS", "Measured", "Method", "method_for", "vocabulary_problem"]

# config.MethodName's values, each to the method it names, made from the run's config.
METHODS: dict[str, Callable[[TrainConfig], Method]] = {
    "supervised": lambda _config: Supervised(), "dpo": DPO}


def method_for(config: TrainConfig) -> Method:
    """The method `config.method` names (TrainConfig accepts no other name)."""
    return METHODS[config.method](config)


def vocabulary_problem(method: Method) -> str | None:
    """What is wrong with `method`'s metric names, if any: the registry, metrics.jsonl and
    every view keep the vocabulary's names only and would drop any other without a word."""
    unknown = [name for name in (*method.train_metric_names, *method.valid_metric_names)
               if name not in STEP_METRICS]
    if not unknown:
        return None
    return (f"method {method.name!r} reports metrics outside the vocabulary "
            f"(registry/metrics.py): {', '.join(unknown)}")
