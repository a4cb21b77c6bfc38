"""Length-grouped batches whose order is a pure function of (seed, epoch).

Because each epoch's order is derived, never stored, resume needs only the epoch number
and how many batches of it were consumed to land on the exact same next batch.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from tunelab.local.encoding import IGNORE, Encoded

# Examples are sorted by length inside windows of this many batches: padding nearly
# vanishes, yet batches still mix examples from all over the shuffled epoch.
GROUP_WINDOW = 16


def epoch_batches(lengths: Sequence[int], batch_size: int, seed: int,
                  epoch: int) -> list[list[int]]:
    """The batches (lists of example indexes) of one epoch, in training order."""
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * GROUP_WINDOW
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        group = sorted(order[start:start + window], key=lambda i: -lengths[i])
        batches.extend(group[i:i + batch_size] for i in range(0, len(group), batch_size))
    rng.shuffle(batches)
    largest_first(batches, lengths)
    return batches


def largest_first(batches: list[list[int]], lengths: Sequence[int]) -> None:
    """Swap the batch with the most (padded) tokens to the front, in place.

    The first step then allocates the epoch's largest activations, and every later step
    fits in memory the allocator already holds. Measured on the sample data (batch 4, max
    length 512): peak RSS 5.1 GB when the 4 x 512 batch came eighth, after smaller steps
    had fragmented the heap, against 4.1 GB when it comes first. It also makes an
    out-of-memory error happen at step 1 instead of hours in (as HF's LengthGroupedSampler).
    """
    if not batches:
        return
    sizes = [len(batch) * max(lengths[i] for i in batch) for batch in batches]
    largest = sizes.index(max(sizes))
    batches[0], batches[largest] = batches[largest], batches[0]


def eval_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Validation batches: longest first, no shuffling (the order changes nothing)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def collate(items: list[Encoded], pad_id: int) -> dict[str, Any]:
    """Right-pad a batch: input_ids, attention_mask and labels (IGNORE on padding)."""
    import torch

    width = max(len(item) for item in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, item in enumerate(items):
        ids[row, : len(item)] = torch.tensor(item.input_ids)
        labels[row, : len(item)] = torch.tensor(item.labels)
        mask[row, : len(item)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
