# Entry points: make demo, make test, make docs, make bench, make screenshots, make test-matrix, make test-python3.13,
# make dist, make cloud-smoke (read-only checks of your own Tencent Cloud account; skipped without credentials).
#
# Test tiers (make test runs ruff and mypy (make typecheck), then every tier; tests/test_tiers.py checks each test folder is in one):
#   make unit-test      the fast tier for the inner loop: hooks, operators, sensors, triggers, links, utils,
#                       against the emulator in-process (exports immediate or moved by the test); under 2 min
#   make emulator-test  the emulator's own protocol, auth, COS, control API and official-SDK/tccli tests
#   make e2e-test       airflow dags test runs of real DAGs, reliability and security, the DAGs, docs, scripts
#   make release-test   the sdist and wheel in a fresh venv, the Dockerfile's install step, the deploy files
#   make ui-test        the Airflow UI in Debian's Chromium (apt-get install chromium; CHROMIUM=path overrides)
#   make system-test    a real multi-process deployment (PostgreSQL, Redis, Celery workers, a triggerer)
#   make docs           the Sphinx site (docs/_build/html), warnings as errors, internal links checked
#   make compose-test   docker-compose.yaml up for real on locally built stand-in images (needs Docker)
#   make fault-test-airflow-3.1  the fault suite's worker death (scenario 3) on Airflow 3.1's Celery stack
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

UNIT_TESTS := tests/assets tests/hooks tests/links tests/operators tests/sensors tests/triggers tests/utils tests/test_tiers.py
EMULATOR_TESTS := tests/emulator
E2E_TESTS := tests/dags tests/docs tests/e2e tests/reliability tests/scripts tests/security
RELEASE_TESTS := tests/release tests/deploy
UI_TESTS := tests/ui
SYSTEM_TESTS := tests/system
# Each tier in the order the whole suite ran them (alphabetical): the e2e tests share one Airflow home a session.
PYTEST := $(BIN)/python -m pytest -q

.PHONY: venv demo docs test typecheck unit-test emulator-test e2e-test release-test ui-test compose-test \
	screenshots bench system-test test-matrix test-matrix-older test-python3.13 lint dist cloud-smoke clean

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
	$(MAKE) typecheck
	$(MAKE) docs
	$(MAKE) unit-test
	$(MAKE) emulator-test
	$(MAKE) e2e-test
	$(MAKE) release-test
	$(MAKE) ui-test
	$(MAKE) system-test
	# The tiers that share nothing with each other, side by side (each its own venv or chroot or Docker
	# project, AIRFLOW_HOME and ports; output grouped per tier): docker compose, Python 3.13, and the
	# older Airflow lines with --matrix-lean (see test-airflow-%).
	$(MAKE) -j3 --output-sync=target compose-test test-python3.13 test-matrix-older MATRIX_PYTEST="--matrix-lean -rs"
	# Last, alone (its detection times are short): the fault suite's worker death on the oldest line.
	$(MAKE) fault-test-airflow-$(FAULT_LINE)

# mypy on the package, the example DAGs and the tests, with the installed Airflow's types (config: pyproject.toml).
typecheck: venv
	$(BIN)/mypy

# The documentation site into docs/_build/html: every warning an error, every cross-reference and
# internal link (with its #anchor) checked; external links are not fetched.
docs: venv
	$(BIN)/sphinx-build -q -W --keep-going -n -b html docs docs/_build/html

unit-test: venv
	$(PYTEST) $(UNIT_TESTS)

emulator-test: venv
	$(PYTEST) $(EMULATOR_TESTS)

e2e-test: venv
	$(PYTEST) $(E2E_TESTS)

release-test: venv
	$(PYTEST) $(RELEASE_TESTS)

ui-test: venv
	$(PYTEST) -m ui $(UI_TESTS)

# The README's pictures in docs/img, taken by the browser tests.
screenshots: venv
	UI_SCREENSHOTS=$(CURDIR)/docs/img $(PYTEST) -m ui $(UI_TESTS)

