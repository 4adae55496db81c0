"""The fault suite: the native Celery stack (``make system-test``) through the faults of a real deployment.

One stack for the module (``tests/system/stack.py``), with two triggerers (Airflow's HA setup), the
two documented workers, a third worker serving only Celery queue ``victim`` (the node the suite
kills), and two emulators in ``manual`` progression (exports run until the suite finishes them): one
for the process faults, one for the cloud outage. The faults are given in one campaign, overlapping
where they can (``campaign``), and each test checks one scenario's runs: success, the sensor's XCom
is the emulator's CosPaths, exactly one export per image, no task left running or deferred, and for
the outage no task retry spent. The campaign gives only the faults of the selected tests (their
``scenario`` marks): ``make fault-test-airflow-3.1`` runs scenario 3 alone on Airflow 3.1, the path
without a task state store.

1. the triggerer running deferred waits (sensor and one-task operator) ``SIGKILL``ed while the other
   one is down too, then a new triggerer started: the waits go on there, in the same try;
2. two triggerers, the one running the waits ``SIGKILL``ed: they move to the other, in the same try;
3. the worker's node dies (its whole session ``SIGKILL``ed: Airflow 3.3's task processes have their
   own process groups) during a poke sensor, and during ``start_export`` with ExportImages in
   flight (a 15 s latency fault): the retries (on a new node) reattach; one export per image;
4. the scheduler, Redis and PostgreSQL restarted while runs wait; the components that exit on the
   lost database are restarted by the suite, as a supervisor (systemd, compose's ``restart``) would;
5. the cloud unreachable for 5 minutes (every CVM and COS request dropped or answered 502) during
   poke, reschedule and deferrable waits and the one-task operator: no retry spent.

Short detection settings keep it bounded (``FAST_DETECTION``): ``[scheduler]
task_instance_heartbeat_timeout`` 30 s (default 300 s: how long a dead worker's task stays
"running"), its detection interval 5 s (default 10 s), ``[triggerer]
triggerer_health_check_threshold`` 10 s (default 30 s: how long a dead triggerer keeps its
triggers) with ``job_heartbeat_sec`` 2 s (default 5 s, so that a live triggerer is never taken
for dead under load), ``[scheduler] task_queued_timeout`` 90 s (default 600 s: how long a task whose
Celery message was lost with Redis stays queued). The recovery times measured are printed
(``pytest -s``) and in docs/faults.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_cvm_export.emulator.catalog import WRITABLE_BUCKETS, extra_image_id
from tests.system.stack import (
    REGION,
    SECRET_ID,
    SECRET_KEY,
    WORKERS,
    Stack,
    argv,
    celery_stack,
    free_port,
    launch_emulator,
    missing_for_celery,
    require,
    session_members,
    wait_until,
)

pytestmark = pytest.mark.system

BUCKET = WRITABLE_BUCKETS[0]
OUTAGE_SECONDS = 300
RUN_TIMEOUT = 600
FAST_DETECTION = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "90",
}
# Where each DAG's wait task is while it waits.
WAITING = {
    "faults_poke": "running",
    "faults_victim": "running",
    "faults_reschedule": "up_for_reschedule",
    "faults_deferrable": "deferred",
    "faults_one_task": "deferred",
}
# The components a supervisor keeps running (the suite's own kills pause it for the one killed).
SUPERVISED = ("api-server", "scheduler", "dag-processor", "triggerer", "triggerer2", *WORKERS, "worker3")


@dataclass
class Run:
    dag_id: str
    run_id: str
    image: str
    emulator: str  # the URL of the emulator it exports on


@dataclass
class Campaign:
    stack: Stack
    outage_emulator: str
    runs: dict[str, list[Run]] = field(default_factory=dict)
    recovery: dict[str, float] = field(default_factory=dict)  # seconds, by scenario
    restarted: list[str] = field(default_factory=list)  # components the supervisor started again


class Supervisor(threading.Thread):
    """Starts again every supervised component that exited, within a second, as systemd or compose would."""

    def __init__(self, campaign: Campaign) -> None:
        super().__init__(daemon=True)
        self.campaign = campaign
        self.paused: set[str] = set()
        self.stopped = threading.Event()

    def run(self) -> None:
        stack = self.campaign.stack
        while not self.stopped.wait(1):
            for name in SUPERVISED:
                if name not in self.paused and stack.processes[name].poll() is not None:
                    stack.restart(name)
                    self.campaign.restarted.append(name)


def control(emulator: str, path: str, method: str = "post", **document: Any) -> Any:
    """A call of the emulator's control API (docs/emulator.md)."""
    body = document if method == "post" else None
    response = requests.request(method, f"{emulator}/_emulator/{path}", json=body, timeout=10)
    response.raise_for_status()
    return response.json()


