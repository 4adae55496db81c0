"""A real Airflow deployment waits for an export in the triggerer (``make system-test``).

Starts the emulator CLI and Airflow's api-server, scheduler, dag-processor and triggerer as separate
processes (LocalExecutor, SQLite, a throw-away ``AIRFLOW_HOME``), triggers ``cvm_export_adhoc``
through the REST API with ``[operators] default_deferrable`` on, and checks that the sensor was
DEFERRED with no pool slot running while its trigger ran in the triggerer, and its XCom result.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_cvm_export.emulator.catalog import REGION, WRITABLE_BUCKETS

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
DAG_ID = "cvm_export_adhoc"
SENSOR = "wait_for_export"
SECRET_ID, SECRET_KEY = "AKIDSYSTEMTEST", "system-test-secret-key"
IMAGE_ID = "img-centos02"  # two disks: two objects
EXPORT_SECONDS = 20  # long enough to catch the sensor deferred
STARTUP_TIMEOUT = 90
RUN_TIMEOUT = 180
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(what: str, condition: Any, timeout: float, interval: float = 0.5) -> Any:
    """Poll ``condition()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


@dataclass
class Deployment:
    """Handles on the running processes and the REST API."""

    home: Path
    api: str
    emulator: str
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    session: requests.Session = field(default_factory=requests.Session)

    def get(self, path: str, **params: Any) -> Any:
        response = self.session.get(f"{self.api}/api/v2{path}", params=params, timeout=10)
        response.raise_for_status()
        return response.json()

    def log(self, component: str) -> str:
        """What a component wrote to its stdout and stderr."""
        return (self.home / f"{component}.log").read_text(errors="replace")

    def logs_tail(self, lines: int = 40) -> str:
        """The end of every component's log, for failure messages."""
        return "\n".join(
            f"--- {name} ---\n" + "\n".join(self.log(name).splitlines()[-lines:]) for name in ("emulator", *COMPONENTS)
        )


