"""Chat with a local model: a base model or a run's LoRA adapter, on CUDA if present, else CPU.

A ref is either anything `model_source.resolve_model_dir` takes (the embedded default, a HF
folder, a .gguf file, a cached hub id), or a PEFT adapter folder such as
`TUNELAB_HOME/runs/<job-id>/adapter/` (a run folder itself works too). The adapter's
`adapter_config.json` names the base model it was trained on.

Loaded models are kept for the life of the process: `compare` asks the same model for many
answers, and `chat` for many turns.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from tunelab.errors import DataError
from tunelab.local import model_source
from tunelab.local.encoding import IGNORE, encode_examples
from tunelab.local.export import ADAPTER_CONFIG, adapter_base

MAX_LOSS_TOKENS = 4096  # longer held-out examples are cut here: loss is a mean, not a sum


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int


class ChatModel:
    """A loaded causal LM with its tokenizer and chat template."""

    def __init__(self, name: str, model: Any, tokenizer: Any) -> None:
        self.name = name
        self.model = model
        self.tokenizer = tokenizer

    def generate(self, messages: list[dict[str, Any]], *, max_new_tokens: int = 256,
                 temperature: float = 0.0, top_p: float = 1.0, seed: int = 0) -> str:
        """The assistant's next message. Greedy when temperature is 0; seeded otherwise."""
        return self.complete(messages, max_new_tokens=max_new_tokens, temperature=temperature,
                             top_p=top_p, seed=seed).text

    def complete(self, messages: list[dict[str, Any]], *, max_new_tokens: int = 256,
                 temperature: float = 0.0, top_p: float = 1.0, seed: int = 0) -> Completion:
        """Like `generate`, with the token counts a provider reports."""
        import torch

        prompt_ids = self._encode(messages, add_generation_prompt=True)
        sampling = {"do_sample": False}
        if temperature > 0:
            sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p}
        torch.manual_seed(seed)
        device = self.model.device
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=torch.tensor([prompt_ids], device=device),
                attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long, device=device),
                max_new_tokens=max_new_tokens, pad_token_id=self.tokenizer.pad_token_id,
                top_k=None, **sampling)
        new_ids = output[0, len(prompt_ids):].tolist()
        text = self.tokenizer.decode(new_ids, skip_special_tokens=True).strip()
        return Completion(text, len(prompt_ids), len(new_ids))

    def mean_loss(self, examples: list[dict[str, Any]]) -> float:
        """Mean cross-entropy over every assistant token of `examples`, labelled exactly as
        the trainer labels them, so it compares with the run's validation loss."""
        import torch

        encoded = encode_examples(self.tokenizer, examples, MAX_LOSS_TOKENS, source="eval")
        if not encoded.loss_tokens:
            raise DataError("no assistant tokens to score in the evaluation examples",
                            fix="give the eval file conversations that end with an assistant turn")
        total_loss, total_tokens, device = 0.0, 0, self.model.device
        with torch.inference_mode():
            for item in encoded.items:
                scored = sum(label != IGNORE for label in item.labels[1:])
                out = self.model(input_ids=torch.tensor([item.input_ids], device=device),
                                 labels=torch.tensor([item.labels], device=device))
                total_loss += float(out.loss) * scored
                total_tokens += scored
        return total_loss / total_tokens

    def _encode(self, messages: list[dict[str, Any]], *, add_generation_prompt: bool) -> list[int]:
        text = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]


def adapter_dir(ref: str | Path) -> Path | None:
    """The adapter folder `ref` points at (an adapter folder or a run folder), else None."""
    path = Path(ref).expanduser()
    for candidate in (path, path / "adapter"):
        if (candidate / ADAPTER_CONFIG).is_file():
            return candidate.resolve()
    return None


def load_chat_model(ref: str) -> ChatModel:
    """Load a base model or a run's adapter for chat and scoring (cached per process)."""
    adapter = adapter_dir(ref)
    if adapter is not None:
        return _load_adapter(str(adapter))
    return _load_base(str(model_source.resolve_model_dir(ref)))


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@lru_cache(maxsize=2)
def _load_base(model_dir: str) -> ChatModel:
    model = model_source.load_model(model_dir).to(_device())
    model.eval()
    return ChatModel(Path(model_dir).name, model, model_source.load_tokenizer(model_dir))


@lru_cache(maxsize=2)
def _load_adapter(folder: str) -> ChatModel:
    from peft import PeftModel

    base = adapter_base(Path(folder))
    # A fresh base each time: PEFT injects its layers into the model it is given, which
    # would silently turn a cached base model into the tuned one.
    model = PeftModel.from_pretrained(model_source.load_model(base), folder).to(_device())
    model.eval()
    return ChatModel(Path(folder).parent.name, model, model_source.load_tokenizer(base))