def trigger(stack: Stack, dag_id: str, image: str, conn: str = "tencentcloud_default") -> str:
    body = {"logical_date": None, "conf": {"image": image, "conn": conn}}
    response = stack.session.post(f"{stack.api}/api/v2/dags/{dag_id}/dagRuns", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["dag_run_id"]


def task_instances(stack: Stack, run: Run) -> dict[str, dict[str, Any]]:
    """The run's task instances by task id (REST; retried while the api-server restarts)."""

    def fetch() -> dict[str, dict[str, Any]] | None:
        try:
            tis = stack.get(f"/dags/{run.dag_id}/dagRuns/{run.run_id}/taskInstances")["task_instances"]
        except requests.RequestException:
            return None
        return {ti["task_id"]: ti for ti in tis}

    return wait_until("the task instances", fetch, 120, interval=1)


def wait_state(stack: Stack, run: Run, state: str, *, try_number: int = 1, timeout: float = 180) -> None:
    """Until the run's ``wait`` task is in ``state`` in try ``try_number`` or later."""

    def reached() -> bool:
        ti = task_instances(stack, run).get("wait", {})
        return ti.get("state") == state and ti.get("try_number", 0) >= try_number

    wait_until(f"{run.dag_id} {run.run_id} wait {state} (try {try_number}+)", reached, timeout, interval=1)


def holder(stack: Stack, runs: list[Run]) -> str | None:
    """The triggerer running the waits of every one of ``runs``: the one whose processes hold their trigger
    logs open (``…/run_id=<run>/task_id=wait/attempt=<n>.log.trigger.<triggerer job id>.log``)."""
    for name in ("triggerer", "triggerer2"):
        if stack.processes[name].poll() is not None:
            continue
        held = " ".join(open_files(stack.processes[name].pid))
        if all(f"/dag_id={run.dag_id}/run_id={run.run_id}/task_id=wait/" in held for run in runs):
            return name
    return None


def open_files(sid: int) -> list[str]:
    """The trigger log files the processes of session ``sid`` have open."""
    paths = []
    for pid in session_members(sid):
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if ".log.trigger." in target:
                        paths.append(target)
    return paths


def restart_postgres(stack: Stack) -> None:
    """Fast shutdown (SIGINT), 10 s down, then the same cluster again."""
    os.killpg(stack.processes["postgres"].pid, signal.SIGINT)
    stack.processes["postgres"].wait(60)
    time.sleep(10)
    stack.restart("postgres")
    port = int(stack.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].rsplit(":", 1)[1].split("/")[0])
    wait_until("PostgreSQL to accept connections", lambda: port_open(port), 60)


def restart_redis(stack: Stack) -> None:
    stack.processes["redis"].kill()
    stack.processes["redis"].wait()
    stack.restart("redis")
    port = int(stack.env["AIRFLOW__CELERY__BROKER_URL"].rsplit(":", 1)[1].split("/")[0])
    wait_until("Redis", lambda: port_open(port), 30)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def healthy(stack: Stack) -> bool:
    try:
        health = stack.session.get(f"{stack.api}/api/v2/monitor/health", timeout=5).json()
    except (requests.RequestException, ValueError):
        return False
    parts = [part for part in health.values() if isinstance(part, dict)]
    return health.get("metadatabase", {}).get("status") == "healthy" and all(
        part.get("status") != "unhealthy" for part in parts
    )


