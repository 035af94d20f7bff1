# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Both install exactly what requirements.lock pins (with hashes); `make lock` refreshes it on purpose.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= nightrec-data
LOCK := requirements.lock
# Extra pip options, e.g. PIP_EXTRA="--extra-index-url https://download.pytorch.org/whl/cpu" on a
# machine without the local torch 2.13.0+cpu wheel.
PIP_EXTRA ?=

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120
export PREFECT_HOME ?= $(CURDIR)/.prefect

.PHONY: demo test test-fast test-deps lint lock bench-data postgres-bin chromium clean ui

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The lock holds every dependency (torch's CPU build included); the project itself goes in without
# dependencies, so nothing outside the lock is ever resolved.
$(VENV)/.installed: $(LOCK) pyproject.toml | $(BIN)/python
	$(BIN)/pip install --require-hashes --no-deps $(PIP_EXTRA) -r $(LOCK)
	$(BIN)/pip install --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $@

demo: $(VENV)/.installed
	$(BIN)/nightrec demo-data --out $(DATA_DIR)/events
	$(BIN)/nightrec run --events $(DATA_DIR)/events --data-dir $(DATA_DIR) --items-file $(DATA_DIR)/items.parquet
	@echo "Published table: $(DATA_DIR)/nightrec.duckdb (view recommendations_latest) and $(DATA_DIR)/recommendations/"
	$(BIN)/nightrec recommend --sample 3 --data-dir $(DATA_DIR)
	@echo "See the run in the Prefect UI: make ui (http://127.0.0.1:$(UI_PORT)); more in README.md, 'Next steps'."

# Everything the suite needs besides Python packages: a PostgreSQL server's binaries, Chromium,
# MovieLens-100k. The server itself is started per run by tests/postgres_server.sh.
test-deps: postgres-bin chromium bench-data

# The whole suite, as CI runs it: lint, format check, every test; a skipped test fails the run.
test: $(VENV)/.installed test-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	source tests/postgres_server.sh && $(BIN)/python -m pytest --durations=15

# The unit tier: no Prefect server, no subprocess pipelines, no training to convergence.
test-fast: $(VENV)/.installed
	$(BIN)/ruff check .
	NIGHTREC_ALLOW_SKIPS=1 $(BIN)/python -m pytest -m "not integration and not slow"

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Re-resolve every dependency to the newest versions pyproject.toml admits, with hashes.
lock: | $(BIN)/python
	$(BIN)/pip install -q "pip-tools>=7.4"
	$(BIN)/pip-compile --upgrade --generate-hashes --extra dev --extra postgres --strip-extras --allow-unsafe \
		--no-emit-find-links --no-emit-index-url --quiet -o $(LOCK) pyproject.toml
	$(BIN)/python tests/lockfile.py --stamp $(LOCK)

postgres-bin:
	@if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		echo "installing PostgreSQL from Debian packages"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	fi

chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
		echo "installing Chromium from Debian packages"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null; \
	fi

# A local Prefect server on 127.0.0.1 and the process serving the nightly and retrain deployments.
UI_PORT ?= 4200
ui: $(VENV)/.installed
	$(BIN)/python -m flows.local_server --port $(UI_PORT) --data-dir $(DATA_DIR) \
		$(if $(wildcard $(DATA_DIR)/events),--events $(DATA_DIR)/events)

# MovieLens-100k as RecBole ships it (interactions, item and user attributes); recbole itself is never installed.
ML100K := bench-data/ml-100k/ml-100k
$(ML100K).inter:
	mkdir -p bench-data/wheel bench-data/ml-100k
	$(PYTHON) -m pip download --no-deps --dest bench-data/wheel recbole==1.2.1
	$(PYTHON) -c "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); [open(f'{sys.argv[2]}.{x}', 'wb').write(z.read(f'recbole/dataset_example/ml-100k/ml-100k.{x}')) for x in ('item', 'user', 'inter')]" bench-data/wheel/recbole-1.2.1-py3-none-any.whl $(ML100K)
	rm -rf bench-data/wheel

# A checkout whose bench-data predates the attribute files gets them once.
$(ML100K).item: | $(ML100K).inter
	rm -f $(ML100K).inter && $(MAKE) $(ML100K).inter

bench-data: $(ML100K).inter $(ML100K).item

clean:
	rm -rf $(DATA_DIR) .pytest_cache .ruff_cache
