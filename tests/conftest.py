"""Every test gets its own TUNELAB_HOME; converted models are cached once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One conversion of the embedded GGUF for the whole run (about 20 s), not one per test.
    path = Path(os.environ.get("TUNELAB_TEST_CACHE") or tmp_path_factory.mktemp("cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(autouse=True)
def tunelab_home(tmp_path: Path, shared_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("TUNELAB_HOME", str(home))
    monkeypatch.setenv("TUNELAB_CACHE_DIR", str(shared_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    # Lifecycle dates (OpenAI's wind-down) are compared with today: pin the clock so a test
    # means the same after 2027-01-06 as today. Tests about other days set their own.
    monkeypatch.setenv("TUNELAB_TODAY", "2026-12-02")
    for key in ("OPENAI_API_KEY", "MOONSHOT_API_KEY", "KIMI_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    return home


@pytest.fixture(scope="session")
def random_lora(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> Path:
    """A LoRA adapter folder on the embedded model with random weights: it answers differently
    from its base, without the cost of training."""
    import torch
    from peft import LoraConfig, get_peft_model

    from tunelab.local import model_source

    torch.manual_seed(0)
    with pytest.MonkeyPatch.context() as patch:  # runs before the per-test environment
        patch.setenv("TUNELAB_CACHE_DIR", str(shared_cache))
        patch.setenv("HF_HUB_OFFLINE", "1")
        base = model_source.load_model(None)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=64, init_lora_weights=False,
                                            target_modules=["q_proj", "v_proj"]))
    folder = tmp_path_factory.mktemp("lora") / "adapter"
    model.save_pretrained(folder)
    return folder
