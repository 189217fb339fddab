# ftc developer tasks. `make demo` and `make test` work on a fresh machine with Python 3.10+.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   := .ftc-demo
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions
export HF_HUB_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: install test test-fast clone-test lint demo regen bench bench-throughput gpu-check clean

# torch is pinned in the same pip command as everything else: without the pin, deepspeed/peft
# would pull a multi-GB CUDA build of torch.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0" -e ".[runtime,dev]"
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check .

# The full gate (what CI runs): lint and every test, the slow ones that train the tiny model included.
test: install lint
	$(BIN)/python -m pytest -n 2 -q

# The edit loop: lint and every test that does not train (no `slow` marker; the tiny model they
# load is built once and kept in .cache/tiny/).
test-fast: install lint
	$(BIN)/python -m pytest -n 2 -q -m "not slow"

# `make test` in a fresh clone of the current commit, alone in an empty temporary directory.
clone-test:
	scripts/clone_test.sh

# The tokenized-data cache stays with the demo (FTC_CACHE_DIR), not in the user's Hugging Face cache.
demo: install
	$(BIN)/python -m ftc.tiny --model-dir $(DEMO)/tiny-llama --data-dir $(DEMO)/data
	$(BIN)/ftc compile examples/tiny-cpu.yaml -o $(DEMO)/out
	FTC_CACHE_DIR=$(DEMO)/cache $(BIN)/python $(DEMO)/out/train.py
	@echo
	@echo "Trained adapter: $(DEMO)/output/final"
	@echo "Metrics:         $(DEMO)/output/metrics.json"
	@echo "Loss curve:      $(DEMO)/output/loss_curve.png"

regen: install
	$(BIN)/python scripts/regen.py

bench: install
	$(BIN)/python scripts/bench_compile.py

# ftc's train.py vs TRL (packing) vs a padded Trainer on a length-skewed dataset (CPU, a few minutes).
bench-throughput: install
	$(BIN)/python scripts/bench_throughput.py

# On a CUDA machine: LoRA / QLoRA / full-FT steps on a random Llama-2-7B, peak memory and tokens/s.
gpu-check: install
	PYTHON=$(BIN)/python scripts/gpu_check.sh

clean:
	rm -rf $(DEMO) .cache .pytest_cache build dist *.egg-info
