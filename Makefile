# Two commands do all the set-up on a fresh machine (Python 3.11 and make):
#   make demo   the example DAG end to end on a real local Airflow against the OMNI sandbox
#               (make demo BACKEND=messages_api: the same DAG on Infobip's Messages API)
#   make test   the whole suite: ruff, mypy, unit, contract, sandbox, DAG, browser and tiny benchmarks
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(VENV)/bin/uv
AIRFLOW_VERSION := 3.3.2
STAMP := $(VENV)/.installed
BACKEND ?= omni

.PHONY: venv test lint unit demo demo-up bench sandbox clean browser-deps e2e-distributed

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip --version >/dev/null 2>&1 || $(BIN)/python -m ensurepip >/dev/null
	$(BIN)/python -m pip install -q --disable-pip-version-check "uv==0.13.9"
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(UV) pip install -q -c constraints.txt \
	    "apache-airflow==$(AIRFLOW_VERSION)" -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check airflow_provider_omni tests example_dags bench scripts
	$(BIN)/ruff format --check airflow_provider_omni tests example_dags bench scripts
	$(BIN)/mypy

browser-deps:
	scripts/install_browser.sh

test: venv browser-deps lint
	$(BIN)/python -m pytest -q -ra

unit: venv
	$(BIN)/python -m pytest -q -m "not browser and not dag"

demo: venv
	BACKEND=$(BACKEND) scripts/demo.sh

demo-up: venv
	BACKEND=$(BACKEND) KEEP_RUNNING=1 scripts/demo.sh

# CeleryExecutor with two workers and two triggerers, PostgreSQL and Redis, a worker and a triggerer
# SIGKILLed and PostgreSQL restarted mid-run; invariants checked (README "Running at scale").
# E2E_SEED=n picks other kill moments.
e2e-distributed: venv
	scripts/e2e_distributed.sh

sandbox: venv
	$(BIN)/omni-sandbox --port 8099 --time-scale 60

bench: venv
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(UV) pip install -q -c constraints.txt -e ".[test,bench]"
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .venv-e2e .airflow-demo .airflow-test* artifacts

# sdist + wheel into dist/ (throwaway venv), twine check, and the wheel's file list checked.
.PHONY: wheel test-matrix
wheel:
	scripts/build_wheel.sh

# The wheel installed in one venv per (Airflow, Python) of the matrix (.venv-matrix/), the providers
# CLI checked and the tests run against it. MATRIX_ONLY="2.11 3.2" limits it; see the script.
test-matrix:
	scripts/test_matrix.sh
