"""The Ollama Modelfile beside an exported GGUF, with the chat template kept.

Ollama does not run a model's Jinja chat template: it wants a Go template. Fine-tunes that
"babble or never stop" once in Ollama lost exactly this (or their stop tokens). We don't
translate Jinja; we ask the HF template itself. Rendering a few probe chats whose contents
are unique markers shows the literal text around each role's content, the default system
block (when a chat has none) and the generation prompt. Those pieces become a Go template,
and before anything is written they are checked to rebuild every probe exactly: a template
that is not "text, content, text" per message (Mistral's [INST] folding, say) is refused
with one line rather than written wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tunelab.errors import UsageError

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class ChatPieces:
    """The literal text a chat template puts around each message."""

    first_system: str  # before a system message that opens the chat (BOS included)
    default_system: str  # what opens a chat with no system message, up to its first message
    prefix: dict[str, str]  # before a message of each role (a later system message included)
    suffix: dict[str, str]  # after it
    generation: str  # after the last message when the assistant is to answer

    def render(self, messages: list[dict[str, str]], *, add_generation_prompt: bool) -> str:
        """What the template renders: the Python twin of `go_template`."""
        parts = []
        for index, message in enumerate(messages):
            role = message["role"]
            if index == 0:
                parts.append(self.first_system if role == "system" else self.default_system)
            if index or role != "system":
                parts.append(self.prefix[role])
            parts += [message["content"], self.suffix[role]]
        if add_generation_prompt:
            parts.append(self.generation)
        return "".join(parts)


def chat_pieces(tokenizer: Any) -> ChatPieces:
    """Read the pieces off the tokenizer's chat template, checked against it."""
    if not tokenizer.chat_template:
        raise UsageError("the tokenizer has no chat template, so Ollama could not tell turns "
                         "apart", fix="export with --format hf, or train from an instruct "
                                      "model that has one")
    try:
        pieces = _derive(lambda messages, gen: tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=gen))
    except Exception as error:  # the template raised on a probe, or the pieces don't line up
        raise _unsupported(f"{type(error).__name__}: {str(error).splitlines()[0][:120]}") from None
    for messages in _probes():
        for gen in (True, False):
            expected = tokenizer.apply_chat_template(messages, tokenize=False,
                                                     add_generation_prompt=gen)
            if pieces.render(messages, add_generation_prompt=gen) != expected:
                raise _unsupported("its text is not the same around every message")
    return pieces


def go_template(pieces: ChatPieces) -> str:
    """Ollama's TEMPLATE for the pieces. Every literal is a quoted Go string, so the
    `{{-` trims that lay the template out can never eat a newline of the model's text.
    The generation prompt follows the last message unless the assistant wrote it (Ollama's
    way of continuing a reply)."""
    q = _go_string
    lines = [
        "{{- range $i, $_ := .Messages }}",
        "{{- $last := eq (len (slice $.Messages $i)) 1 }}",
        f'{{{{- if eq $i 0 }}}}{{{{ if eq .Role "system" }}}}{{{{ {q(pieces.first_system)} }}}}'
        f"{{{{ else }}}}{{{{ {q(pieces.default_system)} }}}}{{{{ end }}}}{{{{ end }}}}",
    ]
    for index, role in enumerate(ROLES):
        keyword = "if" if index == 0 else "else if"
        prefix = f"{{{{ {q(pieces.prefix[role])} }}}}"
        if role == "system":  # an opening system message took first_system instead
            prefix = f"{{{{ if ne $i 0 }}}}{prefix}{{{{ end }}}}"
        lines.append(f'{{{{- {keyword} eq .Role "{role}" }}}}{prefix}{{{{ .Content }}}}'
                     f"{{{{ {q(pieces.suffix[role])} }}}}")
    lines += [
        "{{- end }}",
        f'{{{{- if and $last (ne .Role "assistant") }}}}{{{{ {q(pieces.generation)} }}}}'
        "{{ end }}",
        "{{- end }}",
    ]
    return "\n".join(lines)


def stop_tokens(tokenizer: Any, pieces: ChatPieces, extra_ids: list[int]) -> list[str]:
    """The texts Ollama must stop at: the end-of-sequence token, any other end ids the model's
    generation config names, and a special token that would open a new turn."""
    special = set(tokenizer.all_special_tokens) | {
        token.content for token in tokenizer.added_tokens_decoder.values() if token.special}
    stops = [tokenizer.eos_token] if tokenizer.eos_token else []
    stops += [tokenizer.convert_ids_to_tokens(token_id) for token_id in extra_ids]
    opener = next((token for token in sorted(special, key=len, reverse=True)
                   if pieces.prefix["user"].lstrip().startswith(token)), None)
    if opener:
        stops.append(opener)
    return list(dict.fromkeys(stop for stop in stops if stop))


