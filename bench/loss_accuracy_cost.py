#!/usr/bin/env python
"""What counting token accuracy costs the chunked loss: `projected_cross_entropy` at a real
step's size (1,000 labelled tokens of SmolLM2: hidden 576, vocabulary 49,152, fp32, the
gradient wanted), with `correct` counted and not, alternating every call so a shared CPU's
noise hits both alike.

    .venv/bin/python bench/loss_accuracy_cost.py [calls]
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

from tunelab.local.kernels.chunked_loss import WORKSPACE_BYTES, projected_cross_entropy


def main(calls: int) -> None:
    torch.manual_seed(0)
    vocab = 49152
    hidden = torch.randn(1000, 576, requires_grad=True)
    weight = torch.randn(vocab, 576) * 0.02
    targets = torch.randint(0, vocab, (1000,))
    workspace = torch.empty(max(1, WORKSPACE_BYTES // (4 * vocab)), vocab)
    times: dict[str, list[float]] = {"on": [], "off": []}
    for call in range(calls + 1):
        for name in times:
            correct = torch.zeros((), dtype=torch.long) if name == "on" else None
            began = time.perf_counter()
            projected_cross_entropy(hidden, weight, targets, workspace, correct=correct)
            if call:  # the first call of each warms up
                times[name].append(time.perf_counter() - began)
    for name, values in times.items():
        print(f"count {name}: min {min(values) * 1e3:.1f} ms, "
              f"median {statistics.median(values) * 1e3:.1f} ms")
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"added by counting: {(median['on'] - median['off']) * 1e3:+.1f} ms (median)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 40)
