# One entry point. `make train` and `make test` each create .venv and install medseg when needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.medseg-installed
NB_WORKERS ?= 2
# Tests write their data and runs under a scratch folder that is removed when they end, pass or fail:
# nbdev_test's worker processes exit without running finalizers, so a notebook's TemporaryDirectory
# would otherwise stay behind (hundreds of MB a run), and pytest keeps its last three base folders.
SCRATCH := $(CURDIR)/.scratch
scratch = rm -rf $(SCRATCH)/$(1) && mkdir -p $(SCRATCH)/$(1) && TMPDIR=$(SCRATCH)/$(1) $(2); rc=$$?; rm -rf $(SCRATCH)/$(1); exit $$rc

.PHONY: install train outputs test test-fast sync-check params-check nbtest nbtest-fast pytest pytest-fast docs-check docs bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install medseg with everything the tests need

train: $(STAMP)  ## the main job: papermill runs nbs/train.ipynb on the built-in synthetic data
	@mkdir -p runs
	$(BIN)/papermill nbs/train.ipynb runs/train-out.ipynb

test: $(STAMP) sync-check params-check nbtest pytest docs-check  ## everything, as CI runs it (slow cells and real data included)

test-fast: $(STAMP) nbtest-fast pytest-fast  ## the edit loop: notebooks without slow cells, pytest without slow or real-data tests

sync-check:  ## fail if nbdev_export or nbdev_clean would change a tracked file
	$(BIN)/python .ci/check_sync.py

params-check:  ## each papermill notebook has exactly one `parameters` cell
	$(BIN)/python .ci/check_params.py nbs/train.ipynb nbs/track.ipynb

nbtest:  ## run the notebooks as tests, `slow` cells included (`cuda` cells run only where a GPU is: nbdev_test --flags "slow cuda")
	@$(call scratch,nbtest,$(BIN)/nbdev_test --n_workers $(NB_WORKERS) --flags slow)

nbtest-fast:  ## the notebooks without their slow cells
	@$(call scratch,nbtest-fast,$(BIN)/nbdev_test --n_workers $(NB_WORKERS))

pytest:  ## integration and fault-injection tests
	@$(call scratch,pytest,$(BIN)/python -m pytest -q tests --basetemp=$(SCRATCH)/pytest/base)

pytest-fast:  ## pytest without the slow sweeps and the real-data tests
	@$(call scratch,pytest-fast,$(BIN)/python -m pytest -q tests -m "not slow and not realdata" --basetemp=$(SCRATCH)/pytest-fast/base)

docs-check:  ## example cells keep their outputs; nbdev's docs processing + an offline HTML render of every page
	$(BIN)/python .ci/check_outputs.py
	$(BIN)/python .ci/check_docs.py

outputs: $(STAMP)  ## execute the notebooks and keep their outputs (tables, figures) for the docs pages
	$(BIN)/python .ci/execute_nbs.py $(NBS)
	$(BIN)/nbdev_clean

docs: $(STAMP)  ## the docs site (needs quarto); README.md is hand-written and kept (nbdev 2.4's nbdev_docs would regenerate it from index.ipynb)
	@if command -v quarto >/dev/null; then cp README.md .README.keep && $(BIN)/nbdev_docs; s=$$?; mv .README.keep README.md; exit $$s; else \
	  echo "quarto is not installed: get it from https://quarto.org/docs/get-started/ , then run make docs again."; \
	  echo "Offline, 'make docs-check' renders every page to HTML without quarto."; fi

bench: $(STAMP)  ## benchmarks (see bench/README.md)
	@for f in bench/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf _proc _docs runs data .scratch
