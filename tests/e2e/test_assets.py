"""Asset scheduling end to end: an export's asset events start ``cvm_export_consumer`` with its objects."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_cvm_export.version_compat import AIRFLOW_V_3_2_PLUS
from tests.e2e.conftest import airflow_env

pytestmark = [
    pytest.mark.e2e,
    # asset_triggered_run.py creates the run as the scheduler does, with SchedulerJobRunner(executors=...)
    pytest.mark.skipif(not AIRFLOW_V_3_2_PLUS, reason="the scheduler harness needs Airflow 3.2+ (executors=)"),
]

BUCKET = "exports-1250000000"
CONSUMER = "cvm_export_consumer"
ALIAS = "cvm_export"
PROJECT = Path(__file__).resolve().parents[2]


def rows(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


def test_export_events_schedule_the_consumer_dag_with_the_exported_objects(
    airflow_home: Path, run_dag: Any, start_emulator: Any
) -> None:
    db = airflow_home / "airflow.db"
    # A consumer DAG created by an earlier test is paused (dags_are_paused_at_creation); one created now is not.
    rows(db, "UPDATE dag SET is_paused = 0 WHERE dag_id = ?", CONSUMER)
    emulator = start_emulator(progression="immediate")
    variable: dict[str, Any] = {"image_ids": ["img-centos01", "img-centos02", "img-ubuntu01"], "bucket_name": BUCKET}
    variable |= {"file_name_prefixes": ["web", "web", "db"], "batch_size": 2, "poke_interval": 1, "mode": "poke"}
    run = run_dag(
        "cvm_export_nightly", emulator, variable=variable, env={"AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False"}
    )
    assert run.returncode == 0, run.output[-5000:]
    cos_paths = [path for batch in run.xcoms("wait_for_export") for path in batch]
    assert cos_paths

    # The alias is declared by the mapped sensor (not only added at run time) and scheduled on by the consumer.
    (serialized,) = rows(
        db, "SELECT data FROM serialized_dag WHERE dag_id = ? ORDER BY created_at DESC LIMIT 1", run.dag_id
    )
    (wait,) = [
        t["__var"] for t in json.loads(serialized[0])["dag"]["tasks"] if t["__var"]["task_id"] == "wait_for_export"
    ]
    assert wait["partial_kwargs"]["outlets"] == [{"__var": {"name": ALIAS, "group": "asset"}, "__type": "asset_alias"}]
    assert rows(
        db,
        "SELECT r.dag_id FROM dag_schedule_asset_alias_reference r JOIN asset_alias a ON a.id = r.alias_id "
        "WHERE a.name = ?",
        ALIAS,
    ) == [(CONSUMER,)]

    # One event per exported image, through the alias, on cos://<bucket>/<ImageId>?dag_id=<dag> assets:
    # the same URIs every run (this run's keys, under its stamped prefixes, are in the events' extra).
    events = rows(
        db,
        "SELECT e.source_map_index, a.uri, e.extra, al.name FROM asset_event e JOIN asset a ON a.id = e.asset_id "
        "JOIN asset_alias_asset_event x ON x.event_id = e.id JOIN asset_alias al ON al.id = x.alias_id "
        "WHERE e.source_dag_id = ? AND e.source_run_id = ? AND e.source_task_id = 'wait_for_export' ORDER BY e.id",
        run.dag_id,
        run.run_id,
    )
    assert sorted((index, uri) for index, uri, _, _ in events) == [
        (0, f"cos://{BUCKET}/img-centos01?dag_id={run.dag_id}"),
        (0, f"cos://{BUCKET}/img-centos02?dag_id={run.dag_id}"),
        (1, f"cos://{BUCKET}/img-ubuntu01?dag_id={run.dag_id}"),
    ]
    assert {alias for *_, alias in events} == {ALIAS}
    assert sorted(key for _, _, extra, _ in events for key in json.loads(extra)["keys"]) == sorted(
        path.lstrip("/") for path in cos_paths
    )

    # The scheduler queued the consumer on those assets ...
    queued = rows(
        db,
        "SELECT a.uri FROM asset_dag_run_queue q JOIN asset a ON a.id = q.asset_id WHERE q.target_dag_id = ?",
        CONSUMER,
    )
    assert {uri for _, uri, _, _ in events} <= {uri for (uri,) in queued}

    # ... and its run creation starts the consumer, whose task reads the events and lists every object.
    done = subprocess.run(
        [sys.executable, "-m", "tests.e2e.asset_triggered_run", CONSUMER],
        env=airflow_env(airflow_home),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    (run_id,) = rows(db, "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", CONSUMER)[0]
    (uris,) = rows(
        db,
        "SELECT value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = 'list_exported_objects' "
        "AND key = 'return_value'",
        CONSUMER,
        run_id,
    )
    assert sorted(json.loads(uris[0])) == sorted(f"cos://{BUCKET}{path}" for path in cos_paths)
