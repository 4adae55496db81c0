"""Task retries never start a second export: the task process is really killed (SIGKILL) in the
crash window of ``start_export`` and the retry reattaches to the export the first try started."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_cvm_export.emulator import Emulator
from tests.credentials import SECRET_ID, SECRET_KEY
from tests.e2e.conftest import DagRun
from tests.operators.conftest import needs_task_state_store
from tests.reliability.conftest import BUSY, finished_once_busy

pytestmark = pytest.mark.reliability

DAGS = str(Path(__file__).with_name("dags"))
IMAGES = ["img-centos01", "img-centos02"]


@pytest.mark.parametrize(
    ("crash_at", "progression", "reattached_by"),
    [
        # Only the intent was stored: the retry waits while the image is busy (a DryRun refused; the
        # export is finished only then), then finds the files the export wrote under its names (new
        # since the intent's baseline; before 3.3, without a task state store, since the DAG run
        # started). CI runs it on every Airflow line.
        pytest.param(
            "answer", "manual", "The unanswered ExportImages started and finished", marks=pytest.mark.every_line
        ),
        # The record was stored: the retry returns it (ResumableJobMixin).
        pytest.param("stored", "immediate", "Job already completed successfully", marks=needs_task_state_store),
    ],
)
def test_killed_start_export_is_retried_without_a_second_export(
    run_dag: Callable[..., DagRun],
    tmp_path: Path,
    request: pytest.FixtureRequest,
    crash_at: str,
    progression: str,
    reattached_by: str,
) -> None:
    emu = Emulator(secret_id=SECRET_ID, secret_key=SECRET_KEY, progression=progression).start()
    request.addfinalizer(emu.stop)
    env = {
        "AIRFLOW__CORE__DAGS_FOLDER": DAGS,
        "CVM_EXPORT_CRASH_AT": crash_at,
        "CVM_EXPORT_CRASH_MARKER": str(tmp_path / "killed"),
    }
    logical_date = f"2026-02-0{1 if crash_at == 'answer' else 2}T00:00:00+00:00"
    killed = run_dag("cvm_export_crash", emu, env=env, logical_date=logical_date)
    assert killed.returncode == -9, killed.output[-3000:]  # SIGKILL: no XCom push, no state update
    assert killed.xcoms("start_export") == []
    assert len(emu.state()["exports"]) == 1

    with finished_once_busy(emu) if progression == "manual" else contextlib.nullcontext():
        retried = run_dag("cvm_export_crash", emu, env=env, logical_date=logical_date)

    assert retried.returncode == 0, retried.output[-5000:]
    assert reattached_by in retried.output
    if progression == "manual":
        assert emu.state()["requests"]["ExportImages"][BUSY] >= 1  # the retry saw the image busy and waited
    exports = emu.state()["exports"]
    assert Counter(i for export in exports for i in export["ImageIds"]) == Counter(IMAGES)  # one export per image
    assert retried.xcoms("wait_for_export") == [exports[0]["CosPaths"]]
    record: dict[str, Any] = retried.xcoms("start_export")[0]
    assert record["recovered"] is (crash_at == "answer")
