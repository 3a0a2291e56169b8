# The two commands: `make demo` (set up, serve the embedded default, ingest, answer) and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CONFIG ?= configs/local.yaml
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER := 0
export RAY_AUTH_MODE := disabled
export RAY_USAGE_STATS_ENABLED := 0
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test lint setup clean browser ui-vendor

setup: $(STAMP) browser

# Debian's headless Chromium for the web page's browser tests (tests/ui/); Playwright drives it, never downloads one.
browser:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

# Refresh the page's vendored library from deployments/ui/package-lock.json (committed; the page has no build step).
ui-vendor:
	cd deployments/ui && npm ci --ignore-scripts --no-audit --no-fund && cp node_modules/cytoscape/dist/cytoscape.min.js static/vendor/

# torch first: 2.13.0 is the CPU build on local disk; letting a dependency pick torch pulls GBs of CUDA.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) graph.py demo --config $(CONFIG)

# Lint, format check and types ([tool.ruff] and [tool.mypy] in pyproject.toml); `make test` runs it first.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy deployments

test: $(STAMP) browser lint
	$(PY) -m pytest -v -ra

clean:
	rm -rf data .pytest_cache
