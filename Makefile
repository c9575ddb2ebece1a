# The two commands of the README: `make demo` and `make test`. Each sets itself up.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FASHION_MNIST := /usr/share/datasets/fashion-mnist
STAMP := $(VENV)/.installed

.PHONY: demo test setup data lint clean-results

demo: setup data  ## Run the default study end to end on this machine (CPU is enough).
	$(BIN)/snakemake
	@echo "Figures: results/fmnist16-mlp/figures/  Sketched vs exact: results/fmnist16-mlp/comparison.tsv"

test: setup  ## Lint, unit tests, workflow tests (SLURM tests run when a cluster is up).
	$(BIN)/ruff check .
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/pytest

setup: $(STAMP)

# torch is pinned: 2.13.0 is the CPU build this project is developed against.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[workflow,test]'
	touch $@

data:  ## The default study's data: Debian's dataset-fashion-mnist, when it is missing.
	@if [ -e $(FASHION_MNIST)/train-labels-idx1-ubyte.gz ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing the Debian package dataset-fashion-mnist"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends dataset-fashion-mnist >/dev/null \
		|| { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends dataset-fashion-mnist >/dev/null; }; \
	else \
		echo "Fashion-MNIST is not at $(FASHION_MNIST) and cannot be installed here (needs root and apt-get)."; \
		echo "Install the Debian package dataset-fashion-mnist, or set data.root in config/config.yaml"; \
		echo "to a folder with the MNIST-format IDX files (train-images-idx3-ubyte[.gz], ...)."; \
		exit 1; \
	fi

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/snakefmt --check Snakefile workflow/rules && $(BIN)/snakemake --lint

clean-results:
	rm -rf results/*/ .snakemake
