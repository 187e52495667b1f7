# Two entry points (README): `make demo` runs the default config, `make test` runs the test suite.
# Both create .venv and install the pinned dependencies on first use.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.seqsbi-installed
CORES ?= all
# synthesizer creates its data directory on first import: keep it inside the project, not in ~.
export SYNTHESIZER_DIR := $(CURDIR)/.synthesizer

.PHONY: demo test lint venv synference-venv benchmark benchmark-sbibm clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml benchmarks/sbibm/requirements.txt benchmarks/sbibm/requirements-no-deps.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: 2.13.0 is a local CPU wheel; anything unpinned pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	# The sbibm benchmark (and its tests): sbibm without its stale sbi pin, plus what it imports.
	$(BIN)/python -m pip install --quiet -r benchmarks/sbibm/requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -r benchmarks/sbibm/requirements-no-deps.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

# synference 0.1.4 itself, only to write libraries the interoperability tests read (tests/synference_library.py).
# A separate venv, never .venv: synference's declared dependencies (torch, sbi>=0.22, jax, lampe, optuna, ...) would
# move the pinned torch/sbi. It sees .venv's packages through a .pth file and gets only synference (--no-deps) and
# numba, the one module its library code imports that .venv lacks: ~30 s here (2 busy cores) instead of minutes
# for a full resolve (and no second torch).
SYNFERENCE_VENV ?= .venv-synference
SYNFERENCE_STAMP := $(SYNFERENCE_VENV)/.synference-installed

synference-venv: $(SYNFERENCE_STAMP)

$(SYNFERENCE_STAMP): $(STAMP) requirements-synference.txt
	rm -rf $(SYNFERENCE_VENV)
	$(BIN)/python -m venv $(SYNFERENCE_VENV)
	$(SYNFERENCE_VENV)/bin/python -c 'import sys, sysconfig, pathlib; pathlib.Path(sysconfig.get_paths()["purelib"], "seqsbi-main-venv.pth").write_text(sys.argv[1] + "\n")' "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
	$(SYNFERENCE_VENV)/bin/python -m pip install --quiet --no-deps -r requirements-synference.txt
	touch $@

demo: venv
	$(BIN)/snakemake --cores $(CORES)

test: venv synference-venv
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -v -rs

# Style (pyproject.toml: one line length, 120) and Snakemake's own checks, of the workflow and of .test/.
lint: venv
	$(BIN)/ruff check .
	$(BIN)/snakefmt --check .
	$(BIN)/snakemake --lint
	$(BIN)/snakemake --directory .test --lint

benchmark: venv
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/overhead.py

# Engines x budgets x sbibm tasks through the workflow; results/benchmarks/sbibm/c2st.{csv,png}.
benchmark-sbibm: venv
	OMP_NUM_THREADS=1 $(BIN)/snakemake -s benchmarks/sbibm/Snakefile --cores 2

clean:
	rm -rf results .snakemake