def scenario(name: str) -> pytest.MarkDecorator:
    """The campaign's scenario a test checks: the campaign gives only the faults of the selected tests."""
    return pytest.mark.scenario(name)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Campaign]:
    require("the fault suite", missing_for_celery())
    wanted = {mark.args[0] for item in request.session.items for mark in item.iter_markers("scenario")}
    dags = tmp_path_factory.mktemp("fault_dags")
    (dags / "fault_waits.py").write_text((Path(__file__).parent / "dags" / "fault_waits.py").read_text())
    outage: dict[str, str] = {}

    def second_emulator(stack: Stack) -> None:
        args = ["--progression", "manual", "--extra-images", "20"]
        outage["url"] = launch_emulator(stack, 1, args, name="emulator-outage")
        conn = {"conn_type": "tencentcloud", "login": SECRET_ID, "password": SECRET_KEY}
        stack.env["AIRFLOW_CONN_TC_OUTAGE"] = json.dumps(
            {**conn, "extra": {"endpoint": outage["url"], "region": REGION}}
        )

    with celery_stack(
        export_seconds=1,
        emulator_args=["--progression", "manual", "--extra-images", "20"],
        dags_folder=dags,
        worker_concurrency=4,
        airflow_env=FAST_DETECTION,
        before_airflow=second_emulator,
    ) as stack:
        stack.start("triggerer2", argv("airflow triggerer"))
        worker3 = "airflow celery worker --celery-hostname worker3@%h --queues victim"
        env = {**stack.env, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())}
        stack.start("worker3", argv(worker3), env=env)
        wait_until("worker3 to be ready", lambda: " ready." in stack.log("worker3"), 120)
        for dag_id in ("faults_poke", "faults_reschedule", "faults_deferrable", "faults_one_task", "faults_victim"):
            stack.wait_until_parsed(dag_id)
            assert stack.airflow(f"airflow dags unpause {dag_id}").returncode == 0
        running = Campaign(stack, outage["url"])
        supervisor = Supervisor(running)
        supervisor.start()
        try:
            give_faults(running, supervisor, wanted)
        finally:
            supervisor.stopped.set()
            supervisor.join()
        print("\nrecovery times (s):", {k: round(v, 1) for k, v in running.recovery.items()})
        print("restarted by the supervisor:", running.restarted)
        yield running


def give_faults(campaign: Campaign, supervisor: Supervisor, wanted: set[str]) -> None:
    """The campaign: the faults of the ``wanted`` scenarios, overlapping where they can; then the exports finish."""
    stack, default = campaign.stack, campaign.stack.emulator
    images = iter(extra_image_id(i) for i in range(1, 21))

    def start(scenario: str, dag_id: str, emulator: str = default, conn: str = "tencentcloud_default") -> Run:
        image = next(images)
        run = Run(dag_id, trigger(stack, dag_id, image, conn), image, emulator)
        campaign.runs.setdefault(scenario, []).append(run)
        return run

    # Restarts first (before the outage: a queued task's Celery message lost with Redis would be a retry,
    # which the outage runs must not spend); the outage goes on while the process faults are given.
    if "restarts" in wanted:
        restart_components(campaign, supervisor, start)
    outage_runs = begin_outage(campaign, start) if "outage" in wanted else []
    outage_began = time.monotonic()
    if "triggerers" in wanted:
        kill_triggerers(campaign, supervisor, start)
    if "worker_death" in wanted:
        kill_worker_node(campaign, supervisor, start)

    # The exports of the default emulator finish (now and from now on).
    control(default, "exports/finish")
    control(default, "progression", progression="time")  # the exports a retry starts from now on
    for name in wanted - {"outage"}:
        for run in campaign.runs[name]:
            stack.wait_for_run(run.dag_id, run.run_id, RUN_TIMEOUT)

    if outage_runs:  # the cloud comes back after OUTAGE_SECONDS; the exports finish
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - outage_began)))
        control(campaign.outage_emulator, "faults", "delete")
        back = time.monotonic()
        control(campaign.outage_emulator, "exports/finish")
        for run in outage_runs:
            stack.wait_for_run(run.dag_id, run.run_id, RUN_TIMEOUT)
        campaign.recovery["outage: runs done after the cloud came back"] = time.monotonic() - back


