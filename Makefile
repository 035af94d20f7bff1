# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Override for a CUDA build, e.g. make demo TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
DATA_DIR ?= nightrec-data
PIP := $(BIN)/pip install -c constraints.txt

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120
export PREFECT_HOME ?= $(CURDIR)/.prefect

.PHONY: demo test lint bench-data clean ui

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/pip install $(TORCH_SPEC)
	touch $@

$(VENV)/.installed: pyproject.toml constraints.txt $(VENV)/.torch
	$(PIP) -e ".[dev,postgres]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/nightrec demo-data --out $(DATA_DIR)/events
	$(BIN)/nightrec run --events $(DATA_DIR)/events --data-dir $(DATA_DIR)
	@echo "Published table: $(DATA_DIR)/nightrec.duckdb (view recommendations_latest) and $(DATA_DIR)/recommendations/"
	$(BIN)/nightrec recommend --sample 3 --data-dir $(DATA_DIR)

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# A local Prefect server on 127.0.0.1 and the process serving the nightly and retrain deployments.
UI_PORT ?= 4200
ui: $(VENV)/.installed
	$(BIN)/python -m flows.local_server --port $(UI_PORT) --data-dir $(DATA_DIR) \
		$(if $(wildcard $(DATA_DIR)/events),--events $(DATA_DIR)/events)

# MovieLens-100k as RecBole ships it; recbole itself is never installed.
bench-data/ml-100k/ml-100k.inter:
	mkdir -p bench-data/wheel bench-data/ml-100k
	$(PYTHON) -m pip download --no-deps --dest bench-data/wheel recbole==1.2.1
	$(PYTHON) -c "import sys, zipfile; open(sys.argv[2], 'wb').write(zipfile.ZipFile(sys.argv[1]).read('recbole/dataset_example/ml-100k/ml-100k.inter'))" bench-data/wheel/recbole-1.2.1-py3-none-any.whl $@
	rm -rf bench-data/wheel

bench-data: bench-data/ml-100k/ml-100k.inter

clean:
	rm -rf $(DATA_DIR) .pytest_cache .ruff_cache
