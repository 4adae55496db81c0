"""docker-compose.yaml up for real, as a user runs it (``make compose-test``).

The stand-ins of the three images the file names are built first (scripts/compose_standins.py, cached
by tag and inputs hash); then, in a copy of the checkout (its tracked and untracked-but-not-ignored
files, as a clone has them) and its own Compose project, the project's Dockerfile is built as written
(``docker compose build``) and docs/deployment.md's "Run it" block runs verbatim: the ``.env`` line,
``docker compose config``, ``up -d``, ``ps``. Once every service is healthy, as a user would:

- the guide's ``docker compose exec airflow-scheduler airflow dags unpause / trigger`` lines start the
  nightly DAG (with the scheduled night that unpausing starts), the ad-hoc DAG is triggered through the
  REST API on the published port 8080, logged in as the guide's ``airflow`` / ``airflow``;
- every run succeeds, the sensor's XCom holds the CosPaths of an export the emulator service made, and
  the emulator (``/_emulator/state``, read with the guide's ``exec cvm-emulator`` line) holds exactly
  one export per image and run;
- the UI answers on port 8080 and the connection Test (REST, the port left empty) answers OK;
- then, while a second nightly run and ad-hoc run wait in the triggerer, ``docker compose restart
  airflow-triggerer`` and ``docker compose kill -s SIGKILL airflow-worker`` + ``up -d``: both runs
  still succeed with one export per image.

``docker compose down -v`` ends it, and no container, network or volume of the project is left (nor
the Docker daemon, when the test started it). Timings go to stdout (``make compose-test`` shows them).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.system.stack import Stack, answers, wait_until

pytestmark = pytest.mark.compose

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import compose_standins  # noqa: E402

GUIDE = (ROOT / "docs" / "deployment.md").read_text()
API = "http://localhost:8080"
USER = PASSWORD = "airflow"  # the compose file's default admin (_AIRFLOW_WWW_USER_*)
IMAGES = {"img-centos01", "img-ubuntu01"}  # AIRFLOW_VAR_CVM_EXPORT_CONFIG's image_ids
# Another image than the nightly's: an image being exported refuses a second export
# (InvalidImageState), which would make the ad-hoc run wait for the nightly ones.
ADHOC_IMAGE = "img-ubuntu02"
ADHOC_CONF: dict[str, Any] = {"image_ids": [ADHOC_IMAGE], "bucket_name": "exports-1250000000", "poke_interval": 5}
HEALTHY_TIMEOUT = 900  # 2-3 min on an idle 2-core machine
RUN_TIMEOUT = 420


def guide_block(heading: str, index: int = 0) -> list[str]:
    """The lines (comments dropped) of the index-th bash block after a heading of docs/deployment.md."""
    start = GUIDE.index(heading)
    block = re.findall(r"```bash\n(.*?)```", GUIDE[start:], re.S)[index]
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


RUN_IT = guide_block("## Run it\n")
TRIGGER_NIGHTLY = guide_block("## Run it\n", 1)
EMULATOR_STATE = " ".join(line.rstrip("\\").strip() for line in guide_block("## Run it\n", 2))


@dataclass
class Compose:
    """The running project: its directory, environment and a logged-in REST session."""

    directory: Path
    env: dict[str, str]
    rest: Stack

    def run(self, command: str, timeout: float = 900) -> str:
        """A shell line in the checkout, as the user types it; its stdout."""
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", command],
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    def services(self) -> dict[str, dict[str, Any]]:
        """``docker compose ps -a`` by service name."""
        lines = self.run("docker compose ps -a --format json", timeout=60).splitlines()
        entries = [json.loads(line) for line in lines if line.strip()]
        return {entry["Service"]: entry for entry in entries}

    def wait_until_healthy(self) -> None:
        """airflow-init exited 0, every other service running and its health check passing.

        A check that passes, but only after its ``timeout``, counts once it has done so for 2 minutes
        running: on a CPU-starved machine (other jobs, load 10 on 2 cores) one ``airflow jobs check``
        took 30 s to 2 min, beyond the file's 10 s, and Docker reports such a service ``unhealthy``
        although it works. The check's own command is then run with ``docker exec``, and the
        ``compose-test:`` line says so.
        """
        slow: dict[str, float] = {}  # service -> when its health check first passed slowly

        def passes_slowly(name: str, container: str) -> bool:
            if not self.last_checks_timed_out(container):
                return False
            test = json.loads(self.docker("inspect", "--format", "{{json .Config.Healthcheck.Test}}", container))
            argv = ["sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
            started = time.monotonic()
            if subprocess.run(["docker", "exec", container, *argv], capture_output=True, timeout=600).returncode:
                return False
            print(f"\ncompose-test: {name}: its health check passes in {time.monotonic() - started:.0f} s", end="")
            slow.setdefault(name, time.monotonic())
            return time.monotonic() - slow[name] >= 120

        def healthy() -> bool:
            services = self.services()
            init = services.get("airflow-init", {})
            assert not (init.get("State") == "exited" and init.get("ExitCode")), self.logs("airflow-init")
            return init.get("State") == "exited" and all(
                entry["State"] == "running" and (entry.get("Health") == "healthy" or passes_slowly(name, entry["ID"]))
                for name, entry in services.items()
                if name != "airflow-init"
            )

        try:
            wait_until("every service to be healthy", healthy, HEALTHY_TIMEOUT, interval=5)
        except TimeoutError:
            states = {name: (entry["State"], entry.get("Health")) for name, entry in self.services().items()}
            raise AssertionError(f"not healthy after {HEALTHY_TIMEOUT} s: {states}\n{self.health_logs()}") from None

    def docker(self, *args: str) -> str:
        return subprocess.run(["docker", *args], capture_output=True, text=True, check=True, timeout=120).stdout

    def last_checks_timed_out(self, container: str) -> bool:
        """The container's last three health checks (at least) all exceeded the check's timeout."""
        log = json.loads(self.docker("inspect", "--format", "{{json .State.Health.Log}}", container)) or []
        return len(log) >= 3 and all("exceeded timeout" in entry["Output"] for entry in log[-3:])

    def health_logs(self) -> str:
        """The last health check outputs of every container that is not healthy."""
        ids = self.run("docker compose ps -aq", timeout=60).split()
        done = subprocess.run(
            ["docker", "inspect", "--format", "{{.Name}} {{json .State.Health}}", *ids], capture_output=True, text=True
        )
        return "\n".join(line for line in done.stdout.splitlines() if '"Status":"healthy"' not in line)[-6000:]

    def logs(self, service: str = "") -> str:
        done = subprocess.run(
            ["docker", "compose", "logs", "--no-color", "--tail", "60", *([service] if service else [])],
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            text=True,
        )
        return done.stdout[-12000:]

    def emulator_state(self) -> dict[str, Any]:
        return json.loads(self.run(EMULATOR_STATE, timeout=60))

    def nightly_runs(self) -> set[str]:
        return {run["dag_run_id"] for run in self.rest.get("/dags/cvm_export_nightly/dagRuns")["dag_runs"]}

    def trigger_adhoc(self) -> str:
        response = self.rest.session.post(
            f"{API}/api/v2/dags/cvm_export_adhoc/dagRuns",
            json={"logical_date": None, "conf": {**ADHOC_CONF, "mode": "deferrable"}},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return response.json()["dag_run_id"]

    def sensor_xcom(self, dag_id: str, run_id: str) -> list[str]:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/wait_for_export/xcomEntries/return_value"
        return self.rest.get(path, map_index=0)["value"]

    def wait_for_success(self, runs: list[tuple[str, str]]) -> None:
        for dag_id, run_id in runs:
            state = self.rest.wait_for_run(dag_id, run_id, RUN_TIMEOUT)
            assert state == "success", f"{dag_id} {run_id}: {state}\n{self.logs()}"


def start_daemon(log: Path) -> subprocess.Popen | None:
    """A ``dockerd`` of the test's own when none answers (None when one does); skip if none can start."""
    if shutil.which("docker") is None:
        pytest.skip("no docker CLI (Debian docker.io; .ci/run installs it)")
    if subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        return None
    if shutil.which("dockerd") is None or os.geteuid() != 0:
        pytest.skip("no Docker daemon answers and none can be started here (dockerd needs root)")
    with open(log, "w") as out:
        daemon = subprocess.Popen(["dockerd"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until("dockerd", lambda: subprocess.run(["docker", "info"], capture_output=True).returncode == 0, 60, 1)
    except TimeoutError:
        daemon.terminate()
        daemon.wait(30)
        pytest.skip(f"no Docker daemon can start here: {log.read_text()[-1500:]}")
    return daemon


def copy_checkout(target: Path) -> None:
    """The files a clone has (tracked, plus untracked ones not ignored), as they are on disk."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def leftovers(project: str) -> dict[str, list[str]]:
    """The project's containers, networks and volumes still known to the daemon."""
    label = f"label=com.docker.compose.project={project}"
    found = {}
    for kind, command in {
        "containers": ["docker", "ps", "-aq", "--filter", label],
        "networks": ["docker", "network", "ls", "-q", "--filter", label],
        "volumes": ["docker", "volume", "ls", "-q", "--filter", label],
    }.items():
        found[kind] = subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()
    return found


def port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def compose(docker_config: dict[str, str]) -> Iterator[Compose]:
    scratch = Path(tempfile.mkdtemp(prefix="cvm-compose-"))
    daemon = start_daemon(scratch / "dockerd.log")
    project = f"cvm-compose-test-{os.getpid()}"
    directory = scratch / "airflow-cvm-export"
    directory.mkdir()
    env = {k: v for k, v in docker_config.items() if k != "AIRFLOW_UID"}  # the guide's .env sets it
    env["COMPOSE_PROJECT_NAME"] = project
    compose = Compose(directory, env, Stack(home=directory, api=API))
    try:
        started = time.monotonic()
        for tag, seconds in compose_standins.build_all().items():
            print(f"\ncompose-test: stand-in {tag}: {seconds:.1f} s", end="")
        copy_checkout(directory)
        assert not port_taken(8080), "port 8080 (docker-compose.yaml's api-server) is taken on this machine"
        mark = time.monotonic()
        compose.run("docker compose build")
        print(f"\ncompose-test: docker compose build: {time.monotonic() - mark:.1f} s", end="")
        mark = time.monotonic()
        assert RUN_IT[2:] == ["docker compose up -d", "docker compose ps"], RUN_IT
        compose.run("\n".join(RUN_IT))
        compose.wait_until_healthy()
        print(f"\ncompose-test: up -d until every service is healthy: {time.monotonic() - mark:.1f} s", end="")
        login = {"username": USER, "password": PASSWORD}
        token = requests.post(f"{API}/auth/token", json=login, timeout=30)
        assert token.status_code in (200, 201), token.text
        compose.rest.session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        for dag_id in ("cvm_export_nightly", "cvm_export_adhoc"):
            compose.rest.wait_until_parsed(dag_id)
        print(f"\ncompose-test: ready after {time.monotonic() - started:.1f} s", end="")
        yield compose
    finally:
        mark = time.monotonic()
        subprocess.run(
            ["docker", "compose", "down", "-v", "--remove-orphans"],
            cwd=directory,
            env=env,
            capture_output=True,
            timeout=300,
        )
        left = leftovers(project)
        print(f"\ncompose-test: down -v: {time.monotonic() - mark:.1f} s; left: {left}")
        if daemon is not None:
            daemon.terminate()
            daemon.wait(60)
        shutil.rmtree(scratch, ignore_errors=True)
        assert left == {"containers": [], "networks": [], "volumes": []}, left


def assert_one_export_per_image(compose: Compose, runs: dict[tuple[str, str], set[str]]) -> None:
    """Each run's sensor XCom is one emulator export of exactly the run's images; no image exported twice."""
    exports = compose.emulator_state()["exports"]
    for (dag_id, run_id), images in runs.items():
        waited = compose.sensor_xcom(dag_id, run_id)
        made = [export for export in exports if export["CosPaths"] == waited]
        assert len(made) == 1 and set(made[0]["ImageIds"]) == images, (dag_id, run_id, waited, exports)
        stamp = hashlib.sha256(run_id.encode()).hexdigest()[:8]  # in the run's prefixes (run_stamp)
        assert all(stamp in path for path in waited), (stamp, waited)
        others = [e for e in exports if e is not made[0] and any(stamp in path for path in e["CosPaths"])]
        assert not others, (stamp, others)  # no second export of the run's images


def test_the_stack_runs_both_dags_as_the_guide_says(compose: Compose) -> None:
    started = time.monotonic()
    before = compose.nightly_runs()
    for line in TRIGGER_NIGHTLY:  # unpause (which starts the last scheduled night) and trigger
        compose.run(line, timeout=300)
    unpaused = compose.rest.session.patch(f"{API}/api/v2/dags/cvm_export_adhoc", json={"is_paused": False}, timeout=30)
    assert unpaused.status_code == 200, unpaused.text
    adhoc = compose.trigger_adhoc()
    nightly = wait_until("the two nightly runs", lambda: len(runs := compose.nightly_runs() - before) >= 2 and runs, 60)
    types = sorted(compose.rest.get(f"/dags/cvm_export_nightly/dagRuns/{run}")["run_type"] for run in nightly)
    assert types == ["manual", "scheduled"], types
    runs = [("cvm_export_adhoc", adhoc), *(("cvm_export_nightly", run) for run in nightly)]
    compose.wait_for_success(runs)
    assert_one_export_per_image(compose, {run: IMAGES if run[0].endswith("nightly") else {ADHOC_IMAGE} for run in runs})
    print(f"\ncompose-test: nightly x2 (CLI) and ad-hoc (REST) runs: {time.monotonic() - started:.1f} s", end="")


def test_the_ui_answers_on_the_published_port(compose: Compose) -> None:
    page = requests.get(f"{API}/", timeout=30)
    assert page.status_code == 200 and "<html" in page.text.lower(), page.text[:500]
    assert answers(f"{API}/api/v2/version", compose.rest.session)


def test_the_connection_test_answers_ok_with_the_port_left_empty(compose: Compose) -> None:
    connection = json.loads(compose.run("docker compose config --format json", timeout=60))["services"]
    stored = json.loads(connection["airflow-apiserver"]["environment"]["AIRFLOW_CONN_TENCENTCLOUD_DEFAULT"])
    body = {
        "connection_id": "tencentcloud_default",
        "conn_type": stored["conn_type"],
        "login": stored["login"],
        "password": stored["password"],
        "extra": json.dumps(stored["extra"]),
        "port": None,
    }
    tested = compose.rest.session.post(f"{API}/api/v2/connections/test", json=body, timeout=60)
    assert tested.status_code == 200, tested.text
    assert tested.json()["status"] is True and tested.json()["message"].startswith("Connection OK"), tested.json()


def test_runs_survive_a_triggerer_restart_and_a_killed_worker(compose: Compose) -> None:
    started = time.monotonic()
    before = compose.nightly_runs()
    compose.run(TRIGGER_NIGHTLY[1], timeout=300)
    adhoc = compose.trigger_adhoc()
    (nightly,) = wait_until("the nightly run", lambda: compose.nightly_runs() - before, 60)
    runs = [("cvm_export_adhoc", adhoc), ("cvm_export_nightly", nightly)]

    def deferred() -> bool:
        states = []
        for dag_id, run_id in runs:  # 404 until the mapped sensor exists
            sensor = f"{API}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/wait_for_export/0"
            found = compose.rest.session.get(sensor, timeout=30)
            states.append(found.json().get("state") if found.status_code == 200 else None)
        assert "failed" not in states, states
        return all(state == "deferred" for state in states)

    wait_until("both sensors to wait in the triggerer", deferred, 180, interval=2)
    compose.run("docker compose restart airflow-triggerer")
    compose.run("docker compose kill -s SIGKILL airflow-worker")
    compose.run("docker compose up -d")
    compose.wait_until_healthy()
    compose.wait_for_success(runs)
    assert_one_export_per_image(compose, {runs[0]: {ADHOC_IMAGE}, runs[1]: IMAGES})
    print(f"\ncompose-test: runs across a triggerer restart and a killed worker: {time.monotonic() - started:.1f} s")
