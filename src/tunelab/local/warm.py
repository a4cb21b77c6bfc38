"""One loaded base model and one tokenized dataset, lent to many runs in one process.

A sweep trains trial after trial on the same base and the same data. Loading the model and
tokenizing the examples once, then putting a fresh LoRA adapter on the same base for each
trial, saves both costs on every trial after the first. Between trials the base goes back
to exactly what was loaded: the adapter layers peft injected are replaced by the layers they
wrapped (LoRA never writes the base weights, so those stay bit-identical), the forwards the
speed kernels patched in place (local/kernels/) are removed, and so is the `peft_config`
attribute peft leaves on the base.

A full fine-tune trains every weight, so it is never lent the shared base: it loads its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tunelab.config import TrainConfig
from tunelab.local import prepare
from tunelab.local.methods import Method, method_for
from tunelab.local.methods.dpo import SELF_LOSS
from tunelab.local.trainer import Judge
from tunelab.local.validation import Validation, loss_for, measure_validation


@dataclass
class WarmStart:
    """The tokenizer, the examples, their tokenized forms and the base model of one model."""

    model: str | None  # the config.model everything here was loaded for
    examples: prepare.Examples
    tokenizer: Any
    base: Any
    _tokenized: dict[tuple[str, int], prepare.Tokenized] = field(default_factory=dict)
    _patched_before: set[int] = field(default_factory=set)  # modules with their own forward
    _attributes: set[str] = field(default_factory=set)  # the base's own, as loaded

    @classmethod
    def load(cls, config: TrainConfig) -> WarmStart:
        """Read the examples and load the tokenizer and base model of `config` once."""
        from tunelab.local.model_source import load_model, load_tokenizer

        examples = prepare.read_examples(config)
        base = load_model(config.model)
        own = {id(module) for module in base.modules() if "forward" in module.__dict__}
        return cls(config.model, examples, load_tokenizer(config.model), base,
                   _patched_before=own, _attributes=set(vars(base)))

    def tokenized(self, config: TrainConfig, method: Method | None = None) -> prepare.Tokenized:
        """The examples as `method` (default: config.method's) encodes them for `config`; the
        training side depends on max_length only, the validation side on nothing (it is
        never cut)."""
        method = method or method_for(config)
        cached = self._tokenized.get((method.name, config.max_length))
        if cached is None:
            earlier = next((tokenized for (name, _), tokenized in self._tokenized.items()
                            if name == method.name), None)
            if earlier is None:
                cached = prepare.tokenize(config, self.tokenizer, self.examples, method)
            else:
                train_only = prepare.Examples(self.examples.train, None)
                cached = prepare.Tokenized(
                    prepare.tokenize(config, self.tokenizer, train_only, method).train,
                    earlier.validation)
            self._tokenized[method.name, config.max_length] = cached
        return cached

    def base_validation(self, config: TrainConfig) -> Validation | None:
        """The untouched base model's validation loss: the line a trial must stay under.
        Under DPO the base is its own reference, so its loss is ln 2 on any pairs (every
        implicit reward is 0) and no pair is ranked right: said, not measured."""
        validation = self.tokenized(config).validation
        if validation is None or not validation.items:
            return None
        if config.method == "dpo":
            return Validation(SELF_LOSS, 0.0, validation.loss_tokens)
        return measure_validation(loss_for(self.base), validation, self.tokenizer.pad_token_id)

    @contextlib.contextmanager
    def lend(self, config: TrainConfig) -> Iterator[Any]:
        """The shared base for one LoRA run (None for a full fine-tune or another model),
        restored when the run is done, however it ends."""
        if config.full or config.model != self.model:
            yield None
            return
        try:
            yield self.base
        finally:
            self._restore()

    def _restore(self) -> None:
        from peft.tuners.tuners_utils import BaseTunerLayer

        for name, module in list(self.base.named_modules()):
            if isinstance(module, BaseTunerLayer):
                parent, _, child = name.rpartition(".")
                setattr(self.base.get_submodule(parent), child, module.get_base_layer())
        for module in self.base.modules():
            if id(module) not in self._patched_before:
                module.__dict__.pop("forward", None)
        for name in set(vars(self.base)) - self._attributes:  # peft_config, which peft
            delattr(self.base, name)  # takes for a second adapter on the next trial
        for parameter in self.base.parameters():
            parameter.grad = None
        self.base.eval()


@dataclass(frozen=True)
class Trial:
    """How a sweep runs one trial through the orchestrator: the warm start it shares, the
    labels its registry row carries, and the judge that may prune it."""

    warm: WarmStart
    metadata: dict[str, str]
    hyperparameters: dict[str, Any]
    judge: Judge | None = None
