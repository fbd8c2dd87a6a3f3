# Two commands set up a fresh machine: `make tune` (the main job) and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: tune test bench clean

# pip takes torch/torchvision from this machine's local wheels; never uv/poetry here
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev,dashboard,postgres]"
	touch $@

tune: $(VENV)/.installed
	$(BIN)/tunectl tune --space searchspaces/quick.yaml --dataset digits --trials 30

test: $(VENV)/.installed
	$(BIN)/python -m pytest -x -q

bench: $(VENV)/.installed
	$(BIN)/python bench/epoch_cost.py

clean:
	rm -rf $(VENV) studies/runs