# The non-system suite on every supported Airflow line: the default .venv and each of AIRFLOW_MATRIX.
test-matrix: unit-test emulator-test e2e-test release-test test-matrix-older

test-matrix-older: $(AIRFLOW_MATRIX:%=test-airflow-%)

# MATRIX_PYTEST: extra pytest arguments for the older lines (CI passes --matrix-lean: of the airflow dags test
# runs only the example DAGs' poke and deferrable runs and the killed-start retry; see tests/conftest.py).
# Each line runs the unit, emulator, e2e and release tiers (the release tests skip themselves under --matrix-lean).
test-airflow-%: .venv-%/.installed
	AIRFLOW_HOME=$(CURDIR)/.airflow-$* .venv-$*/bin/python -m pytest -q $(MATRIX_PYTEST) \
		$(UNIT_TESTS) $(EMULATOR_TESTS) $(E2E_TESTS) $(RELEASE_TESTS)

# Scenario 3 of the fault suite (a worker node dies during a poke sensor and during an ExportImages in flight)
# on the oldest line: the retries' path without a task state store, on the real Celery + PostgreSQL + Redis stack.
FAULT_LINE := $(firstword $(AIRFLOW_MATRIX))
FAULT_LINE_TESTS := tests/system/test_faults.py::test_worker_node_death_during_poke_and_start_export_retries_without_a_second_export
fault-test-airflow-%: .venv-%/.installed
	AIRFLOW_HOME=$(CURDIR)/.airflow-$* .venv-$*/bin/python -m pytest -q -m system $(FAULT_LINE_TESTS)

# Kept between runs (make deletes the targets of pattern-rule chains otherwise, and would reinstall).
.PRECIOUS: .venv-%/.installed
.venv-%/.installed: setup.cfg pyproject.toml constraints-airflow-%.txt
	test -x .venv-$*/bin/python || $(PYTHON) -m venv .venv-$* || python3 -m venv .venv-$*
	.venv-$*/bin/python -m pip install -q -c constraints-airflow-$*.txt uv
	.venv-$*/bin/uv pip install -q --compile-bytecode --python .venv-$*/bin/python -c constraints-airflow-$*.txt -e '.[test,openlineage,celery]'
	.venv-$*/bin/python -m pip check
	touch $@

# Python 3.13 (Debian 13's) beside the default 3.11: the unit tier and an airflow dags test run of each example
# DAG (nightly, adhoc, and the consumer its assets trigger), in a trixie chroot made by debootstrap (root;
# apt-get install debootstrap) and kept in TRIXIE_ROOT with its venv from constraints.txt (scripts/python3.13.sh).
TRIXIE_ROOT ?= /var/cache/airflow-cvm-export/trixie
# test_assets.py first, as in the e2e tier: its consumer run reads every asset event of the session's Airflow home.
EXAMPLE_DAG_RUNS := tests/e2e/test_assets.py \
	'tests/e2e/test_dags.py::test_exports_each_image_once_and_hands_the_cos_paths_downstream[cvm_export_adhoc-poke]' \
	'tests/e2e/test_dags.py::test_exports_each_image_once_and_hands_the_cos_paths_downstream[cvm_export_nightly-deferrable]'

test-python3.13:
	scripts/python3.13.sh $(TRIXIE_ROOT) $(UNIT_TESTS) $(EXAMPLE_DAG_RUNS)

system-test: venv
	$(PYTEST) -m system $(SYSTEM_TESTS)

# docker-compose.yaml up for real, on local stand-ins of its three images built from Debian packages
# (scripts/compose_standins.py, cached by tag and inputs hash): tests/deploy/test_compose_stack.py. Needs
# docker.io and debootstrap (apt-get install); starts dockerd if none runs; skipped, saying why, where none can.
compose-test: venv
	$(PYTEST) -s -rs -m compose tests/deploy/test_compose_stack.py

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
