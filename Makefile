# The two commands of the README:
#   make book   build the HTML book into _build/html (sets everything up itself)
#   make test   unit tests + doctests, a clean build of the whole book, HTML checks
# Others: make unit (lint + quick tests), make lint, make page PAGE=book/x.md (execute one page),
#         make checkpoints [ONLY=name,...] [JOBS=2] (retrain shipped models; JOBS: parallel processes,
#         one module's recipes each), make bench.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
VENDOR := .vendor/site/vendor/.stamp
BOOK   ?= .
JB_FLAGS := -W -n --keep-going --all
ONLY ?=
JOBS ?= 1
export PATH := $(abspath $(BIN)):$(PATH)
export PYDEVD_DISABLE_FILE_VALIDATION := 1
# numpy's OpenBLAS with 2 threads slows down by 10-200x whenever another process
# is busy on a 2-core machine; torch keeps its own thread pool.
export OPENBLAS_NUM_THREADS ?= 1

.PHONY: book test unit lint html-check page checkpoints bench clean venv vendor build-html

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[book,test]"
	@touch $(STAMP)

venv: $(STAMP)

$(VENDOR): tools/vendor_js.py $(wildcard tools/js/*.js)
	$(BIN)/python tools/vendor_js.py

vendor: $(STAMP) $(VENDOR)

build-html: vendor
	$(BIN)/jupyter-book build $(BOOK) $(JB_FLAGS)

book: build-html
	@echo ""
	@echo "The book is built: open $(abspath _build/html/index.html) in a browser."

unit: venv lint
	$(BIN)/python -m pytest -q -m "not slow and not html and not build"

# pyflakes, import order, pyupgrade (one typing dialect); configured in pyproject.toml.
lint: venv
	$(BIN)/ruff check helpers tests tools benchmarks

# A second pass runs the reproducibility tests with another CPU kernel path
# (float32 rounds differently there), so no test can assume bit-identity with a
# shipped file (readers' CPUs differ from the one that trained it).
REPRO_CAPABILITY ?= default

test: vendor
	$(BIN)/python -m pytest -q -m "not html" --cov=helpers --cov-report=term --cov-fail-under=90
	ATEN_CPU_CAPABILITY=$(REPRO_CAPABILITY) $(BIN)/python -m pytest -q -m repro
	rm -rf _build
	$(MAKE) --no-print-directory build-html
	$(MAKE) --no-print-directory html-check

html-check: vendor
	$(BIN)/python -m pytest -q -m html tests/test_html.py

page: vendor
	@test -n "$(PAGE)" || (echo "usage: make page PAGE=book/01_tensor_notation.md" && exit 2)
	$(BIN)/python tools/run_page.py $(PAGE)

checkpoints: venv
	$(BIN)/python -m helpers.store rebuild --only "$(ONLY)" --jobs "$(JOBS)"
	$(BIN)/python -m helpers.store verify

bench: venv
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf _build .jupyter_cache .coverage htmlcov
