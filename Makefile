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

# Mutation testing (slow: hours on 2 cores for the whole scope; not part of `make test`). mutmut 3
# copies the tree to mutants/ (gitignored) and runs, for each mutant, the tests of pyproject.toml's
# [tool.mutmut] selection that reach the mutated function. The scope is the issue's: config.py,
# train.py, space.py, diagnose.py whole, data.py's split and tune.py's sampler/pruner construction
# (the same patterns as bench/mutation_summary.py). MUTANTS narrows it, e.g.
#   make mutation MUTANTS='tunectl.diagnose.x_verdict__* tunectl.tune.x_make_pruner__*'
# mutmut reruns every mutant it is given by name; the score per module and function and every
# mutant not killed are written to bench/mutants.txt (see docs/testing.md).
MUTATION_SCOPE := 'tunectl.config.*' 'tunectl.train.*' 'tunectl.space.*' 'tunectl.diagnose.*' \
    'tunectl.data.xǁSplitsǁ*' 'tunectl.data.x_check_split_seed__*' 'tunectl.data.x_split_sizes__*' \
    'tunectl.data.x_parse_split__*' 'tunectl.data.x_split_indices__*' 'tunectl.data.x_make_splits__*' \
    'tunectl.data.x_load_splits__*' 'tunectl.data.x_same_split__*' \
    'tunectl.tune.x_make_sampler__*' 'tunectl.tune.x_make_pruner__*' 'tunectl.tune.x_grid__*'
MUTANTS ?= $(MUTATION_SCOPE)
mutation: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e ".[mutation]"
	env -u PYTHONPATH $(BIN)/mutmut run --max-children 2 $(MUTANTS) || true
	$(BIN)/python bench/mutation_summary.py mutants > bench/mutants.txt
	@head -n 20 bench/mutants.txt | grep -v '^    '; echo "(bench/mutants.txt)"

clean:
	rm -rf $(VENV) studies/runs mutants
