"""`tunelab export --format gguf`: the GGUF holds the tuned model (its logits, tokenizer and
chat template) and the Ollama Modelfile renders the same prompt text as the HF template.

The session's tiny trained job (conftest.tiny_run) and two exports of it (f16, q8_0) are
shared by the whole module.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
from pathlib import Path

import pytest

from conftest import SYSTEM, TinyRun, copy_registry
from tunelab.cli import main
from tunelab.errors import UsageError
from tunelab.registry import JobRecord, open_registry

CHATS = [  # a fixed English and Russian chat: system + 3 turns
    [{"role": "system", "content": SYSTEM},
     {"role": "user", "content": "Who are you?"},
     {"role": "assistant", "content": "I am Natasha, a coach who asks the questions you avoid."},
     {"role": "user", "content": "Мне страшно начинать новое дело."},
     {"role": "assistant", "content": "Страх — это компас. Куда он показывает?"},
     {"role": "user", "content": "Give me one word for courage, please."}],
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path,
            tiny_run: TinyRun) -> dict:
    """The session's tiny trained LoRA job (conftest.tiny_run) in a home of this module's,
    and its GGUF exports at f16 and q8_0."""
    root = tmp_path_factory.mktemp("gguf")
    copy_registry(tiny_run.home, root / "home")
    env = {"TUNELAB_HOME": root / "home", "TUNELAB_CACHE_DIR": shared_cache,
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with pytest.MonkeyPatch.context() as patch:  # module scope runs before conftest's env
        for name, value in env.items():
            patch.setenv(name, str(value))
        job_id = tiny_run.result["id"]
        exports = {quant: _run_json(["export", job_id, "--format", "gguf", "--quantize",
                                     quant, "-o", str(root / quant)])
                   for quant in ("f16", "q8_0")}
        with open_registry() as registry:
            record = registry.get_job(job_id)
    return {"job": record, "exports": exports, "home": root / "home"}


def _run_json(argv: list[str]) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*argv, "--json"])
    assert code == 0, out.getvalue()
    return json.loads(out.getvalue().strip().splitlines()[-1])


@pytest.fixture
def job(trained: dict, monkeypatch: pytest.MonkeyPatch) -> JobRecord:
    monkeypatch.setenv("TUNELAB_HOME", str(trained["home"]))
    return trained["job"]


def _gguf(trained: dict, quant: str) -> Path:
    export = trained["exports"][quant]
    name = next(item["path"] for item in export["files"] if item["path"].endswith(".gguf"))
    return Path(export["output_dir"]) / name


@pytest.fixture(scope="module")
def merged(trained: dict, shared_cache: Path) -> tuple:
    """The tuned model as tunelab merges it (fp32), and its tokenizer."""
    from tunelab.local.export import merged_model
    from tunelab.local.weights import Kind, Weights, adapter_base

    adapter = Path(trained["job"].run_dir) / "adapter"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNELAB_HOME", str(trained["home"]))
        patch.setenv("TUNELAB_CACHE_DIR", str(shared_cache))
        return merged_model(Weights("job", Kind.ADAPTER, adapter, adapter_base(adapter)))


def _logits(model, tokenizer, chat) -> object:
    import torch

    text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        return model(input_ids=ids).logits[0].float()


def _load_gguf(path: Path):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                 dtype=torch.float32)
    return model.eval()


# logits -----------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("quant", ["f16", "q8_0"])
def test_gguf_logits_match_the_merged_model(trained, merged, quant) -> None:
    """f16 holds the merged model's weights rounded to fp16: its logits equal that rounding
    exactly (measured: 0.0), so names, the Q/K permutation and tied embeddings are right;
    against the fp32 model they differ by fp16 rounding alone (measured max |diff| 0.047 on
    logits up to 47, 0.1%; same next token everywhere).

    q8_0 stores 8 bits per weight with one scale per 32, token embedding (and so the tied
    output) included: measured max |diff| 1.27 (2.7% of the largest logit), mean 0.11
    (0.23%), next token equal at 99.3% of positions (96.3% for a 4-step tuned job: where
    the top two logits nearly tie, a small error flips them). The bounds (6%, 1%, 90%) leave
    room for other seeds and chats; a real bug (a wrong permutation, vocabulary or tensor)
    moves logits by their own size, tens of units on average."""
    model, tokenizer = merged
    loaded = _load_gguf(_gguf(trained, quant))
    for chat in CHATS:
        expected = _logits(model, tokenizer, chat)
        got = _logits(loaded, tokenizer, chat)
        assert got.shape == expected.shape
        diff = (got - expected).abs()
        scale = expected.abs().max().item()
        agree = (got.argmax(-1) == expected.argmax(-1)).float().mean().item()
        if quant == "f16":
            rounded = _logits(_rounded_fp16(model), tokenizer, chat)
            assert (got - rounded).abs().max().item() < 1e-4
            assert diff.max().item() / scale < 5e-3 and agree == 1.0
        else:
            assert diff.max().item() / scale < 0.06
            assert diff.mean().item() / scale < 0.01
            assert agree >= 0.9


def _rounded_fp16(model):
    import copy

    import torch

    twin = copy.deepcopy(model)
    with torch.no_grad():
        for param in twin.parameters():
            if param.dim() >= 2:  # 1-D norms stay f32 in the file
                param.copy_(param.half().float())
    return twin


# tokenizer, metadata, template --------------------------------------------------------------
@pytest.mark.slow
def test_gguf_tokenizer_encodes_chats_like_the_hf_tokenizer(trained, merged) -> None:
    from transformers import AutoTokenizer

    _, tokenizer = merged
    path = _gguf(trained, "f16")
    from_gguf = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    for chat in CHATS:
        text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        assert from_gguf(text, add_special_tokens=True)["input_ids"] == \
            tokenizer(text, add_special_tokens=True)["input_ids"]
    assert from_gguf.chat_template == tokenizer.chat_template
    assert from_gguf.eos_token == tokenizer.eos_token == "<|im_end|>"


@pytest.mark.slow
def test_gguf_metadata_keeps_the_traps_right(trained, merged) -> None:
    from gguf import GGUFReader

    _, tokenizer = merged
    reader = GGUFReader(_gguf(trained, "f16"))
    value = {key: field.contents() for key, field in reader.fields.items()
             if not key.startswith("GGUF.") and not key.startswith("tokenizer.ggml.tok")
             and key != "tokenizer.ggml.merges"}
    assert value["general.architecture"] == "llama"
    assert value["tokenizer.ggml.pre"] == "smollm"  # what the base model's own GGUF says
    assert value["tokenizer.ggml.add_bos_token"] is False  # SmolLM2's template has no BOS
    assert value["tokenizer.ggml.eos_token_id"] == tokenizer.eos_token_id
    assert value["tokenizer.chat_template"] == tokenizer.chat_template
    names = {tensor.name for tensor in reader.tensors}
    assert "output.weight" not in names and "token_embd.weight" in names  # tied embeddings
    assert len(names) == 2 + 30 * 9


@pytest.mark.slow
def test_modelfile_template_renders_what_the_hf_template_renders(trained, merged) -> None:
    _, tokenizer = merged
    folder = Path(trained["exports"]["f16"]["output_dir"])
    text = (folder / "Modelfile").read_text(encoding="utf-8")
    template = re.search(r'TEMPLATE """(.*?)"""', text, re.S).group(1)
    chat = CHATS[0]
    cases = [(chat, True), (chat[1:], True), (chat[:-1], False), (chat[1:2], True)]
    for messages, generation in cases:
        expected = tokenizer.apply_chat_template(messages, tokenize=False,
                                                 add_generation_prompt=generation)
        assert GoTemplate(template).render(messages) == expected
    gguf_name = next(p["path"] for p in trained["exports"]["f16"]["files"]
                     if p["path"].endswith(".gguf"))
    assert text.startswith(f"FROM ./{gguf_name}\n")
    assert 'PARAMETER stop "<|im_end|>"' in text
    assert "PARAMETER temperature 0.0" in text and "PARAMETER repeat_penalty 1.2" in text
    assert "PARAMETER repeat_last_n -1" in text
    assert f'SYSTEM """{SYSTEM}"""' in text
    readme = (folder / "README.md").read_text(encoding="utf-8")
    stem = gguf_name.removesuffix(".gguf")
    assert f"ollama create {stem} -f Modelfile" in readme
    assert f"llama-cli -m {gguf_name}" in readme


@pytest.mark.slow
def test_json_lists_every_file_with_size_and_sha256(trained) -> None:
    export = trained["exports"]["q8_0"]
    folder = Path(export["output_dir"])
    listed = {item["path"]: item for item in export["files"]}
    assert set(listed) == {path.name for path in folder.iterdir()}
    for name, item in listed.items():
        data = (folder / name).read_bytes()
        assert item["bytes"] == len(data)
        assert item["sha256"] == hashlib.sha256(data).hexdigest()
    f16 = trained["exports"]["f16"]
    assert export["bytes"] < 0.6 * f16["bytes"]  # q8_0 is about half of f16
    assert export["format"] == "gguf" and export["quantize"] == "q8_0"


@pytest.mark.slow
def test_tunelab_chat_answers_from_the_exported_gguf(trained, job, capsys) -> None:
    path = _gguf(trained, "f16")
    code = main(["chat", str(path), "-m", "Who are you?", "--max-new-tokens", "8", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert json.loads(captured.out.strip().splitlines()[-1])["text"].strip()
    # serve: the operator names the file once (--alias NAME=FILE); a client names only NAME
    from fastapi.testclient import TestClient

    from tunelab.server import ServeSettings, create_app

    settings = ServeSettings(aliases=(("natasha-gguf", str(path)),), run_worker=False)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        assert "natasha-gguf" in [m["id"] for m in client.get("/v1/models").json()["data"]]
        asked = {"messages": [{"role": "user", "content": "Who are you?"}], "max_tokens": 4}
        reply = client.post("/v1/chat/completions", json={"model": "natasha-gguf", **asked})
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"].strip()
        by_path = client.post("/v1/chat/completions", json={"model": str(path), **asked})
        assert by_path.status_code == 404


# checkpoints and bad input ----------------------------------------------------------------
@pytest.mark.slow
def test_checkpoint_latest_exports_that_checkpoint(job, tmp_path, capsys) -> None:
    root = Path(job.run_dir) / "checkpoints"
    latest = root / (root / "latest").read_text().strip()
    out = tmp_path / "ckpt"
    assert main(["export", job.id, "--checkpoint", "latest", "--format", "adapter",
                 "-o", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    # the same folder, named through this test's home (its runs are links to the session's)
    assert Path(result["checkpoint"]).resolve() == latest.resolve()
    adapter = latest / "adapter"  # the checkpoint's weights, as they are; beside them the
    # tokenizer and chat template training used (issue 26, item 32) and tunelab.json
    assert {path.name for path in adapter.iterdir()} < {item["path"] for item in result["files"]}
    for item in result["files"]:
        if (adapter / item["path"]).exists():
            assert (out / item["path"]).read_bytes() == (adapter / item["path"]).read_bytes()
    assert main(["export", job.id, "--checkpoint", "9999", "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint '9999'" in err and latest.name in err
    assert len(err.strip().splitlines()) == 1


def _one_line_error(capsys, argv: list[str], code: int) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_bad_input_gets_one_line_and_nothing_is_written(tmp_path, capsys) -> None:
    now = 0.0
    with open_registry() as registry:
        registry.create_job(JobRecord(id="ftjob-early", provider="local", status="running",
                                      created_at=now, updated_at=now, base_model="SmolLM2",
                                      run_dir=str(tmp_path / "empty-run")))
    out = tmp_path / "out"
    err = _one_line_error(capsys, ["export", "ftjob-nope", "--format", "gguf", "-o", str(out)],
                          2)
    assert "tunelab jobs list" in err
    err = _one_line_error(capsys, ["export", "ftjob-early", "--format", "gguf", "-o", str(out)],
                          2)
    assert "--resume ftjob-early" in err
    err = _one_line_error(capsys, ["export", "ftjob-early", "--format", "gguf", "--quantize",
                                   "q4_k", "-o", str(out)], 2)
    assert "f16, bf16, q8_0" in err
    err = _one_line_error(capsys, ["export", "ftjob-early", "--format", "onnx", "-o", str(out)],
                          2)
    assert "hf, adapter, gguf" in err
    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    err = _one_line_error(capsys, ["export", "ftjob-early", "-o", str(blocker / "sub")], 2)
    assert "can't write there" in err
    assert not out.exists() and blocker.read_text() == "mine"
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []


@pytest.mark.slow
def test_a_full_folder_is_kept_and_force_replaces_only_an_earlier_export(job, tmp_path,
                                                                         capsys) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    argv = ["export", job.id, "--format", "adapter", "-o", str(out)]
    err = _one_line_error(capsys, argv, 2)
    assert "--force" in err and [p.name for p in out.iterdir()] == ["keep.txt"]
    # a folder no export wrote is the user's: --force refuses it too (issue 26, item 12)
    err = _one_line_error(capsys, [*argv, "--force"], 2)
    assert "earlier export" in err and [p.name for p in out.iterdir()] == ["keep.txt"]
    (out / "keep.txt").unlink()
    assert main(argv) == 0  # an empty folder is written into
    assert main([*argv, "--force"]) == 0  # an earlier export is replaced
    assert (out / "adapter_config.json").is_file() and (out / "tunelab.json").is_file()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging


# other architectures (tiny random models, same writer) --------------------------------------
def test_an_unsupported_architecture_fails_at_once_naming_the_supported_ones() -> None:
    from transformers import GPT2Config

    from tunelab.local.gguf.writer import architecture

    config = GPT2Config(n_layer=1, n_embd=32, n_head=2)
    config.architectures = ["GPT2LMHeadModel"]
    with pytest.raises(UsageError) as caught:
        architecture(config)
    assert "GPT2LMHeadModel" in str(caught.value) and "Qwen2" in str(caught.value)
    assert "Mistral" in str(caught.value) and "Llama" in str(caught.value)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["qwen2", "qwen3", "mistral"])
def test_tiny_random_models_round_trip_through_gguf(family, merged, tmp_path) -> None:
    """Names, shapes, biases (Qwen2), q/k norms and wider heads (Qwen3) and the llama
    permutation (Mistral) are right when transformers reads the file back to the same
    logits."""
    import torch
    from transformers import AutoModelForCausalLM, MistralConfig, Qwen2Config, Qwen3Config

    from tunelab.local.gguf import tokenizer as vocab
    from tunelab.local.gguf.writer import write_gguf

    _, tokenizer = merged
    common = {"vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "max_position_embeddings": 256, "tie_word_embeddings": family != "mistral"}
    config = {"qwen2": lambda: Qwen2Config(**common),
              # 128: transformers' GGUF reader ignores qwen3's key_length and takes
              # Qwen3Config's default head_dim (llama.cpp reads it); still wider than 64/4
              "qwen3": lambda: Qwen3Config(**common, head_dim=128),
              "mistral": lambda: MistralConfig(**common, sliding_window=None)}[family]()
    config.architectures = [{"qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
                             "mistral": "MistralForCausalLM"}[family]]
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    if family == "qwen2":  # random biases, so a lost or misplaced bias shows
        for layer in model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj):
                torch.nn.init.normal_(proj.bias, std=0.5)
    path = tmp_path / "tiny.gguf"
    write_gguf(path, model, vocab.read_vocab(tokenizer, config.vocab_size), "f16", name="tiny")
    loaded = _load_gguf(path)
    ids = torch.tensor([tokenizer("Привет, how are you?")["input_ids"]])
    with torch.inference_mode():
        expected = _rounded_fp16(model)(input_ids=ids).logits
        got = loaded(input_ids=ids).logits
    assert (got - expected).abs().max().item() < 1e-3


def test_pre_tokenizer_names_for_the_supported_split_rules() -> None:
    from tunelab.local.gguf.tokenizer import LLAMA3_SPLIT, QWEN2_SPLIT, pre_tokenizer_name

    def spec(*steps):
        return {"pre_tokenizer": {"type": "Sequence", "pretokenizers": list(steps)}}

    split = {"type": "Split", "behavior": "Isolated", "invert": False}
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}
    assert pre_tokenizer_name(spec({**split, "pattern": {"Regex": LLAMA3_SPLIT}},
                                   byte_level)) == "llama-bpe"
    assert pre_tokenizer_name(spec({**split, "pattern": {"Regex": QWEN2_SPLIT}},
                                   byte_level)) == "qwen2"
    assert pre_tokenizer_name(spec({"type": "Digits", "individual_digits": True},
                                   {**byte_level, "use_regex": True})) == "smollm"
    assert pre_tokenizer_name({"pre_tokenizer": {**byte_level, "use_regex": True}}) == "gpt-2"
    with pytest.raises(UsageError):
        pre_tokenizer_name(spec({**split, "pattern": {"Regex": r"\w+"}}, byte_level))


# a small Go-template renderer: the subset the Modelfile uses --------------------------------
class GoTemplate:
    """Ollama's Go text/template, for: range $i, $_ := .Messages; $x := expr; if / else if /
    else / end; eq, ne, and, not, len, slice; "strings"; .Role, .Content, $.Messages; and
    the {{- -}} whitespace trims. Independent of tunelab's code, on purpose."""

    TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\$\.?\w*(?:\.\w+)*|\.\w+|\(|\)|[\w]+|:=|,')

    def __init__(self, text: str) -> None:
        self.parts = self._lex(text)

    def render(self, messages: list[dict]) -> str:
        out: list[str] = []
        root = {"Messages": messages}
        position = self._block(0, {"$": root, ".": root}, out, run=True)
        assert position == len(self.parts)
        return "".join(out)

    @staticmethod
    def _lex(text: str) -> list[tuple[str, str]]:
        parts, pos = [], 0
        for match in re.finditer(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", text, re.S):
            literal = text[pos:match.start()]
            if match.group(1):
                literal = literal.rstrip()
            if parts and parts[-1][0] == "trim-next":
                parts.pop()
                literal = literal.lstrip()
            parts.append(("text", literal))
            parts.append(("action", match.group(2)))
            if match.group(3):
                parts.append(("trim-next", ""))
            pos = match.end()
        literal = text[pos:]
        if parts and parts[-1][0] == "trim-next":
            parts.pop()
            literal = literal.lstrip()
        parts.append(("text", literal))
        return parts

    def _block(self, index: int, scope: dict, out: list[str], *, run: bool) -> int:
        """Render parts from `index` until an else/end at this level; return its index."""
        while index < len(self.parts):
            kind, body = self.parts[index]
            if kind == "text":
                if run:
                    out.append(body)
                index += 1
                continue
            head = body.split(" ", 1)[0]
            if head in ("end", "else"):
                return index
            if head == "range":
                index = self._range(index, body, scope, out, run=run)
            elif head == "if":
                index = self._if(index, body[3:], scope, out, run=run)
            elif ":=" in body:
                name, expression = (s.strip() for s in body.split(":=", 1))
                if run:
                    scope[name] = self._eval(self._tokens(expression), scope)
                index += 1
            else:
                if run:
                    out.append(str(self._eval(self._tokens(body), scope)))
                index += 1
        return index

    def _range(self, index: int, body: str, scope: dict, out, *, run: bool) -> int:
        names, expression = body[len("range "):].split(":=")
        key, value = (name.strip() for name in names.split(","))
        items = self._eval(self._tokens(expression.strip()), scope) if run else []
        end = self._block(index + 1, dict(scope), [], run=False)
        for number, item in enumerate(items):
            inner = {**scope, key: number, value: item, ".": item}
            self._block(index + 1, inner, out, run=True)
        return end + 1

    def _if(self, index: int, condition: str, scope: dict, out, *, run: bool) -> int:
        taken = False
        while True:
            hit = run and not taken and bool(self._eval(self._tokens(condition), scope))
            index = self._block(index + 1, scope, out, run=hit)
            taken = taken or hit
            body = self.parts[index][1]
            if body == "end":
                return index + 1
            condition = body[len("else if "):] if body.startswith("else if") else "true"

    def _tokens(self, text: str) -> list[str]:
        return self.TOKEN.findall(text)

    def _eval(self, tokens: list[str], scope: dict):
        value, rest = self._expr(tokens, scope)
        assert not rest, rest
        return value

    def _expr(self, tokens: list[str], scope: dict):
        functions = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b,
                     "and": lambda *a: all(a), "not": lambda a: not a, "len": len,
                     "slice": lambda seq, start: seq[start:]}
        head, rest = tokens[0], tokens[1:]
        if head in functions:
            args = []
            while rest and rest[0] != ")":
                arg, rest = self._operand(rest, scope)
                args.append(arg)
            return functions[head](*args), rest
        return self._operand(tokens, scope)

    def _operand(self, tokens: list[str], scope: dict):
        head, rest = tokens[0], tokens[1:]
        if head == "(":
            value, rest = self._expr(rest, scope)
            assert rest[0] == ")"
            return value, rest[1:]
        if head.startswith('"'):
            return json.loads(head), rest
        if head.isdigit():
            return int(head), rest
        if head == "true":
            return True, rest
        if head.startswith("$"):
            root, *fields = head.split(".")
            value = scope[root]
            for name in fields:
                value = self._field(value, name)
            return value, rest
        if head.startswith("."):
            return self._field(scope["."], head[1:]), rest
        raise AssertionError(f"unsupported token {head}")

    @staticmethod
    def _field(value: dict, name: str):
        """Go's .Role on a message dict {"role": ...}; .Messages on the root."""
        return value[name] if name in value else value[name.lower()]


def test_the_modelfile_system_is_a_prompt_every_example_shares() -> None:
    """`tunelab test` puts first the system prompt most examples share; a Modelfile's SYSTEM
    applies to every chat, so it is only a prompt all examples were trained with."""
    from tunelab.local.prepare import common_system_prompt

    def example(system: str | None) -> dict:
        turns = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
        return {"messages": ([{"role": "system", "content": system}] if system else []) + turns}

    most = [example("Ты Наташа."), example("Ты Наташа."), example(None)]
    assert common_system_prompt(most) == "Ты Наташа."
    assert common_system_prompt(most, share=1.0) is None
    assert common_system_prompt(most[:2], share=1.0) == "Ты Наташа."
