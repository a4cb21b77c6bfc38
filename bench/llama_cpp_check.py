"""Run a `tunelab export --format gguf` file in real llama.cpp and compare it with tunelab.

llama.cpp comes from the package registry, not from tunelab: the `llama-cpp-py-sync` wheel
ships a prebuilt CPU libllama (no compiler, no network at run time). Install it beside the
project, e.g. into a folder of its own:

    pip install --no-deps --target /tmp/llama-cpp llama-cpp-py-sync   # needs cffi, numpy
    PYTHONPATH=/tmp/llama-cpp .venv/bin/python bench/llama_cpp_check.py JOB [--quantize q8_0]

JOB is a local job id (or `--gguf FILE` for an export made already, with `--job JOB` for
tunelab's side). For each prompt (English and Russian, with the job's system prompt) it shows:
- whether llama.cpp tokenizes tunelab's rendered prompt to the same ids as the HF tokenizer;
- whether llama.cpp's own chat-template code renders the same prompt text;
- how many leading tokens of the greedy answer llama.cpp and tunelab share;
- whether llama.cpp stopped at an end-of-generation token, and which.
Prints one JSON object (--json) or a table; exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

PROMPTS = [
    "Who are you?",
    "Мне кажется, я потерялась. Что делать?",
    "Give me one word for courage.",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job", nargs="?", help="local job id to export and compare")
    parser.add_argument("--gguf", type=Path, help="an exported .gguf (skips the export)")
    parser.add_argument("--job", dest="job_opt", help="the job behind --gguf")
    parser.add_argument("--quantize", default="f16")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    job = args.job or args.job_opt
    if not job:
        parser.error("name a job")
    try:
        import llama_cpp_py_sync  # noqa: F401
    except ImportError:
        print("llama.cpp is not installed: pip install --no-deps --target DIR "
              "llama-cpp-py-sync, then PYTHONPATH=DIR", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        gguf = args.gguf or _export(job, Path(scratch) / "export", args.quantize)
        report = compare(job, gguf, args.max_new_tokens, args.threads)
    print(json.dumps(report, ensure_ascii=False, indent=None if args.json else 2))
    return 0 if report["ok"] else 1


def _export(job: str, out: Path, quantize: str) -> Path:
    from tunelab.cli import main as tunelab

    code = tunelab(["export", job, "--format", "gguf", "--quantize", quantize, "-o", str(out),
                    "--json"])
    if code:
        raise SystemExit(f"tunelab export failed ({code})")
    return next(out.glob("*.gguf"))


def compare(job: str, gguf: Path, max_new_tokens: int, threads: int) -> dict:
    from tunelab.evaluate.job_files import training_system_prompt
    from tunelab.evaluate.specs import resolve_spec

    system = training_system_prompt(resolve_spec(job))
    tuned = _tunelab_model(job)
    llama = _LlamaCpp(gguf, threads)
    rows = []
    for prompt in PROMPTS:
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": prompt}]
        text, ids, answer = _tunelab_greedy(tuned, messages, max_new_tokens)
        started = time.perf_counter()
        cpp_ids = llama.tokenize(text)
        cpp_answer, stop = llama.greedy(cpp_ids, max_new_tokens)
        seconds = time.perf_counter() - started
        shared = next((i for i, (a, b) in enumerate(zip(answer, cpp_answer, strict=False))
                       if a != b), min(len(answer), len(cpp_answer)))
        rows.append({
            "prompt": prompt,
            "prompt_ids_equal": cpp_ids == ids,
            "template_text_equal": llama.render(messages) == text,
            "tunelab_tokens": len(answer), "llama_cpp_tokens": len(cpp_answer),
            "shared_leading_tokens": shared,
            "llama_cpp_stopped_at": stop,
            "tunelab_answer": tuned.tokenizer.decode(answer, skip_special_tokens=True),
            "llama_cpp_answer": llama.detokenize(cpp_answer),
            "llama_cpp_s": round(seconds, 2),
        })
    ok = all(row["prompt_ids_equal"] and row["shared_leading_tokens"] >= min(
        8, row["tunelab_tokens"]) and (row["llama_cpp_stopped_at"] or
                                       row["llama_cpp_tokens"] == max_new_tokens)
             for row in rows)
    return {"gguf": str(gguf), "bytes": gguf.stat().st_size, "ok": ok, "rows": rows}


def _tunelab_model(job: str):
    from tunelab.local.inference import load_chat_model

    return load_chat_model(job)


def _tunelab_greedy(tuned, messages: list[dict], max_new_tokens: int):
    """tunelab's prompt text and ids (as ChatModel encodes them) and its greedy answer ids,
    cut after the end-of-turn token like llama.cpp's."""
    import torch

    tokenizer = tuned.tokenizer
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        output = tuned.model.generate(input_ids=torch.tensor([ids]),
                                      attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                      max_new_tokens=max_new_tokens, do_sample=False,
                                      top_k=None, pad_token_id=tokenizer.pad_token_id)
    answer = output[0, len(ids):].tolist()
    if tokenizer.eos_token_id in answer:
        answer = answer[:answer.index(tokenizer.eos_token_id)]
    return text, ids, answer