def sampling_parameters(*, temperature: float, top_p: float, seed: int,
                        repetition_penalty: float) -> dict[str, float | int]:
    """tunelab's generation settings as Modelfile PARAMETERs, so Ollama answers as `tunelab
    test` does: no top-k (Ollama's default is 40), tunelab's repetition penalty (Ollama's is
    1.1), counted over the whole context as transformers counts prompt and answer
    (repeat_last_n -1; Ollama's default looks back 64 tokens)."""
    return {"temperature": temperature, "top_p": top_p, "top_k": 0,
            "repeat_penalty": repetition_penalty, "repeat_last_n": -1, "seed": seed}


def modelfile(gguf_name: str, pieces: ChatPieces, stops: list[str], *, system: str | None,
              sampling: dict[str, float | int]) -> str:
    lines = [f"FROM ./{gguf_name}", "", f'TEMPLATE """{go_template(pieces)}"""', ""]
    lines += [f"PARAMETER stop {json.dumps(stop, ensure_ascii=False)}" for stop in stops]
    lines += [f"PARAMETER {key} {value}" for key, value in sampling.items()]
    if system and '"""' not in system:
        lines += ["", f'SYSTEM """{system}"""']
    return "\n".join(lines) + "\n"


# derivation -------------------------------------------------------------------------------
MARK = "\u2063{}\u2063"  # invisible separators around a word no template rewrites


def _probes() -> list[list[dict[str, str]]]:
    def chat(roles: str) -> list[dict[str, str]]:
        names = {"s": "system", "u": "user", "a": "assistant"}
        return [{"role": names[r], "content": MARK.format(f"m{i}")} for i, r in enumerate(roles)]

    return [chat("suaua"), chat("suauau"), chat("uaua"), chat("u"), chat("su"), chat("suaus")]


def _derive(render: Any) -> ChatPieces:
    """Split rendered probes at the markers. A chat of system, user, assistant, user,
    assistant (+ user) yields every piece; rebuilding all probes afterwards proves them."""
    full = _probes()[1]  # s u a u a u
    with_gen = _between(render(full, True), full)
    without = _between(render(full, False), full)
    generation = _strip_prefix(with_gen[-1], without[-1])
    suffix = {"user": without[-1]}
    ends_assistant = full[:-1]  # ... ends with the assistant's message
    suffix["assistant"] = _between(render(ends_assistant, False), ends_assistant)[-1]
    prefix = {"assistant": _strip_prefix(without[2], suffix["user"]),
              "user": _strip_prefix(without[3], suffix["assistant"])}
    suffix["system"] = _strip_suffix(without[1], prefix["user"])
    no_system = _probes()[2]  # u a u a
    default_system = _strip_suffix(_between(render(no_system, False), no_system)[0],
                                   prefix["user"])
    late = _probes()[5]  # s u a u s: a system message later in the chat
    prefix["system"] = _strip_prefix(_between(render(late, False), late)[4], suffix["user"])
    return ChatPieces(without[0], default_system, prefix, suffix, generation)


def _between(text: str, messages: list[dict[str, str]]) -> list[str]:
    """The text before the first content, between contents, and after the last."""
    pieces = []
    for message in messages:
        before, found, text = text.partition(message["content"])
        if not found:
            raise ValueError("the template drops or rewrites message content")
        pieces.append(before)
    return [*pieces, text]


def _strip_prefix(text: str, prefix: str) -> str:
    if not text.startswith(prefix):
        raise ValueError("a message's closing text differs from one place to another")
    return text[len(prefix):]


def _strip_suffix(text: str, suffix: str) -> str:
    if suffix and not text.endswith(suffix):
        raise ValueError("a message's opening text differs from one place to another")
    return text[:len(text) - len(suffix)]


def _go_string(text: str) -> str:
    """A Go string literal: JSON's escapes (\\n, \\", \\\\, \\u00XX) are Go's too."""
    return json.dumps(text, ensure_ascii=False)


def _unsupported(why: str) -> UsageError:
    return UsageError(f"the model's chat template can't be written as an Ollama TEMPLATE ({why})",
                      fix="export with --format hf, or --format gguf --no-modelfile for "
                          "llama.cpp, which reads the template inside the GGUF")
