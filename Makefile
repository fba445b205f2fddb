# pagelens developer commands. `make demo` sets up and runs the main job; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DOCS ?= ../shared/pdfs/real
COLLECTION ?= demo
QUESTION ?= What is the total amount due?

.PHONY: setup demo demo-tiny test test-all lint compose-check clean

$(BIN)/pagelens: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(BIN)/pagelens

setup: $(BIN)/pagelens
	@scripts/install-system-deps.sh

# Index DOCS into COLLECTION with the configured models (default: the real ones from the hub), then search.
demo: setup
	$(BIN)/pagelens index $(DOCS) --collection $(COLLECTION) || test $$? -eq 1
	$(BIN)/pagelens search "$(QUESTION)" --collection $(COLLECTION) -k 5

# The same with tiny random models (no network needed): shows the pipeline, not the quality.
demo-tiny: setup
	$(BIN)/python tests/make_tiny_models.py .tiny-models
	PAGELENS_RETRIEVER_MODEL=.tiny-models/retriever PAGELENS_ANSWER_MODEL=.tiny-models/answerer \
	PAGELENS_DATA_DIR=.pagelens-data PAGELENS_PAGE_LONGEST_EDGE=1024 \
	  $(MAKE) demo

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	PYTHON=$(BIN)/python scripts/typecheck.sh

clean:
	rm -rf .pagelens-data .tiny-models test-artifacts .typecheck build
