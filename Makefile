# Entry points: make demo, make test, make bench, make system-test.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export AIRFLOW_HOME := $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__LOAD_EXAMPLES := False

.PHONY: venv demo test bench system-test lint clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,bench]'
	touch $(STAMP)

demo: venv
	$(BIN)/python scripts/demo.py

test: venv
	$(BIN)/ruff check airflow_cvm_export dags tests bench
	$(BIN)/python -m pytest -q
	$(MAKE) system-test

system-test: venv
	$(BIN)/python -m pytest -q -m system tests/system

bench: venv
	$(BIN)/python bench/run_all.py

lint: venv
	$(BIN)/ruff check --fix airflow_cvm_export dags tests bench
	$(BIN)/ruff format airflow_cvm_export dags tests bench

clean:
	rm -rf .airflow build *.egg-info
