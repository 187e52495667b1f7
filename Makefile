# Two entry points (README): `make demo` runs the default config, `make test` runs the test suite.
# Both create .venv and install the pinned dependencies on first use.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.seqsbi-installed
CORES ?= all
# synthesizer creates its data directory on first import: keep it inside the project, not in ~.
export SYNTHESIZER_DIR := $(CURDIR)/.synthesizer

.PHONY: demo test lint venv benchmark clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: 2.13.0 is a local CPU wheel; anything unpinned pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

demo: venv
	$(BIN)/snakemake --cores $(CORES)

test: venv
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -v -rs

lint: venv
	$(BIN)/snakemake --lint

benchmark: venv
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/overhead.py

clean:
	rm -rf results .snakemake
