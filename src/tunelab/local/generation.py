"""How a local model answers unless told otherwise: the one home of the generation defaults
that `tunelab test`, `chat`, `compare`, the after-training samples and `serve` use.

The numbers were chosen by measurement: bench/generation_defaults.py, written up in
bench/README.md ("Generation defaults"). In short: greedy (reproducible, and sampling at
T=0.7 looped no less on the 135M model), with transformers' repetition penalty at 1.2, which
stopped the tuned demo model's loops without costing the base model anything measured.

A model's own generation_config.json wins over tunelab's repetition penalty when it sets one
(SmolLM2-135M-Instruct sets none: its file holds only the token ids). Temperature and top_p
stay tunelab's: a comparison must be reproducible unless the user asks for sampling.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Generation:
    """Generation settings in transformers' terms. temperature 0 means greedy."""

    max_new_tokens: int = 128  # longer than 95% of the sample data's answers (bench/README.md)
    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.2  # 1.0 = off; >1 lowers the odds of any token seen before
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def hf_kwargs(self) -> dict[str, Any]:
        """The keyword arguments for `model.generate`, sampling or greedy."""
        chosen: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": False,
                                  "repetition_penalty": self.repetition_penalty, "top_k": None}
        if self.temperature > 0:
            chosen.update(do_sample=True, temperature=self.temperature, top_p=self.top_p)
        return chosen


DEFAULT = Generation()


def model_default(model_config: Any) -> Generation:
    """DEFAULT, with the repetition penalty the model's own generation config sets, if any."""
    own = getattr(model_config, "repetition_penalty", None)
    return replace(DEFAULT, repetition_penalty=float(own)) if own is not None else DEFAULT
