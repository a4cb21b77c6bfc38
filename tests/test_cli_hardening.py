"""Issue 13, items 18 to 22 (CLI parts): what a careless user or an attacker types, run
through the real CLI. Each case ends in one line and an exit code, never a traceback, and
user or provider text is printed exactly as written."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from faultproxy import serve_in_thread
from tunelab.cli import main
from tunelab.server import ServeSettings, create_app


def examples(count: int = 12, *, answer: str = "Money is a river.") -> list[dict]:
    return [{"messages": [{"role": "system", "content": "You are Natasha."},
                          {"role": "user", "content": f"Why am I afraid of money? ({i})"},
                          {"role": "assistant", "content": answer}]} for i in range(count)]


def jsonl(path: Path, count: int = 12) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples(count)),
                    encoding="utf-8")
    return path


def csv_text(rows: int = 12, answer: str = "a river") -> str:
    return "question,answer,system\n" + "".join(f"q {i},{answer},be kind\n"
                                                 for i in range(rows))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


# item 18: user and provider text is never read as Rich markup ------------------------------
def test_a_closing_tag_in_the_path_does_not_crash_a_successful_check(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = jsonl(tmp_path / "d[/x]" / "train.jsonl")
    code, out, _ = run(capsys, "data", "check", str(path))
    assert code == 0
    assert f"Dataset: {path}" in out  # the table title, as written
    assert out.rstrip().splitlines()[-1] == "✅ Validation passed: 12 training examples"


def test_a_style_tag_in_a_file_name_is_shown_literally(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = jsonl(tmp_path / "[red]evil.jsonl")
    path.write_text(path.read_text() + "{oops\n")
    code, out, err = run(capsys, "data", "check", str(path))
    assert code == 1
    assert f"❌ 1 error in {path}" in out
    assert f"1 data error in {path}" in one_error_line(err)


def test_an_error_naming_user_text_keeps_its_brackets(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # `export` shows a spinner naming the job: rich parsed that text as markup too.
    code, _, err = run(capsys, "export", "[/x][red]nope", "-o", str(tmp_path / "out"))
    assert code == 2 and "[/x][red]nope" in one_error_line(err)
    code, _, err = run(capsys, "data", "check", str(tmp_path / "[bold]missing.jsonl"))
    assert code == 2 and "[bold]missing.jsonl: no such file" in one_error_line(err)


def test_a_provider_error_code_stays_visible(tunelab_home: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    app = create_app(ServeSettings(api_key="sk-the-right-key-123456", run_worker=False))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-a-wrong-key-654321")
    with serve_in_thread(app) as port:
        code, _, err = run(capsys, "jobs", "list", "--provider", "openai", "--base-url",
                           f"http://127.0.0.1:{port}/v1")
    assert code == 2
    assert one_error_line(err).startswith("error: [invalid_api_key] openai refused the key")
    assert "sk-a-wrong-key-654321" not in err


def test_table_cells_from_a_pricing_file_are_plain_text(
        tunelab_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    row = {"provider": "acme", "model": "[red]acme-1", "training_per_1m": 1.0,
           "input_per_1m": 1.0, "output_per_1m": 1.0, "max_train_tokens": 65536,
           "as_of": "2030-01-01", "source": "https://example.com/acme"}
    tunelab_home.mkdir(parents=True, exist_ok=True)
    (tunelab_home / "pricing.json").write_text(json.dumps({"models": [row]}))
    code, out, _ = run(capsys, "data", "cost", str(jsonl(tmp_path / "t.jsonl")))
    assert code == 0 and "[red]acme-1" in out


# item 19: every input file is checked before training starts -------------------------------
@pytest.fixture
def latin1_prompts(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_bytes("Bonjour\nCafé ou thé ?\n".encode("latin-1"))
    return path


def test_a_latin1_prompts_file_fails_the_dry_run_at_once(
        tmp_path: Path, latin1_prompts: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "train", str(jsonl(tmp_path / "t.jsonl")), "--prompts",
                       str(latin1_prompts), "--dry-run")
    line = one_error_line(err)
    assert code == 2 and f"--prompts {latin1_prompts} is not UTF-8" in line
    assert "byte 0xE9 at offset 11, line 2" in line and "re-save it as UTF-8" in line


def test_a_latin1_prompts_file_fails_a_real_run_before_any_job_exists(
        tmp_path: Path, latin1_prompts: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "train", str(jsonl(tmp_path / "t.jsonl")), "--prompts",
                       str(latin1_prompts), "--max-steps", "1")
    assert code == 2 and "is not UTF-8" in one_error_line(err)
    code, out, _ = run(capsys, "jobs", "list", "--json")
    assert code == 0 and json.loads(out)["jobs"] == []  # no job, so none marked failed


def test_a_latin1_prompts_file_fails_a_cloud_run_before_upload(
        tmp_path: Path, latin1_prompts: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The cloud path asks the prompts only after the job has succeeded (and been paid for).
    code, _, err = run(capsys, "train", str(jsonl(tmp_path / "t.jsonl")), "--provider",
                       "openai", "--prompts", str(latin1_prompts), "--validate-only")
    assert code == 2 and "is not UTF-8" in one_error_line(err)


def test_a_latin1_validation_file_fails_the_dry_run_naming_its_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    validation = tmp_path / "val.jsonl"
    lines = [json.dumps(e, ensure_ascii=False) for e in examples()]
    lines[2] = lines[2].replace("money", "l'argent, café")
    validation.write_bytes("\n".join(lines).encode("latin-1"))
    code, _, err = run(capsys, "train", str(jsonl(tmp_path / "t.jsonl")),
                       "--validation-file", str(validation), "--dry-run")
    line = one_error_line(err)
    assert code == 2 and f"{validation} is not UTF-8 (line 3)" in line
    assert "re-save it as UTF-8" in line


# item 20: a --config file in another encoding ---------------------------------------------
@pytest.mark.parametrize("name, raw, looks_like", [
    ("run.json", '{"epochs": 2}'.encode("utf-16"), "UTF-16LE (byte-order mark)"),
    ("run.json", '{"epochs": 2}'.encode("utf-16-le"), "UTF-16LE (no byte-order mark)"),
    ("run.yaml", "epochs: 2\n".encode("utf-16-be"), "UTF-16BE (no byte-order mark)"),
    ("run.yaml", "epochs: 2\nsuffix: café\n".encode("latin-1"), "Latin-1"),
])
def test_a_config_file_not_in_utf8_is_one_line(
        name: str, raw: bytes, looks_like: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / name
    config.write_bytes(raw)
    code, _, err = run(capsys, "train", str(jsonl(tmp_path / "t.jsonl")), "--config",
                       str(config), "--dry-run")
    line = one_error_line(err)
    assert code == 2 and f"config file {config} is not UTF-8" in line
    assert f"it looks like {looks_like}" in line and "re-save it as UTF-8" in line


def test_a_config_file_with_a_utf8_bom_is_read(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "run.json"
    config.write_bytes(b'\xef\xbb\xbf{"epochs": 2}')
    saved = tmp_path / "saved.json"
    code, _, _ = run(capsys, "train", str(jsonl(tmp_path / "t.jsonl")), "--config",
                     str(config), "--save-config", str(saved))
    assert code == 0 and json.loads(saved.read_text())["epochs"] == 2


# item 21: data files -----------------------------------------------------------------------
@pytest.mark.parametrize("encoding, looks_like", [
    ("utf-16", "UTF-16LE (byte-order mark)"), ("utf-16-le", "UTF-16LE (no byte-order mark)"),
    ("utf-16-be", "UTF-16BE (no byte-order mark)"),
])
@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
def test_a_utf16_data_file_is_named_as_utf16(
        suffix: str, encoding: str, looks_like: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    text = {".jsonl": "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples()),
            ".json": json.dumps(examples(), ensure_ascii=False),
            ".csv": csv_text()}[suffix]
    path = tmp_path / f"data{suffix}"
    path.write_bytes(text.encode(encoding))
    code, _, err = run(capsys, "data", "check", str(path))
    line = one_error_line(err)
    assert code == 2 and f"{path} is not UTF-8; it looks like {looks_like}" in line
    assert "re-save it as UTF-8" in line


def test_cyrillic_utf16_without_a_bom_is_named_too(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "data.csv"
    rows = "question,answer\n" + "".join(f"Почему мне страшно {i},Деньги — это река\n"
                                          for i in range(12))
    path.write_bytes(rows.encode("utf-16-le"))
    code, _, err = run(capsys, "data", "check", str(path))
    assert code == 2 and "UTF-16LE (no byte-order mark)" in one_error_line(err)


def test_utf8_cyrillic_is_not_mistaken_for_utf16(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "data.csv"
    path.write_text("question,answer\n" + "".join(f"Почему мне страшно {i},Деньги — река\n"
                                                  for i in range(12)), encoding="utf-8")
    assert run(capsys, "data", "check", str(path))[0] == 0


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_cr_only_line_endings_are_refused_by_name(suffix: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    text = csv_text() if suffix == ".csv" else "".join(
        json.dumps(e) + "\n" for e in examples())
    path = tmp_path / f"data{suffix}"
    path.write_bytes(text.replace("\n", "\r").encode())
    code, _, err = run(capsys, "data", "check", str(path))
    line = one_error_line(err)
    assert code == 2 and "end in CR alone" in line and "LF" in line


def test_an_unterminated_csv_quote_names_the_line_it_opens_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = csv_text().splitlines()
    rows.insert(4, '"an open quote,answer,system')  # line 5 of the file
    path = tmp_path / "data.csv"
    path.write_text("\n".join(rows) + "\n")
    code, _, err = run(capsys, "data", "check", str(path))
    line = one_error_line(err)
    assert code == 2 and f"{path}:5: unterminated quote" in line
    assert "blank_assistant_content" not in err


def test_a_csv_field_longer_than_the_csv_default_passes_like_a_jsonl_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    answer = "river " * 40_000  # 240,000 characters: over csv's default 131,072
    path = tmp_path / "data.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["question", "answer"])
        writer.writerows([f"q {i}", answer] for i in range(12))
    twin = tmp_path / "data.jsonl"
    twin.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"q {i}"}, {"role": "assistant", "content": answer}]}) + "\n"
        for i in range(12)))
    for data in (path, twin):
        code, out, _ = run(capsys, "data", "check", str(data), "--json")
        assert code == 0 and json.loads(out)["valid_examples"] == 12


@pytest.mark.parametrize("cut", [0.5, 0.999])
def test_a_truncated_json_file_says_truncated(cut: float, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    text = json.dumps(examples(), indent=1)
    path = tmp_path / "data.json"
    path.write_text(text[:int(len(text) * cut)])
    code, out, _ = run(capsys, "data", "check", str(path), "--json")
    errors = [e for e in json.loads(out)["errors"] if e["code"] == "invalid_json"]
    assert code == 1 and len(errors) == 1
    assert errors[0]["message"].startswith("truncated JSON: the file ends")
    assert ".jsonl" not in errors[0]["message"]


def test_a_syntax_error_in_a_json_array_gets_the_json_hint(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "data.json"
    path.write_text(json.dumps(examples()).replace('"system"', "system", 1))
    code, out, _ = run(capsys, "data", "check", str(path), "--json")
    message = json.loads(out)["errors"][0]["message"]
    assert code == 1 and "a .json file holds one array" in message and ".jsonl" not in message


# item 22, CLI parts --------------------------------------------------------------------------
def test_nproc_zero_is_refused_by_the_dry_run_as_by_a_real_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(jsonl(tmp_path / "t.jsonl"))
    for mode in (["--dry-run"], ["--max-steps", "1"]):
        code, _, err = run(capsys, "train", data, "--nproc", "0", *mode)
        assert code == 2
        assert one_error_line(err) == ("error: --nproc 0: needs at least 1 process — use "
                                       "--nproc 2 or more, or leave it out")


def test_an_unknown_provider_is_refused_before_the_data_is_read(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = jsonl(tmp_path / "t.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n")
    for data in (good, bad):
        code, _, err = run(capsys, "train", str(data), "--provider", "nonsense",
                           "--validate-only")
        line = one_error_line(err)
        assert code == 2 and line.startswith("error: --provider 'nonsense' is not known")
        assert all(name in line for name in ("azure", "fireworks", "kimi", "local", "openai",
                                             "vertex"))
        assert "Validation passed" not in err and "cost" not in err
