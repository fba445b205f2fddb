# pagelens developer commands. `make demo` sets up and runs the main job; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DOCS ?=
COLLECTION ?= demo
QUESTION ?= What is the total amount due?

.PHONY: setup demo demo-tiny test test-extended test-all lint compose-check clean

$(BIN)/pagelens: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(BIN)/pagelens

setup: $(BIN)/pagelens
	@scripts/install-system-deps.sh

# Index a sample collection built by scripts/make_sample_docs.py (invoices and reports in five languages,
# a scanned letter, a 3-page report with a table and a chart, a Word document) with the configured models
# (default: the real ones from the hub), then search and ask one question per document, with timings.
# Your own documents: make demo DOCS="~/invoices report.docx" QUESTION="What is the VAT number?"
demo: setup
	$(BIN)/python scripts/demo.py --collection $(COLLECTION) $(if $(DOCS),--docs $(DOCS) --question "$(QUESTION)")

# The same with tiny random models (no network needed): shows the pipeline, not the quality.
demo-tiny: setup
	test -d .tiny-models/retriever || $(BIN)/python tests/make_tiny_models.py .tiny-models
	PAGELENS_RETRIEVER_MODEL=.tiny-models/retriever PAGELENS_ANSWER_MODEL=.tiny-models/answerer \
	PAGELENS_DATA_DIR=.pagelens-data PAGELENS_MAX_NEW_TOKENS=24 \
	  $(MAKE) demo

test: setup
	$(BIN)/python -m pytest

# The longest crash/restart/load tests (SIGKILL mid-job, 16 clients on loopback): CI runs them after `make test`.
test-extended: setup
	$(BIN)/python -m pytest -m extended

# Everything but the GPU checks.
test-all: setup
	$(BIN)/python -m pytest -m "not gpu"

lint: setup
	$(BIN)/ruff check .
	PYTHON=$(BIN)/python scripts/typecheck.sh

clean:
	rm -rf .pagelens-data .tiny-models .demo-docs test-artifacts .typecheck build
