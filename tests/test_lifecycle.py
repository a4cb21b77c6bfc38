"""Model lifecycle as data: dates with sources, the TUNELAB_TODAY clock, `data cost` marking
shut-down models and days left, and `train --provider openai` refusing before any upload."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from faultproxy import serve_in_thread
from test_data_cli import write_dataset
from tunelab.cli import main
from tunelab.data.lifecycle import days_left, lifecycle, provider_closes, today
from tunelab.errors import UsageError
from tunelab.home import home

DEPRECATIONS = "https://developers.openai.com/api/docs/deprecations"
KEY = "sk-canary-lifecycle-5151515151"


def home_pricing(document: dict) -> None:
    """Write the user's TUNELAB_HOME/pricing.json override."""
    home().mkdir(parents=True, exist_ok=True)
    (home() / "pricing.json").write_text(json.dumps(document))


def cost_rows(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
              day: str) -> dict[str, dict]:
    """`tunelab data cost --json` on a small dataset as of `day`, rows keyed by model."""
    monkeypatch.setenv("TUNELAB_TODAY", day)
    assert main(["data", "cost", str(write_dataset(tmp_path / "train.jsonl")), "--json"]) == 0
    return {row["model"]: row for row in json.loads(capsys.readouterr().out)["cost"]
            if row["provider"] != "azure"}  # Azure trains OpenAI's models under their names


# --- the data and the clock -------------------------------------------------------------

def test_every_openai_model_carries_its_dates_and_source() -> None:
    mini = lifecycle("openai", "gpt-4o-mini-2024-07-18")
    assert (mini.fine_tuning_closes, mini.shutdown) == (date(2027, 1, 6), date(2027, 1, 14))
    assert mini.source == DEPRECATIONS
    for name in ("gpt-4o-2024-08-06", "gpt-4.1-2025-04-14", "gpt-4.1-mini-2025-04-14"):
        assert lifecycle("openai", name).shutdown == date(2027, 1, 14)
    for name in ("gpt-3.5-turbo-0125", "gpt-3.5-turbo", "gpt-4.1-nano", "gpt-4.1-nano-2025-04-14"):
        assert lifecycle("openai", name).shutdown == date(2026, 10, 23)
    assert provider_closes("openai") == date(2027, 1, 6)
    assert provider_closes("vertex") is None and lifecycle("vertex", "gemini-2.5-flash") is None


def test_fine_tuned_and_checkpoint_names_map_to_their_base() -> None:
    tuned = lifecycle("openai", "ft:gpt-4o-mini-2024-07-18:acme:natasha:9xYz")
    checkpoint = lifecycle("openai", "ft:gpt-3.5-turbo-0125:acme:natasha:9xYz:ckpt-step-90")
    assert tuned.shutdown == date(2027, 1, 14) and tuned.model.startswith("ft:")
    assert checkpoint.shutdown == date(2026, 10, 23)


def test_a_live_shutdown_date_wins_over_the_table() -> None:
    live = lifecycle("openai", "gpt-4o-mini-2024-07-18", live_shutdown=date(2026, 12, 20))
    assert live.shutdown == date(2026, 12, 20)
    assert live.fine_tuning_closes == date(2026, 12, 20)  # no job starts on a dead model
    unknown = lifecycle("openai", "ft:some-new-base:acme::1", live_shutdown=date(2027, 3, 1))
    assert unknown.shutdown == date(2027, 3, 1) and unknown.fine_tuning_closes == date(2027, 1, 6)


def test_the_home_pricing_file_overrides_dates_like_prices() -> None:
    home_pricing({
        "models": [{"provider": "openai", "model": "gpt-4o-mini-2024-07-18",
                    "shutdown": "2027-06-30", "lifecycle_source": "https://example.com/deal"}],
        "providers": {"openai": {"fine_tuning_closes": "2027-03-01"}}})
    mini = lifecycle("openai", "gpt-4o-mini")
    assert mini.shutdown == date(2027, 6, 30) and mini.source == "https://example.com/deal"
    assert mini.fine_tuning_closes == date(2027, 1, 6)  # the row's own day still stands
    assert provider_closes("openai") == date(2027, 3, 1)
    from tunelab.data.pricing import find_price

    assert find_price("openai", "gpt-4o-mini").training_per_1m == 3.0  # prices kept


