"""Fixtures of the reliability tests: those of the operator tests (in-process emulator, task
context) and of the end-to-end tests (``airflow dags test`` in a migrated Airflow home)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from airflow_cvm_export.emulator import Emulator
from tests.e2e.conftest import airflow_home, finished_once, run_dag  # noqa: F401 - airflow_home, run_dag: fixtures
from tests.operators.conftest import context, dropped_sends, emulator, start_emulator  # noqa: F401 - fixtures

BUSY = "InvalidParameterValue.InvalidImageState"  # a DryRun's answer while an image exports


@contextlib.contextmanager
def finished_once_busy(emu: Emulator) -> Iterator[None]:
    """While the block runs: the exports (``manual`` progression) stay running until a DryRun from
    now on was answered busy, then finish; so the code under test must have seen its export running."""

    def busy_answers() -> int:
        return emu.state()["requests"].get("ExportImages", {}).get(BUSY, 0)

    refused = busy_answers()
    with finished_once(emu, lambda: busy_answers() > refused, interval=0.02):
        yield
