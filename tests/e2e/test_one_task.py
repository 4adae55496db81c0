"""ExportImagesOperator(wait_for_completion=True, deferrable=True) end to end with ``airflow dags test``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import finished_once_waiting

pytestmark = pytest.mark.e2e

TEST_DAGS = Path(__file__).resolve().parent / "dags"


def test_one_task_exports_once_defers_and_returns_the_record(
    run_dag: Any, start_emulator: Any, airflow_home: Path
) -> None:
    # The export finishes once the trigger has checked (the operator checks before deferring).
    emulator = start_emulator(progression="manual")
    with finished_once_waiting(emulator, airflow_home, "cvm_export_one_task", "deferrable"):
        run = run_dag("cvm_export_one_task", emulator, env={"AIRFLOW__CORE__DAGS_FOLDER": str(TEST_DAGS)})

    assert run.returncode == 0, run.output[-5000:]
    assert "state=success" in run.output
    assert "running trigger in line" in run.output  # the wait really went through the trigger
    (export,) = emulator.state()["exports"]
    assert sorted(export["ImageIds"]) == ["img-centos02", "img-ubuntu01"]
    (record,) = run.xcoms("start_export")
    assert record["task_id"] == export["TaskId"] and record["cos_paths"] == export["CosPaths"]
    assert run.xcoms("start_export", key="export") == [record]
    (objects,) = run.xcoms("start_export", key="objects")
    assert [obj["cos_path"] for obj in objects] == export["CosPaths"]
