"""Fixtures of the hostile-input tests: those of the operator tests (in-process emulator, task context)
and of the end-to-end tests (``airflow dags test`` in a migrated Airflow home)."""

from __future__ import annotations

from tests.e2e.conftest import airflow_home, run_dag  # noqa: F401 - fixtures
from tests.operators.conftest import context, emulator, start_emulator  # noqa: F401 - fixtures
