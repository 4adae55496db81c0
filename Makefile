# Entry points: make demo, make test, make docs, make bench, make system-test, make ui-test, make screenshots,
# make test-matrix, make dist, make cloud-smoke (read-only checks of your own Tencent Cloud account;
# skipped without credentials).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Older Airflow lines tested by make test-matrix beside the default .venv (constraints.txt, 3.3).
# Each X.Y gets .venv-X.Y from constraints-airflow-X.Y.txt: a new line is one file and one word here.
AIRFLOW_MATRIX := 3.1 3.2
export AIRFLOW_HOME := $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__LOAD_EXAMPLES := False

.PHONY: venv demo docs test unit-test ui-test screenshots bench system-test test-matrix test-matrix-older lint dist cloud-smoke clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,bench,celery,openlineage,docs]'
	touch $(STAMP)

demo: venv
	$(BIN)/python scripts/demo.py

test: venv
	$(BIN)/ruff check airflow_cvm_export dags tests bench scripts
	$(BIN)/ruff format --check airflow_cvm_export dags tests bench scripts
	$(MAKE) docs
	$(MAKE) unit-test
	$(MAKE) ui-test
	$(MAKE) system-test

# The documentation site into docs/_build/html: every warning an error, every cross-reference and
# internal link (with its #anchor) checked; external links are not fetched.
docs: venv
	$(BIN)/sphinx-build -q -W --keep-going -n -b html docs docs/_build/html

# The whole non-system suite (unit tests and the end-to-end airflow dags test runs).
unit-test: venv
	$(BIN)/python -m pytest -q

# The browser tests: the Airflow UI in Debian's Chromium (apt-get install chromium; CHROMIUM=path overrides).
ui-test: venv
	$(BIN)/python -m pytest -q -m ui tests/ui

# The README's pictures in docs/img, taken by the browser tests.
screenshots: venv
	UI_SCREENSHOTS=$(CURDIR)/docs/img $(BIN)/python -m pytest -q -m ui tests/ui

# The non-system suite on every supported Airflow line: the default .venv and each of AIRFLOW_MATRIX.
test-matrix: unit-test test-matrix-older

test-matrix-older: $(AIRFLOW_MATRIX:%=test-airflow-%)

# MATRIX_PYTEST: extra pytest arguments for the older lines (CI passes --matrix-lean: of the airflow dags test
# runs only the example DAGs' poke and deferrable runs and the killed-start retry; see tests/conftest.py).
test-airflow-%: .venv-%/.installed
	AIRFLOW_HOME=$(CURDIR)/.airflow-$* .venv-$*/bin/python -m pytest -q $(MATRIX_PYTEST)

# Kept between runs (make deletes the targets of pattern-rule chains otherwise, and would reinstall).
.PRECIOUS: .venv-%/.installed
.venv-%/.installed: setup.cfg pyproject.toml constraints-airflow-%.txt
	test -x .venv-$*/bin/python || $(PYTHON) -m venv .venv-$* || python3 -m venv .venv-$*
	.venv-$*/bin/python -m pip install -q -c constraints-airflow-$*.txt uv
	.venv-$*/bin/uv pip install -q --compile-bytecode --python .venv-$*/bin/python -c constraints-airflow-$*.txt -e '.[test,openlineage]'
	.venv-$*/bin/python -m pip check
	touch $@

system-test: venv
	$(BIN)/python -m pytest -q -m system tests/system

bench: venv
	$(BIN)/python bench/run_all.py

# The release into dist/: sdist, wheel built from it, twine check (see scripts/dist.py).
dist: venv
	$(BIN)/python scripts/dist.py dist

# Variables: TENCENTCLOUD_SECRET_ID/_KEY[/_TOKEN], TENCENTCLOUD_REGION, CVM_SMOKE_BUCKET, CVM_SMOKE_IMAGE_ID.
cloud-smoke: venv
	$(BIN)/python scripts/cloud_smoke.py

lint: venv
	$(BIN)/ruff check --fix airflow_cvm_export dags tests bench scripts
	$(BIN)/ruff format airflow_cvm_export dags tests bench scripts

clean:
	rm -rf .airflow .airflow-* build dist *.egg-info docs/_build