def test_a_bad_date_in_the_home_file_names_the_file_and_key(
        capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    home_pricing({"models": [
        {"provider": "openai", "model": "gpt-4o-mini-2024-07-18", "shutdown": "soon"}]})
    assert main(["data", "cost", str(write_dataset(tmp_path / "t.jsonl"))]) == 2
    err = capsys.readouterr().err
    assert "pricing.json" in err and "gpt-4o-mini-2024-07-18 shutdown 'soon'" in err


def test_the_clock_is_set_by_tunelab_today(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNELAB_TODAY", "2026-12-02")
    assert today() == date(2026, 12, 2)
    assert days_left(date(2027, 1, 6)) == 35 and days_left(None) is None
    assert days_left(date(2026, 10, 23)) == -40
    monkeypatch.setenv("TUNELAB_TODAY", "next tuesday")
    with pytest.raises(UsageError, match="TUNELAB_TODAY"):
        today()


# --- data cost --------------------------------------------------------------------------

def test_data_cost_marks_shut_down_models_and_days_left(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNELAB_TODAY", "2026-12-02")
    path = write_dataset(tmp_path / "train.jsonl")
    assert main(["data", "cost", str(path)]) == 0
    out = capsys.readouterr().out
    assert "✗ gpt-3.5-turbo-0125 (openai): shut down 2026-10-23" in out
    assert "✗ gpt-4.1-nano-2025-04-14 (openai): shut down 2026-10-23" in out
    table = out.split("✗")[0]
    assert "gpt-3.5-turbo" not in table  # no price offered
    assert not any(line.split()[:2] == ["openai", "gpt-4.1-nano-2025-04-14"]
                   for line in table.splitlines())
    assert any(line.split()[:2] == ["openai", "gpt-4o-mini-2024-07-18"]  # the check can see
               for line in table.splitlines())
    mini = next(line for line in out.splitlines() if "gpt-4o-mini-2024-07-18" in line)
    assert mini.rstrip().endswith("35 / 43")
    assert "no new fine-tuning jobs from 2027-01-06 (35 days left)" in out
    assert DEPRECATIONS in out


def test_data_cost_json_carries_dates_and_days_left(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = cost_rows(tmp_path, capsys, monkeypatch, "2026-12-02")
    mini = rows["gpt-4o-mini-2024-07-18"]
    assert (mini["status"], mini["fine_tuning_closes"], mini["shutdown"]) == (
        "open", "2027-01-06", "2027-01-14")
    assert (mini["days_to_close"], mini["days_to_shutdown"]) == (35, 43)
    assert mini["training_cost"] > 0 and mini["lifecycle_source"] == DEPRECATIONS
    old = rows["gpt-3.5-turbo-0125"]
    assert old["status"] == "shut_down" and old["shutdown"] == "2026-10-23"
    assert old["training_cost"] is None and old["inference_per_1k"] is None
    assert old["days_to_shutdown"] == -40
    gemini = rows["gemini-2.5-flash"]
    assert gemini["status"] == "open" and gemini["shutdown"] is None
    assert rows["moonshot-v1-8k"]["status"] == "inference_only"


def test_after_the_cut_off_openai_training_is_not_priced(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = cost_rows(tmp_path, capsys, monkeypatch, "2027-01-06")
    mini = rows["gpt-4o-mini-2024-07-18"]
    assert mini["status"] == "closed" and mini["training_cost"] is None
    assert mini["inference_per_1k"] > 0 and mini["days_to_shutdown"] == 8
    assert rows["gemini-2.5-flash"]["training_cost"] > 0
    assert main(["data", "cost", str(tmp_path / "train.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "no new fine-tuning jobs since 2027-01-06" in out
    assert next(line for line in out.splitlines()
                if "gpt-4o-mini-2024" in line).rstrip().endswith("closed / 8")


# --- train --provider openai ------------------------------------------------------------

class StandIn:
    """A local stand-in for api.openai.com: lists models (with `shutdown_date` where given),
    accepts uploads, and logs every request it gets."""

    def __init__(self, shutdown_dates: dict[str, str] | None = None, *,
                 lists_models: bool = True) -> None:
        self.requests: list[str] = []
        self.app = FastAPI()

        @self.app.middleware("http")
        async def log(request: Request, call_next):  # noqa: ANN001, ANN202
            self.requests.append(f"{request.method} {request.url.path}")
            return await call_next(request)

        if lists_models:
            @self.app.get("/v1/models")
            def models() -> dict:
                return {"object": "list", "data": [
                    {"id": name, "object": "model", "created": 0, "owned_by": "system",
                     "shutdown_date": day} for name, day in (shutdown_dates or {}).items()]}

        @self.app.post("/v1/files")
        async def upload(request: Request) -> JSONResponse:
            size = len(await request.body())
            return JSONResponse({"id": "file-standin", "object": "file", "bytes": size,
                                 "created_at": 0, "filename": "train.jsonl",
                                 "purpose": "fine-tune", "status": "processed"})


@pytest.fixture
def openai_at(monkeypatch: pytest.MonkeyPatch):
    """Start a stand-in and declare its URL one of OpenAI's endpoints (as a user would for a
    proxy in front of OpenAI); yields a function that starts it and returns (stand-in, url)."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with __import__("contextlib").ExitStack() as stack:
        def start(stand_in: StandIn, *, declared: bool = True) -> tuple[StandIn, str]:
            url = f"http://127.0.0.1:{stack.enter_context(serve_in_thread(stand_in.app))}/v1"
            if declared:
                home_pricing({"providers": {"openai": {
                    "endpoints": ["https://api.openai.com/v1", url]}}})
            return stand_in, url
        yield start


def train(capsys: pytest.CaptureFixture, tmp_path: Path, *flags: str) -> tuple[int, str]:
    path = write_dataset(tmp_path / "train.jsonl")
    code = main(["train", str(path), "--provider", "openai", "--yes", *flags])
    captured = capsys.readouterr()
    assert KEY not in captured.out + captured.err
    return code, captured.err


@pytest.mark.parametrize(("day", "model"), [("2027-01-06", "gpt-4o-mini"),
                                            ("2027-01-13", "gpt-4.1-mini-2025-04-14"),
                                            ("2027-03-01", "a-base-the-table-never-heard-of")])
def test_train_is_refused_once_openai_fine_tuning_closes(
        day: str, model: str, openai_at, tmp_path: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNELAB_TODAY", day)
    stand_in, url = openai_at(StandIn())
    code, err = train(capsys, tmp_path, "--base-url", url, "--model", model)
    assert code == 2 and "Traceback" not in err
    [line] = err.strip().splitlines()
    assert "no new fine-tuning jobs" in line and "since 2027-01-06" in line
    assert "--provider vertex, --provider local, or --provider NAME" in line
    assert not any(request.startswith("POST") for request in stand_in.requests)
    # the real endpoint: refused the same way before any key is needed or anything is read
    monkeypatch.delenv("OPENAI_API_KEY")
    code, err = train(capsys, tmp_path, "--model", model)
    assert code == 2 and "since 2027-01-06" in err and "OPENAI_API_KEY" not in err


def test_a_shut_down_base_model_is_refused_before_any_upload(
        openai_at, tmp_path: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNELAB_TODAY", "2026-12-02")
    stand_in, url = openai_at(StandIn())
    for model in ("gpt-3.5-turbo-0125", "ft:gpt-4.1-nano-2025-04-14:acme:natasha:abc123"):
        code, err = train(capsys, tmp_path, "--base-url", url, "--model", model)
        assert code == 2 and len(err.strip().splitlines()) == 1
        assert f"{model} was shut down on 2026-10-23" in err and "--provider local" in err
    assert "POST /v1/files" not in stand_in.requests


def test_fewer_than_30_days_left_warns_and_goes_on(
        openai_at, tmp_path: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNELAB_TODAY", "2026-12-10")
    stand_in, url = openai_at(StandIn({"gpt-4o-mini-2024-07-18": "2027-01-14"}))
    code, err = train(capsys, tmp_path, "--base-url", url, "--model", "gpt-4o-mini",
                      "--upload-only")
    assert code == 0 and "POST /v1/files" in stand_in.requests
    warnings = [line for line in err.splitlines() if "closes in" in line]
    assert len(warnings) == 1  # the live date agrees with the table: said once
    assert "fine-tuning on openai closes in 27 days (2027-01-06)" in warnings[0]
    assert "shut down in 35 days (2027-01-14)" in warnings[0]
    monkeypatch.setenv("TUNELAB_TODAY", "2026-12-02")  # 35 days before closing: quiet
    code, err = train(capsys, tmp_path, "--base-url", url, "--model", "gpt-4o-mini",
                      "--upload-only")
    assert code == 0 and "closes in" not in err


def test_the_live_shutdown_date_wins_and_a_missing_list_is_harmless(
        openai_at, tmp_path: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNELAB_TODAY", "2026-12-06")
    stand_in, url = openai_at(StandIn({"gpt-4o-mini-2024-07-18": "2026-12-05"}))
    code, err = train(capsys, tmp_path, "--base-url", url, "--model", "gpt-4o-mini-2024-07-18")
    assert code == 2 and "was shut down on 2026-12-05" in err
    assert stand_in.requests == ["GET /v1/models"]
    bare, url = openai_at(StandIn(lists_models=False))
    code, err = train(capsys, tmp_path, "--base-url", url, "--model", "gpt-4o-mini",
                      "--upload-only")
    assert code == 0 and bare.requests == ["GET /v1/models", "POST /v1/files"]


def test_other_endpoints_and_providers_are_not_held_to_openai_dates(
        openai_at, tmp_path: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNELAB_TODAY", "2027-03-01")
    server, url = openai_at(StandIn(), declared=False)  # e.g. `tunelab serve`
    code, err = train(capsys, tmp_path, "--base-url", url, "--model", "gpt-4o-mini",
                      "--upload-only")
    assert code == 0 and server.requests == ["POST /v1/files"]  # not even a model lookup
    path = write_dataset(tmp_path / "train.jsonl")
    assert main(["train", str(path), "--provider", "vertex", "--validate-only"]) == 0
    assert main(["train", str(path), "--provider", "local", "--save-config",
                 str(tmp_path / "run.yaml")]) == 0


# --- the other providers: closed doors, Azure's two calendars ----------------------------

AZURE_SCHEDULE = "concepts-model-retirement-schedule-content.md"


@pytest.mark.parametrize(("provider", "said"), [
    ("mistral", "no replacement documented"), ("cohere", "closed since 2025-09-15")])
def test_closed_fine_tuning_apis_are_refused_with_the_reason_and_never_offered(
        provider: str, said: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from tunelab.providers import provider_names

    path = write_dataset(tmp_path / "train.jsonl")
    assert main(["train", str(path), "--provider", provider, "--yes"]) == 2
    err = capsys.readouterr().err
    assert said in err and "source: https://docs." in err and "--provider together" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert provider not in provider_names()


def test_azure_rows_carry_both_calendars_and_their_source() -> None:
    mini = lifecycle("azure", "gpt-4o-mini-2024-07-18")
    assert (mini.fine_tuning_closes, mini.existing_customer_closes, mini.shutdown) == (
        date(2026, 10, 1), date(2027, 4, 1), date(2027, 10, 1))
    tuned = lifecycle("azure", "gpt-4.1-2025-04-14.ft-0a1b2c3d4e5f")  # Azure's model ids
    assert (tuned.fine_tuning_closes, tuned.existing_customer_closes, tuned.shutdown) == (
        date(2026, 10, 14), date(2027, 4, 14), date(2027, 10, 14))
    assert AZURE_SCHEDULE in tuned.source and tuned.model.endswith(".ft-0a1b2c3d4e5f")
    assert lifecycle("azure", "gpt-4.1-mini").shutdown == date(2027, 10, 14)  # undated name
    home_pricing({"lifecycle": [{"provider": "azure", "model": "gpt-4.1-2025-04-14",
                                 "existing_customer_closes": "2027-06-30"}]})
    moved = lifecycle("azure", "gpt-4.1-2025-04-14")
    assert moved.existing_customer_closes == date(2027, 6, 30)
    assert moved.shutdown == date(2027, 10, 14)  # the keys it does not name stay


@pytest.mark.parametrize(("day", "existing", "outcome"), [
    ("2026-09-01", None, None),  # 43 days before the base retires: quiet
    ("2026-10-01", None, "closes in 13 days (2026-10-14)"),
    ("2026-12-02", None, "--existing-customer says you are one"),
    ("2026-12-02", True, None),
    ("2026-12-02", False, UsageError),
    ("2027-03-20", True, "closes in 25 days (2027-04-14)"),
    ("2027-04-14", True, UsageError),
])
def test_one_gate_keeps_azures_new_and_existing_customer_dates(
        day: str, existing: bool | None, outcome: object,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tunelab.runs.checks import lifecycle_gate

    monkeypatch.setenv("TUNELAB_TODAY", day)
    model = "gpt-4.1-mini-2025-04-14"
    if outcome is UsageError:
        with pytest.raises(UsageError, match="2026-10-14|2027-04-14"):
            lifecycle_gate("azure", "https://acme.openai.azure.com/openai/v1", model,
                           existing_customer=existing)
        return
    warning = lifecycle_gate("azure", None, model, existing_customer=existing)
    assert warning is None if outcome is None else str(outcome) in (warning or "")