class _LlamaCpp:
    """Greedy decoding through llama.cpp's C API (the wheel's CFFI bindings)."""

    def __init__(self, gguf: Path, threads: int) -> None:
        import llama_cpp_py_sync as llama_cpp

        self.llm = llama_cpp.Llama(str(gguf), n_ctx=1024, n_threads=threads, verbose=False)
        self.lib, self.ffi = self.llm._lib, self.llm._ffi
        self.n_vocab = self.llm.n_vocab

    def tokenize(self, text: str) -> list[int]:
        # add_special: llama.cpp adds BOS only if the GGUF's add_bos_token says so
        return self.llm.tokenize(text, add_special=True, parse_special=True)

    def detokenize(self, ids: list[int]) -> str:
        return self.llm.detokenize(ids, remove_special=True, unparse_special=False).strip()

    def render(self, messages: list[dict]) -> str:
        """The prompt as llama.cpp's own template code renders it from the GGUF's template."""
        lib, ffi = self.lib, self.ffi
        template = lib.llama_model_chat_template(self.llm._model, ffi.NULL)
        keep = [(m["role"].encode(), m["content"].encode()) for m in messages]
        chat = ffi.new(f"struct llama_chat_message[{len(keep)}]")
        for index, (role, content) in enumerate(keep):
            chat[index].role, chat[index].content = ffi.from_buffer(role + b"\0"), \
                ffi.from_buffer(content + b"\0")
        size = 8192
        buffer = ffi.new(f"char[{size}]")
        count = lib.llama_chat_apply_template(template, chat, len(keep), True, buffer, size)
        return ffi.string(buffer, count).decode("utf-8") if count > 0 else ""

    def greedy(self, prompt: list[int], max_new_tokens: int) -> tuple[list[int], str | None]:
        import numpy as np

        lib, ffi = self.lib, self.ffi
        lib.llama_memory_clear(lib.llama_get_memory(self.llm._ctx), True)
        answer: list[int] = []
        batch_ids = list(prompt)
        for _ in range(max_new_tokens):
            tokens = ffi.new(f"llama_token[{len(batch_ids)}]", batch_ids)
            if lib.llama_decode(self.llm._ctx, lib.llama_batch_get_one(tokens, len(batch_ids))):
                raise RuntimeError("llama_decode failed")
            logits = lib.llama_get_logits_ith(self.llm._ctx, -1)
            row = np.frombuffer(ffi.buffer(logits, self.n_vocab * 4), dtype=np.float32)
            token = int(row.argmax())
            if lib.llama_vocab_is_eog(self.llm._vocab, token):
                return answer, self.llm.token_to_piece(token)
            answer.append(token)
            batch_ids = [token]
        return answer, None


if __name__ == "__main__":
    sys.exit(main())
