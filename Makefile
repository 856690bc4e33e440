# cookiecutter-fastapi-uptime: the template's own commands.
#   make demo   bake the default service and serve it on SQLite at http://127.0.0.1:8000
#   make test   the template's whole test suite (what CI runs)
#   make bench  benchmark the baked service's probes against bare FastAPI (wrk, PostgreSQL)
#   make locks  regenerate the baked projects' uv.lock files (after a change to their pyproject.toml)
.DEFAULT_GOAL := help
PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
DEMO_DIR := build/demo
DEMO_VENV := build/demo-venv
DEMO_PORT ?= 8000
# pytest-xdist workers; each bakes and installs the combinations it runs.
WORKERS ?= 2
# make bench BENCH_ARGS="--rounds 5": benchmarks/bench.py --help lists the options.
BENCH_ARGS ?=

.PHONY: help sync demo test wrk bench bench-metrics bench-wrapper lint locks locks-upgrade clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --locked --python $(PYTHON)
	@touch $@

sync: $(VENV)/.synced ## Install the template's dev tools into .venv

# The demo bakes with the bake group alone, in an environment of its own, and installs
# the baked service from its own uv.lock without its dev tools: nothing of the template's
# test, manifest or benchmark tooling.
$(DEMO_VENV)/.synced: $(UV) pyproject.toml uv.lock
	UV_PROJECT_ENVIRONMENT=$(DEMO_VENV) $(UV) sync --locked --only-group bake --python $(PYTHON)
	@touch $@

demo: $(DEMO_VENV)/.synced ## Bake the default service into build/demo and serve it on SQLite
	rm -rf $(DEMO_DIR)
	$(DEMO_VENV)/bin/cookiecutter --no-input --output-dir $(DEMO_DIR) .
	cd $(DEMO_DIR)/my-service && \
	  PY=$$($(PYTHON) ../../../scripts/find_python.py $$(cat .python-version)) && \
	  ../../../$(UV) sync --quiet --locked --no-dev --python "$$PY" && \
	  .venv/bin/alembic upgrade head && \
	  echo && echo "Serving the demo service on SQLite:" && \
	  echo "  health report  http://127.0.0.1:$(DEMO_PORT)/health" && \
	  echo "  readiness      http://127.0.0.1:$(DEMO_PORT)/health/ready" && \
	  echo "  liveness       http://127.0.0.1:$(DEMO_PORT)/health/live" && \
	  echo "  API docs       http://127.0.0.1:$(DEMO_PORT)/docs" && echo && \
	  PORT=$(DEMO_PORT) exec .venv/bin/python -m my_service

test: sync ## Run the template's whole test suite
	PATH="$(CURDIR)/$(TOOLS)/bin:$$PATH" $(VENV)/bin/pytest -n $(WORKERS) --dist loadgroup

# wrk is Debian's package; as root (CI, the development machines) it is installed when missing.
wrk:
	@command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -qq wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }; \
	  else \
	    echo "make bench needs wrk: sudo apt-get install wrk (Debian, Ubuntu) or brew install wrk" >&2; \
	    exit 1; \
	  fi; }

bench: sync wrk ## Benchmark the health endpoints against baselines (needs wrk, PostgreSQL); writes docs/benchmarks.*
	PATH="$(CURDIR)/$(TOOLS)/bin:$$PATH" $(VENV)/bin/python benchmarks/bench.py $(BENCH_ARGS)

bench-metrics: sync wrk ## Compare the cost of HTTP metrics libraries on one route (needs wrk)
	PATH="$(CURDIR)/$(TOOLS)/bin:$$PATH" $(VENV)/bin/python benchmarks/http_metrics.py

bench-wrapper: sync ## Per-run overhead of the baked job wrapper
	PATH="$(CURDIR)/$(TOOLS)/bin:$$PATH" $(VENV)/bin/python benchmarks/bench_wrapper.py

locks: sync ## Regenerate the baked projects' uv.lock files after a change to their pyproject.toml
	PATH="$(CURDIR)/$(TOOLS)/bin:$$PATH" $(VENV)/bin/python scripts/locks.py

locks-upgrade: sync ## Regenerate the baked projects' uv.lock files with the newest allowed versions
	PATH="$(CURDIR)/$(TOOLS)/bin:$$PATH" $(VENV)/bin/python scripts/locks.py --upgrade

lint: sync ## ruff on the template's own Python (hooks, tests, scripts)
	$(VENV)/bin/ruff check hooks tests scripts benchmarks
	$(VENV)/bin/ruff format --check hooks tests scripts benchmarks

clean: ## Remove build/, the virtualenvs and caches
	rm -rf build $(VENV) $(TOOLS) .pytest_cache .ruff_cache