def start(deployment: Deployment, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Start a component in its own process group, logging to ``<home>/<name>.log``."""
    with open(deployment.home / f"{name}.log", "w") as log:
        process = subprocess.Popen(
            args, env=env, cwd=deployment.home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    deployment.processes[name] = process
    return process


def stop(processes: dict[str, subprocess.Popen]) -> None:
    """SIGTERM each started process group, then SIGKILL what is left after a grace period."""
    for process in processes.values():
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    home = tmp_path_factory.mktemp("airflow_home")
    port = free_port()
    deployment = Deployment(home=home, api=f"http://127.0.0.1:{port}", emulator="")
    try:
        emulator_cli = [
            sys.executable,
            "-m",
            "airflow_cvm_export.emulator",
            "--port",
            "0",
            "--secret-id",
            SECRET_ID,
            "--secret-key",
            SECRET_KEY,
            "--export-seconds",
            str(EXPORT_SECONDS),
        ]
        emulator = start(deployment, "emulator", emulator_cli, dict(os.environ))
        deployment.emulator = wait_until("the emulator's URL", lambda: deployment.log("emulator").strip(), 30)
        assert emulator.poll() is None
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{deployment.api}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__API_AUTH__JWT_SECRET": "system-test-jwt-secret-0123456789abcdef",
            "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
            "AIRFLOW_CONN_TENCENTCLOUD_DEFAULT": json.dumps(
                {
                    "conn_type": "tencentcloud",
                    "login": SECRET_ID,
                    "password": SECRET_KEY,
                    "extra": {"endpoint": deployment.emulator, "region": REGION},
                }
            ),
        }
        subprocess.run([AIRFLOW, "db", "migrate"], env=env, cwd=home, check=True, capture_output=True)
        api_server = [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        start(deployment, "api-server", api_server, env)
        for component in COMPONENTS[1:]:
            start(deployment, component, [AIRFLOW, component], env)
        wait_until("the api-server", lambda: _answers(f"{deployment.api}/api/v2/monitor/health"), STARTUP_TIMEOUT)
        # simple_auth_manager_all_admins: GET /auth/token hands out an admin token without credentials
        token = deployment.session.get(f"{deployment.api}/auth/token", timeout=10).json()["access_token"]
        deployment.session.headers["Authorization"] = f"Bearer {token}"
        dag_url = f"{deployment.api}/api/v2/dags/{DAG_ID}"
        wait_until(f"{DAG_ID} to be parsed", lambda: _answers(dag_url, deployment.session), STARTUP_TIMEOUT)
        unpause = deployment.session.patch(dag_url, json={"is_paused": False}, timeout=10)
        unpause.raise_for_status()
        yield deployment
    finally:
        stop(deployment.processes)


def _answers(url: str, session: requests.Session | None = None) -> bool:
    try:
        return (session or requests).get(url, timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


def test_sensor_defers_to_the_triggerer_and_returns_the_cos_paths(deployment: Deployment) -> None:
    conf = {"image_ids": [IMAGE_ID], "bucket_name": WRITABLE_BUCKETS[0], "poke_interval": 2}
    response = deployment.session.post(
        f"{deployment.api}/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf}, timeout=10
    )
    assert response.status_code == 200, response.text
    run_id = response.json()["dag_run_id"]
    run_path = f"/dags/{DAG_ID}/dagRuns/{run_id}"
    sensor_states: list[str | None] = []
    pools_while_deferred: list[dict[str, Any]] = []

    def sensor_state() -> str | None:
        instances = deployment.get(f"{run_path}/taskInstances")["task_instances"]
        return next((ti["state"] for ti in instances if ti["task_id"] == SENSOR), None)

    def finished() -> str | None:
        before = sensor_state()
        pool = deployment.get("/pools/default_pool")
        sensor_states.append(sensor_state())
        if before == sensor_states[-1] == "deferred":  # deferred the whole time the pool was read
            pools_while_deferred.append(pool)
        state = deployment.get(run_path)["state"]
        return state if state in ("success", "failed") else None

    state = wait_until(f"run {run_id} to finish", finished, RUN_TIMEOUT)
    assert state == "success", deployment.logs_tail()

    # The sensor went DEFERRED and held no worker slot while its trigger waited.
    assert "deferred" in sensor_states, sensor_states
    assert pools_while_deferred, sensor_states
    for pool in pools_while_deferred:
        assert pool["running_slots"] == 0 and pool["open_slots"] == pool["slots"], pool
    assert any(pool["deferred_slots"] == 1 for pool in pools_while_deferred), pools_while_deferred
    # The worker paused the task; the triggerer ran our trigger, which fired one success event.
    task_logs = deployment.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={SENSOR}" / "map_index=0"
    assert "Pausing task as DEFERRED" in (task_logs / "attempt=1.log").read_text()
    (trigger_log,) = task_logs.glob("attempt=1.log.trigger.*.log")  # written by the triggerer process
    lines = [json.loads(line) for line in trigger_log.read_text().splitlines()]
    assert any(line["event"].startswith("Waiting for ExportImages task") for line in lines)
    fired = [line["result"] for line in lines if line["event"] == "Trigger fired event"]
    assert len(fired) == 1 and "'status': 'success'" in fired[0]

    # Same XCom result as poke mode: the CosPaths, and the objects under key "objects".
    (export,) = requests.get(f"{deployment.emulator}/_emulator/state", timeout=10).json()["exports"]
    xcom = f"{run_path}/taskInstances/{SENSOR}/xcomEntries"
    cos_paths = deployment.get(f"{xcom}/return_value", map_index=0)["value"]
    objects = deployment.get(f"{xcom}/objects", map_index=0)["value"]
    assert cos_paths == export["CosPaths"] and len(cos_paths) == 2
    assert [obj["cos_path"] for obj in objects] == cos_paths
