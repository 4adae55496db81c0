"""The laptop variant: a deferred wait in a real triggerer on LocalExecutor and SQLite (``make system-test``).

``tests/system/stack.py``'s ``local_stack`` (emulator CLI, api-server, scheduler, dag-processor and
triggerer as separate processes; no PostgreSQL, Redis or Celery needed) with
``[operators] default_deferrable`` on. Triggers ``cvm_export_adhoc`` through the REST API and checks
that the sensor was DEFERRED with no pool slot running while its trigger ran in the triggerer, and
its XCom result.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_cvm_export.emulator.catalog import WRITABLE_BUCKETS
from tests.system.stack import Stack, local_stack, wait_until

pytestmark = pytest.mark.system

DAG_ID = "cvm_export_adhoc"
SENSOR = "wait_for_export"
IMAGE_ID = "img-centos02"  # two disks: two objects
EXPORT_SECONDS = 20  # long enough to catch the sensor deferred
RUN_TIMEOUT = 180


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with local_stack(export_seconds=EXPORT_SECONDS) as running:
        running.wait_until_parsed(DAG_ID)
        unpause = running.session.patch(f"{running.api}/api/v2/dags/{DAG_ID}", json={"is_paused": False}, timeout=10)
        unpause.raise_for_status()
        yield running


def test_sensor_defers_to_the_triggerer_and_returns_the_cos_paths(stack: Stack) -> None:
    conf: dict[str, Any] = {"image_ids": [IMAGE_ID], "bucket_name": WRITABLE_BUCKETS[0], "poke_interval": 2}
    response = stack.session.post(
        f"{stack.api}/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf}, timeout=10
    )
    assert response.status_code == 200, response.text
    run_id = response.json()["dag_run_id"]
    run_path = f"/dags/{DAG_ID}/dagRuns/{run_id}"
    sensor_states: list[str | None] = []
    pools_while_deferred: list[dict[str, Any]] = []

    def sensor_state() -> str | None:
        instances = stack.get(f"{run_path}/taskInstances")["task_instances"]
        return next((ti["state"] for ti in instances if ti["task_id"] == SENSOR), None)

    def finished() -> str | None:
        before = sensor_state()
        pool = stack.get("/pools/default_pool")
        sensor_states.append(sensor_state())
        if before == sensor_states[-1] == "deferred":  # deferred the whole time the pool was read
            pools_while_deferred.append(pool)
        state = stack.get(run_path)["state"]
        return state if state in ("success", "failed") else None

    state = wait_until(f"run {run_id} to finish", finished, RUN_TIMEOUT)
    assert state == "success", stack.logs_tail()

    # The sensor went DEFERRED and held no worker slot while its trigger waited.
    assert "deferred" in sensor_states, sensor_states
    assert pools_while_deferred, sensor_states
    for pool in pools_while_deferred:
        assert pool["running_slots"] == 0 and pool["open_slots"] == pool["slots"], pool
    assert any(pool["deferred_slots"] == 1 for pool in pools_while_deferred), pools_while_deferred
    # The worker paused the task; the triggerer ran our trigger, which fired one success event.
    task_logs = stack.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={SENSOR}" / "map_index=0"
    assert "Pausing task as DEFERRED" in (task_logs / "attempt=1.log").read_text()
    (trigger_log,) = task_logs.glob("attempt=1.log.trigger.*.log")  # written by the triggerer process
    lines = [json.loads(line) for line in trigger_log.read_text().splitlines()]
    assert any(line["event"].startswith("Waiting for ExportImages task") for line in lines)
    fired = [line["result"] for line in lines if line["event"] == "Trigger fired event"]
    assert len(fired) == 1 and "'status': 'success'" in fired[0]

    # Same XCom result as poke mode: the CosPaths, and the objects under key "objects".
    (export,) = stack.emulator_state()["exports"]
    xcom = f"{run_path}/taskInstances/{SENSOR}/xcomEntries"
    cos_paths = stack.get(f"{xcom}/return_value", map_index=0)["value"]
    objects = stack.get(f"{xcom}/objects", map_index=0)["value"]
    assert cos_paths == export["CosPaths"] and len(cos_paths) == 2
    assert [obj["cos_path"] for obj in objects] == cos_paths
