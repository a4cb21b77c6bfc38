"""A provider's SDK, the trainer and the server load only on the paths that use them.

Each command runs in a fresh interpreter, which then lists the heavy packages it imported.
Only what was imported is checked, never how long it took.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import EXAMPLES

HEAVY = ("openai", "google.genai", "google.cloud.storage", "torch", "transformers", "peft",
         "accelerate", "fastapi", "uvicorn", "starlette")

# Runs the CLI in-process, then prints the heavy modules it left in sys.modules.
PROBE = """
import json, sys
from tunelab.cli.app import main
heavy = json.loads(sys.argv[1])
try:
    code = main(sys.argv[2:])
except SystemExit as done:
    code = done.code
loaded = sorted(name for name in heavy
                if any(m == name or m.startswith(name + ".") for m in list(sys.modules)))
print("\\nLOADED " + json.dumps({"code": code, "loaded": loaded}))
"""

TRAIN = str(EXAMPLES / "natasha_train.jsonl")
COMMANDS = [
    ["--help"],
    ["data", "check", TRAIN],
    ["data", "check", TRAIN, "--json"],
    ["data", "cost", TRAIN],
    ["jobs", "list"],
    ["presets"],
    ["train", "--help"],
    ["serve", "--help"],
]


def heavy_imports(argv: list[str]) -> tuple[int, list[str]]:
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(HEAVY), *argv],
                          capture_output=True, text=True, check=False, timeout=120)
    line = next((text for text in reversed(done.stdout.splitlines())
                 if text.startswith("LOADED ")), None)
    assert line is not None, done.stdout + done.stderr
    result = json.loads(line.removeprefix("LOADED "))
    return result["code"], result["loaded"]


@pytest.mark.parametrize("argv", COMMANDS,
                         ids=lambda argv: " ".join(arg.rsplit("/", 1)[-1] for arg in argv))
def test_command_loads_no_sdk_trainer_or_server(argv: list[str]) -> None:
    code, loaded = heavy_imports(argv)
    assert code == 0
    assert loaded == [], f"`tunelab {' '.join(argv)}` imported {loaded}"
