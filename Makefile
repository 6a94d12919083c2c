# Two commands a newcomer needs: `make demo` and `make test`. Both install everything
# first: uv in a private tools venv (.tools), then the locked environment (.venv).
SHELL := /bin/bash
PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
STAMP := $(VENV)/.clm-synced
PKGS := clm features training serving monitoring

.PHONY: setup demo test lint typecheck pytest bench clean help

help:
	@echo "make demo   - install, then run the whole loop on a small simulated bank"
	@echo "make test   - install, then ruff, mypy and the whole pytest suite"
	@echo "make bench  - list the benchmark commands under bench/ (figures in bench/README.md)"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv>=0.5"

$(STAMP): $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python $(PYTHON)
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/clm demo

lint: setup
	$(VENV)/bin/ruff check $(PKGS) tests bench
	$(VENV)/bin/ruff format --check $(PKGS) tests bench

typecheck: setup
	$(VENV)/bin/mypy $(PKGS)

pytest: setup
	$(VENV)/bin/pytest

test: lint typecheck pytest

bench: setup
	@echo "Each benchmark is a command; see bench/README.md for the figures and the exact runs:"
	@for m in bench/*.py; do n=$$(basename $$m .py); [ "$$n" = __init__ ] || echo "  $(VENV)/bin/python -m bench.$$n --help"; done

clean:
	rm -rf $(VENV) $(TOOLS) workspace .pytest_cache .mypy_cache .ruff_cache