Start = Callable[..., Run]


def restart_components(campaign: Campaign, supervisor: Supervisor, start: Start) -> None:
    """4. The scheduler, Redis and PostgreSQL restarted while runs wait in every mode."""
    stack = campaign.stack
    waiting = [start("restarts", f"faults_{mode}") for mode in ("poke", "reschedule", "deferrable", "one_task")]
    for run in waiting:
        wait_state(stack, run, WAITING[run.dag_id])
    began = time.monotonic()
    supervisor.paused.add("scheduler")
    stack.processes["scheduler"].terminate()
    stack.processes["scheduler"].wait(60)
    stack.restart("scheduler")
    supervisor.paused.discard("scheduler")
    restart_redis(stack)
    restart_postgres(stack)
    wait_until("every component to be up and healthy", lambda: healthy(stack), 180, interval=1)
    campaign.recovery["restarts: healthy again"] = time.monotonic() - began


def begin_outage(campaign: Campaign, start: Start) -> list[Run]:
    """5. Runs in every mode on the second emulator; the cloud goes away once every export runs."""
    runs = [
        start("outage", f"faults_{mode}", campaign.outage_emulator, "tc_outage")
        for mode in ("poke", "reschedule", "deferrable", "one_task")
    ]
    for run in runs:
        wait_state(campaign.stack, run, WAITING[run.dag_id])
    control(campaign.outage_emulator, "faults", kinds=["drop_before", "http5xx"], rate=1)
    return runs


def kill_triggerers(campaign: Campaign, supervisor: Supervisor, start: Start) -> None:
    """2. and 1. Deferred waits (sensor and one-task); the triggerer running them killed, then the other."""
    stack = campaign.stack
    deferred = [start("triggerers", "faults_deferrable"), start("triggerers", "faults_one_task")]
    for run in deferred:
        wait_state(stack, run, "deferred")
    first = wait_until("the triggerer running the first wait", lambda: holder(stack, deferred[:1]), 120)
    other = "triggerer2" if first == "triggerer" else "triggerer"
    supervisor.paused.add(first)
    killed = time.monotonic()
    stack.kill_session(first)
    wait_until("the waits to move to the other triggerer", lambda: holder(stack, deferred) == other, 120)
    campaign.recovery["triggerer HA: waits running on the other"] = time.monotonic() - killed
    supervisor.paused.add(other)
    killed = time.monotonic()
    stack.kill_session(other)  # no triggerer left
    time.sleep(5)
    stack.restart(first)  # a new triggerer
    supervisor.paused.discard(first)
    wait_until("the waits to run in the new triggerer", lambda: holder(stack, deferred) == first, 180)
    campaign.recovery["triggerer killed: waits running in the new one"] = time.monotonic() - killed
    stack.restart(other)
    supervisor.paused.discard(other)


