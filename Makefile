# Two commands a newcomer needs: `make demo` and `make test`. Both install everything
# first: uv in a private tools venv (.tools), then the locked environment (.venv).
SHELL := /bin/bash
PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
STAMP := $(VENV)/.clm-synced
PKGS := clm features training serving monitoring campaigns

.PHONY: setup browser demo test lint typecheck pytest bench clean help

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

# Headless Chromium (Debian's package) for the API page test, which loads the page and
# screenshots it (tests/serving/test_api_page.py). Installed when missing and we are
# root (CI); elsewhere the test skips and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium for the API page test"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends chromium \
	      || { apt-get update -q -o DPkg::Lock::Timeout=600 \
	           && apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends chromium; } \
	      || echo "could not install chromium: the API page test will skip"; \
	  else \
	    echo "chromium is missing and we are not root: the API page test will skip"; \
	  fi; }

pytest: setup browser
	$(VENV)/bin/pytest

test: lint typecheck pytest

bench: setup
	@echo "Each benchmark is a command; see bench/README.md for the figures and the exact runs:"
	@for m in bench/*.py; do n=$$(basename $$m .py); [ "$$n" = __init__ ] || echo "  $(VENV)/bin/python -m bench.$$n --help"; done

clean:
	rm -rf $(VENV) $(TOOLS) workspace .pytest_cache .mypy_cache .ruff_cache
