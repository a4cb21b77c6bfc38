"""Model lifecycle as data: dates with sources, the TUNELAB_TODAY clock, `data cost` marking
shut-down models and days left, and `train --provider openai` refusing before any upload."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from test_data_cli import write_dataset
from tunelab.cli import main
from tunelab.data.lifecycle import days_left, lifecycle, provider_closes, today
from tunelab.errors import UsageError
from tunelab.home import home

DEPRECATIONS = "https://developers.openai.com/api/docs/deprecations"


def cost_rows(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
              day: str) -> dict[str, dict]:
    """`tunelab data cost --json` on a small dataset as of `day`, rows keyed by model."""
    monkeypatch.setenv("TUNELAB_TODAY", day)
    assert main(["data", "cost", str(write_dataset(tmp_path / "train.jsonl")), "--json"]) == 0
    return {row["model"]: row for row in json.loads(capsys.readouterr().out)["cost"]}


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
    (home() / "pricing.json").write_text(json.dumps({
        "models": [{"provider": "openai", "model": "gpt-4o-mini-2024-07-18",
                    "shutdown": "2027-06-30", "lifecycle_source": "https://example.com/deal"}],
        "providers": {"openai": {"fine_tuning_closes": "2027-03-01"}}}))
    mini = lifecycle("openai", "gpt-4o-mini")
    assert mini.shutdown == date(2027, 6, 30) and mini.source == "https://example.com/deal"
    assert mini.fine_tuning_closes == date(2027, 1, 6)  # the row's own day still stands
    assert provider_closes("openai") == date(2027, 3, 1)
    from tunelab.data.pricing import find_price

    assert find_price("openai", "gpt-4o-mini").training_per_1m == 3.0  # prices kept


def test_a_bad_date_in_the_home_file_names_the_file_and_key(
        capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    (home() / "pricing.json").write_text(json.dumps({"models": [
        {"provider": "openai", "model": "gpt-4o-mini-2024-07-18", "shutdown": "soon"}]}))
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
    assert "gpt-3.5-turbo" not in table and "gpt-4.1-nano" not in table  # no price offered
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
