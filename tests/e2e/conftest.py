"""End-to-end fixtures: one migrated SQLite Airflow home per session, an emulator per test, and
``airflow dags test`` runs whose XComs and task states are read back from the metadata DB."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_cvm_export.emulator import Emulator
from tests.credentials import SECRET_ID, SECRET_KEY

PROJECT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = PROJECT / "dags"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
REGION = "ap-guangzhou"
# The hooks' retry back-off in the Airflow processes of run_dag, as a share of the shipped one
# (tests.e2e.quick_backoff): the same retries, 20 times sooner.
BACKOFF_SCALE = 0.05
# Seconds an airflow dags test run may take (CVM_E2E_RUN_TIMEOUT: longer, for runs with long exports).
RUN_TIMEOUT = float(os.environ.get("CVM_E2E_RUN_TIMEOUT", "300"))


def query_while_running(db: Path, sql: str, *params: Any) -> tuple[Any, ...] | None:
    """The first row ``sql`` finds in a metadata DB a DAG run is using, or None when it finds none or
    the run holds the write lock (ask again)."""
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return conn.execute(sql, params).fetchone()
    except sqlite3.OperationalError:  # the run holds the write lock
        return None


def airflow_env(home: Path) -> dict[str, str]:
    """The environment of every Airflow subprocess: its own home, the project's DAGs, nothing ambient."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "TENCENTCLOUD_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(DAGS_FOLDER),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
    )
    return env


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Airflow home whose SQLite metadata DB is migrated once for the whole session."""
    home = tmp_path_factory.mktemp("airflow_home")
    migrate = subprocess.run(
        [AIRFLOW, "db", "migrate"], env=airflow_env(home), capture_output=True, text=True, timeout=300
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    return home


@dataclass
class DagRun:
    """One finished ``airflow dags test`` run, read back from the metadata DB."""

    returncode: int
    output: str
    seconds: float
    db: Path
    dag_id: str
    run_id: str

    def _query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db) as conn:
            return conn.execute(sql, (self.dag_id, self.run_id, *args)).fetchall()

    def xcoms(self, task_id: str, key: str = "return_value") -> list[Any]:
        """The task's XCom values under ``key``, in map-index order."""
        rows = self._query(
            "SELECT map_index, value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = ? AND key = ? "
            "ORDER BY map_index",
            task_id,
            key,
        )
        return [json.loads(value) for _, value in rows]

    def tries(self, task_id: str) -> int:
        """The try number of the task's (unmapped) instance: 1 when it never had to retry."""
        ((try_number,),) = self._query(
            "SELECT try_number FROM task_instance WHERE dag_id = ? AND run_id = ? AND task_id = ?", task_id
        )
        return try_number

    def all_tries(self) -> dict[tuple[str, int], int]:
        """The try number of every task instance of the run, by (task id, map index)."""
        rows = self._query("SELECT task_id, map_index, try_number FROM task_instance WHERE dag_id = ? AND run_id = ?")
        return {(task_id, map_index): try_number for task_id, map_index, try_number in rows}

    def states(self, task_id: str) -> list[str]:
        """States of the task's instances, in map-index order."""
        rows = self._query(
            "SELECT map_index, state FROM task_instance WHERE dag_id = ? AND run_id = ? AND task_id = ? "
            "ORDER BY map_index",
            task_id,
        )
        return [state for _, state in rows]


@pytest.fixture
def start_emulator() -> Iterator[Callable[..., Emulator]]:
    """``start_emulator(**Emulator kwargs)``; exports take 2 s by default."""
    started: list[Emulator] = []

    def start(**kwargs: Any) -> Emulator:
        kwargs.setdefault("export_seconds", 2)
        emu = Emulator(secret_id=SECRET_ID, secret_key=SECRET_KEY, **kwargs).start()
        started.append(emu)
        return emu

    yield start
    for emu in started:
        emu.stop()


