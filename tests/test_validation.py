"""The one validation function (local/validation.py) and the token accuracy the losses count,
on a tiny random Llama: fast, no embedded model needed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tunelab.local.assistant_loss import AssistantLoss
from tunelab.local.encoding import IGNORE, Encoded, EncodedSet
from tunelab.local.kernels.chunked_loss import ChunkedAssistantLoss, projected_cross_entropy
from tunelab.local.validation import (
    Validation,
    loss_for,
    measure_validation,
    token_batches,
    within_context,
)

VOCAB = 64


def tiny_llama(seed: int = 0, context: int = 64) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=context)
    return LlamaForCausalLM(config).eval()


def example(seed: int, length: int, answer_from: int) -> Encoded:
    """`length` tokens whose labels start at `answer_from` (the assistant's answer)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (length,), generator=generator).tolist()
    return Encoded(ids, [IGNORE] * answer_from + ids[answer_from:])


def reference(model: nn.Module, items: list[Encoded]) -> tuple[float, float, int]:
    """Loss, accuracy and token count the plain way: one example at a time, full logits."""
    total, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for item in items:
            logits = model(input_ids=torch.tensor([item.input_ids])).logits[0, :-1]
            targets = torch.tensor(item.labels[1:])
            keep = targets != IGNORE
            total += float(nn.functional.cross_entropy(logits[keep], targets[keep],
                                                       reduction="sum"))
            correct += int((logits[keep].argmax(-1) == targets[keep]).sum())
            count += int(keep.sum())
    return total / count, correct / count, count


@pytest.mark.parametrize("grad", [False, True])
def test_the_chunked_loss_counts_every_row_whose_argmax_is_the_target(grad: bool) -> None:
    torch.manual_seed(1)
    hidden = torch.randn(37, 8, requires_grad=grad)
    weight = torch.randn(VOCAB, 8)
    targets = torch.randint(0, VOCAB, (37,))
    targets[:5] = (hidden[:5] @ weight.t()).argmax(1)  # some rows right, whatever the seed
    correct = torch.zeros((), dtype=torch.long)
    workspace = torch.empty(4, VOCAB)  # 10 chunks, the last one short
    summed = projected_cross_entropy(hidden, weight, targets, workspace, correct=correct)
    logits = hidden.detach() @ weight.t()
    assert int(correct) == int((logits.argmax(1) == targets).sum()) >= 5
    torch.testing.assert_close(summed.detach(), nn.functional.cross_entropy(
        logits, targets, reduction="sum"))


def test_plain_and_chunked_losses_sum_the_same_tokens_and_hits() -> None:
    model = tiny_llama(seed=2)
    items = [example(1, 20, 8), example(2, 13, 5), example(3, 9, 2)]
    batch = {"input_ids": torch.tensor([item.input_ids + [0] * (20 - len(item))
                                        for item in items]),
             "attention_mask": torch.tensor([[1] * len(item) + [0] * (20 - len(item))
                                             for item in items]),
             "labels": torch.tensor([item.labels + [IGNORE] * (20 - len(item))
                                     for item in items])}
    with torch.no_grad():
        predicted = model(input_ids=batch["input_ids"]).logits.argmax(-1)
    # Every other labelled token becomes what the model predicts there: some hits to count.
    hits = (batch["labels"][:, 1:] != IGNORE) & (torch.arange(19) % 2 == 0)
    batch["labels"][:, 1:][hits] = predicted[:, :-1][hits]
    with torch.no_grad():
        plain = AssistantLoss(model).loss_sum(**batch)
        chunked = ChunkedAssistantLoss(model).loss_sum(**batch)
    torch.testing.assert_close(plain.loss, chunked.loss)
    assert int(plain.correct) == int(chunked.correct) >= int(hits.sum())
    assert int(plain.count) == int(chunked.count) == (20 - 8) + (13 - 5) + (9 - 2)


def test_training_forward_leaves_its_sums_for_the_step_accuracy() -> None:
    model = tiny_llama(seed=3).train()
    loss_model = ChunkedAssistantLoss(model)
    item = example(4, 16, 6)
    loss = loss_model(torch.tensor([item.input_ids]), torch.ones(1, 16, dtype=torch.long),
                      torch.tensor([item.labels]))
    loss.backward()  # the counts ride beside the graph, not in it
    expected_loss, expected_accuracy, count = reference(model.eval(), [item])
    assert float(loss.detach()) == pytest.approx(expected_loss, rel=1e-5)
    assert int(loss_model.last.count) == count
    assert int(loss_model.last.correct) / count == pytest.approx(expected_accuracy)


def test_validation_is_token_weighted_over_whole_examples_whatever_the_batching(
        monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_llama(seed=5)
    items = [example(10 + n, length, length // 3) for n, length in enumerate(
        (40, 7, 23, 40, 12, 31))]
    expected = reference(model, items)
    encoded = EncodedSet(items=items)
    first = measure_validation(ChunkedAssistantLoss(model), encoded, pad_id=0)
    assert first.tokens == expected[2]
    assert first.loss == pytest.approx(expected[0], rel=1e-5)
    assert first.accuracy == pytest.approx(expected[1])
    # Other batch shapes and the plain loss: the same number.
    monkeypatch.setattr("tunelab.local.validation.BATCH_TOKENS", 41)
    second = measure_validation(AssistantLoss(model), encoded, pad_id=0)
    assert second.loss == pytest.approx(first.loss, rel=1e-5)
    assert second.tokens == first.tokens
    assert model.training is False


def test_only_the_model_context_cuts_an_example_and_training_mode_comes_back() -> None:
    model = tiny_llama(seed=6, context=24).train()
    long = example(20, 40, 4)
    result = measure_validation(loss_for(model), EncodedSet(items=[long]), pad_id=0)
    assert isinstance(result, Validation) and result.tokens == 24 - 4
    assert model.training  # dropout etc. are back on for the next step
    assert within_context([long], None) == [long]


def test_token_batches_fill_the_budget_longest_first() -> None:
    items = [Encoded([1] * n, [1] * n) for n in (3, 10, 5, 10, 2)]
    batches = token_batches(items, max_tokens=20)
    assert [[len(item) for item in batch] for batch in batches] == [[10, 10], [5, 3, 2]]
    assert token_batches([Encoded([1] * 50, [1] * 50)], max_tokens=20)[0][0].input_ids
