"""Direct preference optimisation: prefer `preferred_output` over `non_preferred_output`.

OpenAI's "dpo" method (Rafailov et al. 2023), on OpenAI's preference rows (pair_scores.py
encodes them). For a pair, with pc/pn the policy's summed log-probabilities of the preferred
and non-preferred answers and rc/rn the reference model's, the loss is TRL's "sigmoid" one:

    -logsigmoid(beta * ((pc - rc) - (pn - rn))),   the mean over pairs

`beta * (logp - reference logp)` is each answer's implicit reward. The reference model is the
model training starts from; its log-probabilities are computed once, before the first step,
and kept on disk (reference_logps.py), so every step runs the policy only. Each batch is one
forward over both answers of its pairs (2B rows), and only answer tokens are projected onto
the vocabulary (the chunked kernel's sequence_logps, kernels/chunked_loss.py).

Dropout is switched off for the whole run, as TRL does by default: the policy then equals
the reference at step 0 and the first loss is ln 2 exactly.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from tunelab.local.batching import collate
from tunelab.local.encoding import EncodedSet
from tunelab.local.methods.protocol import Measured
from tunelab.local.pair_scores import Pair, encode_pairs, pair_rows
from tunelab.registry import metrics as vocabulary

if TYPE_CHECKING:
    import torch
    from torch import nn

    from tunelab.config import KernelMode, TrainConfig

DEFAULT_BETA = 0.1  # OpenAI's and TRL's default
SUMS = ("pairs", "loss", "correct", "margin", "preferred", "non_preferred")


class DPO:
    name = "dpo"
    train_metric_names = vocabulary.PREFERENCE_TRAIN_METRICS
    valid_metric_names = vocabulary.PREFERENCE_VALID_METRICS

    def __init__(self, config: TrainConfig | None = None) -> None:
        self.beta = (config.beta if config is not None else None) or DEFAULT_BETA

    def read(self, path: str) -> list[dict]:
        """The checked pairs (data/preference.py's rules, as `data check` applies them), as
        OpenAI's rows."""
        from tunelab.data.preference import read_pairs

        return [pair.as_row() for pair in read_pairs(path)]

    def encode(self, tokenizer: Any, examples: list[dict], *, max_length: int | None,
               source: str) -> EncodedSet:
        return encode_pairs(tokenizer, examples, max_length=max_length, source=source)

    def collate(self, items: list[Pair], pad_id: int) -> dict[str, torch.Tensor]:
        """Both answers of every pair, preferred rows first, and their reference scores."""
        import torch

        if any(pair.reference is None for pair in items):
            raise RuntimeError("DPO batch without reference log-probabilities: "
                               "prepare() fills them before training")
        batch = collate(pair_rows(items), pad_id)
        batch["reference_logps"] = torch.tensor(
            [pair.reference[0] for pair in items] + [pair.reference[1] for pair in items],
            dtype=torch.float32)
        return batch

    def loss_module(self, model: nn.Module, kernels: KernelMode) -> tuple[nn.Module, str]:
        from tunelab.local import kernels as speed
        from tunelab.local.preference_loss import PreferenceLoss, no_dropout

        no_dropout(model)
        applied = speed.apply(model, kernels)
        return PreferenceLoss(applied.loss, self.beta), applied.note

    def prepare(self, loss_module: nn.Module, sets: list[EncodedSet], *,
                config: TrainConfig, pad_id: int, fresh: bool) -> str:
        """The reference log-probabilities of every pair of `sets`, from the cache or
        computed now (reference_logps.py); the line the run's log says it with."""
        from tunelab.local.reference_logps import fill_reference

        return fill_reference(loss_module.scorer, sets, config=config, pad_id=pad_id,
                              fresh=fresh)

    def loss(self, loss_module: nn.Module, batch: dict[str, torch.Tensor],
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        from accelerate.utils import extract_model_from_parallel

        loss = loss_module(**batch)  # through accelerate's wrapper: DDP syncs gradients there
        return loss, extract_model_from_parallel(loss_module).last

    def train_metrics(self, sums: dict[str, float]) -> dict[str, float]:
        return means(sums, self.train_metric_names)

    def validate(self, loss_module: nn.Module, encoded: EncodedSet, pad_id: int) -> Measured:
        import torch

        from tunelab.local.pair_scores import pair_scores
        from tunelab.local.preference_loss import preference_sums

        scored = pair_scores(loss_module.scorer, encoded.items, pad_id)
        policy = torch.tensor([score for pair in scored for score in pair]).view(-1, 2)
        reference = torch.tensor([pair.reference for pair in encoded.items]).view(-1, 2)
        sums = {name: float(value) for name, value in
                preference_sums(policy.t().reshape(-1), reference.t().reshape(-1),
                                self.beta).items()}
        return Measured(sums["loss"] / max(1, sums["pairs"]),
                        means(sums, self.valid_metric_names))


def means(sums: dict[str, float], names: tuple[str, ...]) -> dict[str, float]:
    """The per-pair means of `sums`, named (in SUMS' order after the loss) by `names`."""
    pairs = max(1.0, sums["pairs"])
    return {name: sums[key] / pairs for name, key in zip(names, SUMS[2:], strict=True)}


# ln 2: the DPO loss of any model against itself (every margin is 0), the line a base model
# "scores" on its own validation pairs.
SELF_LOSS = math.log(2)