@pytest.fixture
def run_dag(airflow_home: Path) -> Callable[..., DagRun]:
    """``run_dag(dag_id, emulator, variable=None, conf=None, env=None, connection=None, logical_date=None,
    clock_offset=None)``.

    Runs ``airflow dags test`` to the end, the hooks' retry back-off scaled by ``BACKOFF_SCALE``.
    ``connection`` replaces the default connection fields (``login``, ``password``, ``extra``...);
    ``logical_date`` runs the DAG run of that date with ``tests.reliability.rerun_dag`` instead,
    resuming it when it exists (as a scheduler retry would); ``clock_offset`` runs Airflow with its
    wall clock that many seconds off (``tests.e2e.skewed_clock``).
    """

    def run(
        dag_id: str,
        emulator: Emulator,
        *,
        variable: dict[str, Any] | None = None,
        conf: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        connection: dict[str, Any] | None = None,
        logical_date: str | None = None,
        clock_offset: float | None = None,
    ) -> DagRun:
        connection = {
            "conn_type": "tencentcloud",
            "login": SECRET_ID,
            "password": SECRET_KEY,
            "extra": {"region": REGION, "endpoint": emulator.url},
            **(connection or {}),
        }
        full_env = {**airflow_env(airflow_home), "AIRFLOW_CONN_TENCENTCLOUD_DEFAULT": json.dumps(connection)}
        if variable is not None:
            full_env["AIRFLOW_VAR_CVM_EXPORT_CONFIG"] = json.dumps(variable)
        full_env.update(env or {})
        module, arguments = "airflow", ["dags", "test", dag_id]
        if logical_date is not None:
            module, arguments = "tests.reliability.rerun_dag", [dag_id, logical_date]
        if clock_offset is not None:
            module, arguments = "tests.e2e.skewed_clock", [str(clock_offset), *arguments]
        command = [sys.executable, "-m", "tests.e2e.quick_backoff", str(BACKOFF_SCALE), module, *arguments]
        if conf is not None:
            command += ["-c", json.dumps(conf)]
        began = time.monotonic()
        done = subprocess.run(command, env=full_env, capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=PROJECT)
        seconds = time.monotonic() - began
        db = airflow_home / "airflow.db"
        with sqlite3.connect(db) as conn:
            (run_id,) = conn.execute(
                "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
            ).fetchone()
        return DagRun(done.returncode, done.stdout + done.stderr, seconds, db, dag_id, run_id)

    return run


def latest_run(db: Path) -> int:
    """The id of the newest DAG run in the metadata DB (0 when there is none)."""
    with sqlite3.connect(db, timeout=5) as conn:
        return conn.execute("SELECT COALESCE(MAX(id), 0) FROM dag_run").fetchone()[0]


def rescheduled(db: Path, dag_id: str, task_id: str, after_run: int) -> int:
    """How many instances of ``task_id`` in runs of ``dag_id`` newer than ``after_run`` were rescheduled
    at least once (read from the metadata DB while the run goes on)."""
    row = query_while_running(
        db,
        "SELECT COUNT(DISTINCT ti.map_index) FROM task_reschedule tr "
        "JOIN task_instance ti ON ti.id = tr.ti_id JOIN dag_run r "
        "ON r.dag_id = ti.dag_id AND r.run_id = ti.run_id "
        "WHERE ti.dag_id = ? AND ti.task_id = ? AND r.id > ?",
        dag_id,
        task_id,
        after_run,
    )
    return row[0] if row else 0  # no row: the run holds the write lock, ask again


@contextmanager
def finished_once_waiting(emulator: Emulator, airflow_home: Path, dag_id: str, mode: str) -> Iterator[None]:
    """While the block runs a DAG run: its exports (``manual`` progression) stay running until the
    sensors waited in ``mode``, then finish; so the sensors must wait that way for the run to end,
    however fast or slow Airflow gets there (every wait checks once before it reschedules or defers).

    ``reschedule``: every ``wait_for_export`` instance was rescheduled at least once. ``deferrable``:
    a trigger checked, i.e. the emulator answered a second DescribeImages after the last export was
    accepted (the first sensor's check before deferring, then its trigger's first poll). ``airflow
    dags test`` runs a trigger in line until it fires, so the next mapped sensor starts only after
    and finds its export finished by its check before deferring. (The metadata DB cannot tell: the
    run holds its write lock while the trigger runs.)"""
    db = airflow_home / "airflow.db"
    after_run = latest_run(db)
    # wait_for_export is mapped over all of start_export's results: every export started first.
    exports, since = 0, 0

    def describes() -> int:
        return sum(emulator.state()["requests"].get("DescribeImages", {}).values())

    def waited() -> bool:
        nonlocal exports, since
        started = len(emulator.state()["exports"])
        if started != exports:  # a start_export's DescribeImages come before its ExportImages
            exports, since = started, describes()
            return False
        return bool(exports) and (
            rescheduled(db, dag_id, "wait_for_export", after_run) == exports
            if mode == "reschedule"
            else describes() >= since + 2
        )

    with finished_once(emulator, waited, interval=0.05):
        yield


@contextmanager
def finished_once(emulator: Emulator, condition: Callable[[], bool], interval: float) -> Iterator[None]:
    """While the block runs: the exports (``manual`` progression) stay running until ``condition()``
    holds (checked every ``interval`` seconds in a thread), then finish."""
    ended = threading.Event()

    def watch() -> None:
        while not ended.wait(interval):
            if condition():
                emulator.finish()
                return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        ended.set()
        thread.join(5)
