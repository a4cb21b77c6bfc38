"""Run a `tunelab export --format gguf` file in real llama.cpp and compare it with tunelab.

llama.cpp is built from the source in the `llama-cpp-python` sdist on the package registry
(it vendors llama.cpp), not from tunelab's code; nothing is downloaded at run time:

    pip download --no-deps --no-binary :all: llama-cpp-python -d /tmp/lcp
    tar xzf /tmp/lcp/llama_cpp_python-*.tar.gz -C /tmp/lcp
    cmake -S /tmp/lcp/llama_cpp_python-*/vendor/llama.cpp -B /tmp/lcp/build \
        -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DBUILD_SHARED_LIBS=OFF
    cmake --build /tmp/lcp/build -j2 --target llama-completion llama-tokenize  # ~25 min, 2 cores
    .venv/bin/python bench/llama_cpp_check.py JOB --bin /tmp/lcp/build/bin [--quantize q8_0]

(The prebuilt `llama-cpp-py-sync` wheel needs glibc 2.38; Debian 12 has 2.36.)

JOB is a local job id; `--gguf FILE` reuses an export made already. For each prompt (English
and Russian, with the job's system prompt, rendered by tunelab's chat template) it reports:
- whether `llama-tokenize` gives the same ids as the HF tokenizer tunelab uses;
- how many leading tokens of `llama-completion`'s greedy answer equal tunelab's greedy one;
- whether llama.cpp stopped at an end-of-generation token where tunelab stopped.

`--no-repack`: this llama.cpp snapshot crashes (SIGSEGV) in its CPU weight repacking on
a multi-token prompt with quantized weights, the embedded SmolLM2 Q4_1 GGUF included.
Prints one JSON object; exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

END_OF_TEXT = "[end of text]"
PROMPTS = [
    "Who are you?",
    "Мне кажется, я потерялась. Что делать?",
    "Give me one word for courage.",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job", help="local job id to export and compare")
    parser.add_argument("--bin", type=Path, required=True,
                        help="folder with llama-completion and llama-tokenize")
    parser.add_argument("--gguf", type=Path, help="an exported .gguf (skips the export)")
    parser.add_argument("--quantize", default="f16")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        gguf = args.gguf or _export(args.job, Path(scratch) / "export", args.quantize)
        export_s = None if args.gguf else round(time.perf_counter() - started, 1)
        report = compare(args.job, gguf, _LlamaCpp(gguf, args.bin, args.threads),
                         args.max_new_tokens)
    print(json.dumps({"export_s": export_s, **report}, ensure_ascii=False, indent=2))
    return 0 if report["ok"] else 1


def _export(job: str, out: Path, quantize: str) -> Path:
    from tunelab.cli import main as tunelab

    with contextlib.redirect_stdout(io.StringIO()):
        code = tunelab(["export", job, "--format", "gguf", "--quantize", quantize, "-o",
                        str(out), "--json"])
    if code:
        raise SystemExit(f"tunelab export failed ({code})")
    return next(out.glob("*.gguf"))


def compare(job: str, gguf: Path, llama: _LlamaCpp, max_new_tokens: int) -> dict:
    from tunelab.evaluate.job_files import training_system_prompt
    from tunelab.evaluate.specs import resolve_spec

    system = training_system_prompt(resolve_spec(job))
    tuned = _tunelab_model(job)
    rows = []
    for prompt in PROMPTS:
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": prompt}]
        text, ids, answer = _tunelab_greedy(tuned, messages, max_new_tokens)
        started = time.perf_counter()
        cpp_ids = llama.tokenize(text)
        cpp_text, stopped = llama.greedy(text, max_new_tokens)
        seconds = time.perf_counter() - started
        shared = _shared_leading_tokens(tuned.tokenizer, answer, cpp_text)
        rows.append({
            "prompt": prompt,
            "prompt_ids_equal": cpp_ids == ids,
            "tunelab_tokens": len(answer), "shared_leading_tokens": shared,
            "tunelab_stopped_at_end_of_turn": len(answer) < max_new_tokens,
            "llama_cpp_stopped_at_end_of_turn": stopped,
            "tunelab_answer": tuned.tokenizer.decode(answer, skip_special_tokens=True),
            "llama_cpp_answer": cpp_text,
            "llama_cpp_s": round(seconds, 2),
        })
    ok = all(row["prompt_ids_equal"] and row["shared_leading_tokens"] >= min(
        8, row["tunelab_tokens"]) and row["llama_cpp_stopped_at_end_of_turn"]
             == row["tunelab_stopped_at_end_of_turn"]
             for row in rows)
    return {"gguf": str(gguf), "bytes": gguf.stat().st_size, "ok": ok, "rows": rows}


def _shared_leading_tokens(tokenizer, answer: list[int], text: str) -> int:
    """How many of tunelab's answer tokens llama.cpp's answer text starts with."""
    count = 0
    for end in range(1, len(answer) + 1):
        # a token may end inside a multi-byte letter: compare up to the last whole one
        if not text.startswith(tokenizer.decode(answer[:end]).rstrip("\ufffd")):
            break
        count = end
    return count


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
    """llama.cpp's own programs: llama-tokenize for ids, llama-completion for greedy
    answers (--temp 0), which stop at the vocabulary's end-of-generation tokens."""

    def __init__(self, gguf: Path, bin_dir: Path, threads: int) -> None:
        self.gguf, self.bin, self.threads = gguf, bin_dir, threads

    def tokenize(self, text: str) -> list[int]:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8") as prompt:
            prompt.write(text)
            prompt.flush()
            out = self._run("llama-tokenize", "-m", str(self.gguf), "-f", prompt.name,
                            "--ids", "--log-disable", "--no-escape")  # parses special tokens
        return json.loads(out.stdout.strip().splitlines()[-1])

    def greedy(self, text: str, max_new_tokens: int) -> tuple[str, bool]:
        """llama.cpp's greedy answer text, and whether it stopped at an end-of-generation
        token (llama-completion then prints "[end of text]")."""
        out = self._run("llama-completion", "-m", str(self.gguf), "-p", text, "-n",
                        str(max_new_tokens), "--temp", "0", "-no-cnv", "--no-display-prompt",
                        "--no-warmup", "-t", str(self.threads), "--no-repack")
        answer = out.stdout.rstrip("\n")
        stopped = answer.endswith(END_OF_TEXT)
        return answer.removesuffix(END_OF_TEXT).rstrip(" "), stopped

    def _run(self, program: str, *args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads)}
        return subprocess.run([str(self.bin / program), *args], capture_output=True,
                              text=True, check=True, env=env, timeout=600)


if __name__ == "__main__":
    sys.exit(main())
