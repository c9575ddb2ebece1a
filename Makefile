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
	@echo "Figures: results/fmnist16-mlp/figures/  Sketched vs exact: results/fmnist16-mlp/hessian/set~{train,test}/comparison.tsv"

test: setup  ## Lint, unit tests, workflow tests (SLURM tests run when a cluster is up).
	$(BIN)/ruff check .
	$(BIN)/snakefmt --check workflow
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
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/snakefmt --check workflow && $(BIN)/snakemake --lint

clean-results:
	rm -rf results/*/ .snakemake

# The benchmark environment (benchmarks/README.md): hessketch beside the peer libraries it is
# compared with. The peers are installed here only, never as workflow dependencies; they are
# installed without their dependencies (backpack pulls torchvision and a newer torch), the
# rest by hand, pinned to our torch (see PEERS.md in the shared notes).
BENCH_VENV ?= .venv-bench
BENCH_PYTHON ?= python3.11
.PHONY: bench-setup
bench-setup: data  ## Create .venv-bench with hessketch, skerch, curvlinops and PyHessian.
	test -x $(BENCH_VENV)/bin/python || $(BENCH_PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/pip install --quiet torch==2.13.0
	$(BENCH_VENV)/bin/pip install --quiet -e .
	$(BENCH_VENV)/bin/pip install --quiet numpy scipy h5py
	$(BENCH_VENV)/bin/pip install --quiet --no-deps skerch==1.2.0 curvlinops-for-pytorch==3.0.1 pyhessian backpack-for-pytorch
	echo torch==2.13.0 > $(BENCH_VENV)/constraints.txt
	$(BENCH_VENV)/bin/pip install --quiet -c $(BENCH_VENV)/constraints.txt torch-dct einops einconv linear_operator opt_einsum tqdm unfoldNd packaging
	$(BENCH_VENV)/bin/python -c "import hessketch, skerch, curvlinops, pyhessian, scipy; print('bench-setup: ok')"
