# Two commands set up a fresh machine: `make tune` (the main job) and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: tune test bench mutation clean

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

# make bench MNIST=DIR: DIR holds the MNIST test set's t10k-*-ubyte(.gz) files (torchvision's mirrors)
MNIST ?=
bench: $(VENV)/.installed
	@test -n "$(MNIST)" || { echo "error: make bench MNIST=DIR (DIR: the MNIST test set's t10k-*-ubyte files)" >&2; exit 2; }
	$(BIN)/python bench/epoch_cost.py $(MNIST)

# Mutation testing (slow: tens of minutes on 2 cores; not part of `make test`). The modules and
# the tests it runs are in pyproject.toml [tool.mutmut]; MUTANTS narrows it to some functions,
# e.g. make mutation MUTANTS='tunectl.diagnose.x_verdict__* tunectl.tune.x_make_pruner*'.
# The surviving mutants are written to bench/mutants.txt (see docs/testing.md).
MUTANTS ?=
mutation: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e ".[mutation]"
	$(BIN)/mutmut run --max-children 2 $(MUTANTS) || true
	$(BIN)/mutmut results > bench/mutants.txt
	@echo "surviving mutants: $$(grep -c ': survived' bench/mutants.txt || true) (bench/mutants.txt)"

clean:
	rm -rf $(VENV) studies/runs mutants