def kill_worker_node(campaign: Campaign, supervisor: Supervisor, start: Start) -> None:
    """3. The victim node dies during a poke sensor and during start_export with ExportImages in flight."""
    stack, default = campaign.stack, campaign.stack.emulator
    poking = start("worker_death", "faults_victim")
    wait_state(stack, poking, "running")
    # 15 s in flight: the node dies before the answer, the cloud starts the export while nobody listens (a
    # retry that comes sooner waits until the send can no longer arrive before sending again; see
    # docs/faults.md, "A send held in flight").
    control(default, "faults", action="ExportImages", latency=15, count=1)
    starting = start("worker_death", "faults_victim")
    wait_until("ExportImages in flight", lambda: not control(default, "faults", "get")["rules"], 120)
    supervisor.paused.add("worker3")
    killed = time.monotonic()
    stack.kill_session("worker3")
    time.sleep(5)
    stack.restart("worker3")  # a new node
    supervisor.paused.discard("worker3")
    wait_state(stack, poking, "running", try_number=2, timeout=240)
    campaign.recovery["worker death: poke sensor's retry running"] = time.monotonic() - killed

    wait_until(
        "the killed start's retry", lambda: task_instances(stack, starting)["start"]["try_number"] >= 2, 240, interval=1
    )


def check_runs(campaign: Campaign, scenario: str, *, retries_allowed: bool) -> None:
    """Success, XCom == the emulator's CosPaths, one export per image, nothing left running; tries."""
    stack = campaign.stack
    for run in campaign.runs[scenario]:
        assert stack.wait_for_run(run.dag_id, run.run_id, RUN_TIMEOUT) == "success", stack.logs_tail()
        tis = task_instances(stack, run)
        assert {ti["state"] for ti in tis.values()} == {"success"}, tis
        if not retries_allowed:
            assert {task: ti["try_number"] for task, ti in tis.items()} == dict.fromkeys(tis, 1), tis
        exports = [e for e in control(run.emulator, "state", "get")["exports"] if run.image in e["ImageIds"]]
        assert len(exports) == 1, exports  # exactly one export of the image
        path = f"/dags/{run.dag_id}/dagRuns/{run.run_id}/taskInstances/wait/xcomEntries/return_value"
        value = stack.get(path)["value"]  # the sensor's CosPaths; the one-task operator's export record
        assert sorted(value["cos_paths"] if isinstance(value, dict) else value) == sorted(exports[0]["CosPaths"])


@scenario("triggerers")
def test_triggerer_killed_during_deferred_waits_a_new_one_takes_them(campaign: Campaign) -> None:
    check_runs(campaign, "triggerers", retries_allowed=False)
    assert campaign.recovery["triggerer killed: waits running in the new one"] < 90


@scenario("triggerers")
def test_two_triggerers_the_waits_move_to_the_other_in_the_same_try(campaign: Campaign) -> None:
    check_runs(campaign, "triggerers", retries_allowed=False)
    assert campaign.recovery["triggerer HA: waits running on the other"] < 60


@scenario("worker_death")
def test_worker_node_death_during_poke_and_start_export_retries_without_a_second_export(campaign: Campaign) -> None:
    check_runs(campaign, "worker_death", retries_allowed=True)
    poking, starting = campaign.runs["worker_death"]
    assert task_instances(campaign.stack, poking)["wait"]["try_number"] >= 2
    assert task_instances(campaign.stack, starting)["start"]["try_number"] >= 2


@scenario("restarts")
def test_scheduler_redis_and_postgres_restarted_while_runs_wait(campaign: Campaign) -> None:
    check_runs(campaign, "restarts", retries_allowed=True)


@scenario("outage")
def test_a_five_minute_cloud_outage_costs_no_retry_in_any_mode(campaign: Campaign) -> None:
    check_runs(campaign, "outage", retries_allowed=False)
    for run in campaign.runs["outage"]:  # each failed check was logged, in the task's or the trigger's log
        logs = campaign.stack.home / "logs" / f"dag_id={run.dag_id}" / f"run_id={run.run_id}" / "task_id=wait"
        text = "".join(path.read_text(errors="replace") for path in logs.rglob("*.log"))
        assert "still waiting (max_outage 3600 s)" in text, run
