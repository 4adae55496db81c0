"""A whole Airflow deployment on this machine, in throw-away directories and on free ports.

``celery_stack()`` is the production shape of ``docker-compose.yaml`` run natively: a PostgreSQL
cluster (Debian's ``postgresql``: ``initdb`` and ``postgres`` from ``/usr/lib/postgresql/*/bin``,
as the ``postgres`` user when run as root), ``redis-server``, the emulator CLI, then Airflow's
api-server, scheduler, dag-processor, triggerer and two Celery workers, each with its own log-server
port. ``local_stack()`` is the laptop variant: LocalExecutor on SQLite, no worker processes.

The Airflow commands are the ones docs/deployment.md gives (``COMMANDS``; tests/docs checks that the
guide shows exactly these), run verbatim; only the environment differs (ports, paths, secrets).
Used by tests/system and ``bench/celery_nightly.py``.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import json
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.credentials import ROLE_ARN

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SECRET_ID, SECRET_KEY = "AKIDSYSTEMTEST", "system-test-secret-key"
REGION = "ap-guangzhou"
STARTUP_TIMEOUT = 120

# docs/deployment.md, "Native install with Celery": the commands, in the order they are started.
MIGRATE = "airflow db migrate"
COMPONENTS = {
    "api-server": "airflow api-server",
    "scheduler": "airflow scheduler",
    "dag-processor": "airflow dag-processor",
    "triggerer": "airflow triggerer",
}
WORKERS = {  # the second one also with its own AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT
    "worker1": "airflow celery worker --celery-hostname worker1@%h",
    "worker2": "airflow celery worker --celery-hostname worker2@%h",
}
NIGHTLY_UNPAUSE = "airflow dags unpause cvm_export_nightly"
NIGHTLY_TRIGGER = "airflow dags trigger cvm_export_nightly"
ADHOC_UNPAUSE = "airflow dags unpause cvm_export_adhoc"
COMMANDS = [MIGRATE, *COMPONENTS.values(), *WORKERS.values(), NIGHTLY_UNPAUSE, NIGHTLY_TRIGGER, ADHOC_UNPAUSE]
# Environment variables the guide sets that the stack sets too (with its own values).
GUIDE_ENV = {
    "AIRFLOW_HOME",
    "AIRFLOW__CORE__DAGS_FOLDER",
    "AIRFLOW__CORE__EXECUTOR",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__API__PORT",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT",
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE",
    "AIRFLOW_CONN_TENCENTCLOUD_DEFAULT",
    "AIRFLOW_VAR_CVM_EXPORT_CONFIG",
    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(what: str, condition: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    """Poll ``condition()`` until it returns something truthy; raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def answers(url: str, session: requests.Session | None = None) -> bool:
    try:
        return (session or requests).get(url, timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


@dataclass
class Stack:
    """Handles on the running processes, the REST API and the emulator."""

    home: Path
    api: str
    env: dict[str, str] = field(default_factory=dict)
    emulator: str = ""
    workers: tuple[str, ...] = ()
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    session: requests.Session = field(default_factory=requests.Session)
    launches: dict[str, tuple[list[str], dict[str, str] | None]] = field(default_factory=dict)

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None, user: str | None = None) -> None:
        """Start a component in its own session (and process group), logging to ``<home>/<name>.log``."""
        if user:
            args = ["runuser", "-u", user, "--", *args]
        self.launches[name] = (args, env)
        self._launch(name, "w")

    def restart(self, name: str) -> None:
        """Start ``name`` again as it was started (its log goes on), as a supervisor would after it exited."""
        if self.processes[name].poll() is None:
            raise RuntimeError(f"{name} is still running")
        self._launch(name, "a")

    def _launch(self, name: str, mode: str) -> None:
        args, env = self.launches[name]
        with open(self.home / f"{name}.log", mode) as log:
            self.processes[name] = subprocess.Popen(
                args, env=env or self.env, cwd=self.home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def kill_session(self, name: str) -> None:
        """SIGKILL every process of ``name``'s session, as the death of its node would: a process group
        is not enough (Airflow 3.3's task processes run in their own groups, in the worker's session)."""
        sid = self.processes[name].pid
        for pid in session_members(sid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.processes[name].wait()

    def airflow(self, command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run a documented ``airflow ...`` command to the end."""
        return subprocess.run(
            argv(command), env=env or self.env, cwd=self.home, capture_output=True, text=True, timeout=300
        )

    def log(self, component: str) -> str:
        """What a component wrote to its stdout and stderr."""
        return (self.home / f"{component}.log").read_text(errors="replace")

    def logs_tail(self, lines: int = 40) -> str:
        """The end of every component's log, for failure messages."""
        return "\n".join(
            f"--- {name} ---\n" + "\n".join(self.log(name).splitlines()[-lines:]) for name in self.processes
        )

    def get(self, path: str, **params: Any) -> Any:
        response = self.session.get(f"{self.api}/api/v2{path}", params=params, timeout=30)
        response.raise_for_status()
        return response.json()

    def wait_until_parsed(self, dag_id: str) -> None:
        wait_until(f"{dag_id} to be parsed", lambda: answers(f"{self.api}/api/v2/dags/{dag_id}", self.session), 120)

    def emulator_state(self) -> dict[str, Any]:
        return requests.get(f"{self.emulator}/_emulator/state", timeout=10).json()

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        """The run's final state (success or failed)."""

        def finished() -> str | None:
            state = self.get(f"/dags/{dag_id}/dagRuns/{run_id}")["state"]
            return state if state in ("success", "failed") else None

        return wait_until(f"{dag_id} run {run_id} to finish", finished, timeout)

    def stop(self) -> None:
        """SIGTERM each process group, newest first, then SIGKILL what is left after a grace period."""
        for process in reversed(self.processes.values()):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def session_members(sid: int) -> list[int]:
    """The ids of the running processes of session ``sid`` (from ``/proc/<pid>/stat``)."""
    members = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid:  # after the command: state, ppid, pgrp, session
                members.append(int(Path(stat).parent.name))
    return members


def argv(command: str) -> list[str]:
    """A documented command as argv, ``airflow`` being this venv's."""
    words = shlex.split(command)
    return [str(BIN / words[0]), *words[1:]] if words[0] == "airflow" else words


def postgres_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding initdb and postgres."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def missing_for_celery() -> list[str]:
    """What the Celery stack needs that this machine lacks (Debian packages postgresql, redis-server)."""
    missing = [] if postgres_bin() else ["postgresql (/usr/lib/postgresql/*/bin/initdb)"]
    if not shutil.which("redis-server"):
        missing.append("redis-server")
    if os.geteuid() == 0 and not shutil.which("runuser"):
        missing.append("runuser (util-linux)")
    return missing


def require(what: str, missing: list[str], elsewhere: str = "") -> None:
    """Fail ``what`` when something is ``missing`` in CI (.ci/run installs it); skip it elsewhere."""
    if not missing:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} needs {', '.join(missing)} (.ci/run installs them)")
    pytest.skip(f"needs {', '.join(missing)}{elsewhere}")


def start_postgres(
    stack: Stack,
    scratch: Path,
    *,
    port: int | None = None,
    superuser: str = "airflow",
    socket_dir: str | None = None,
    create_database: bool = True,
) -> str:
    """A throw-away cluster on loopback (``port``, else a free one), with database ``airflow``; its ``host:port``.

    ``superuser`` owns the cluster (trust authentication); ``socket_dir`` is where its Unix socket
    goes (default: ``scratch``; ``/var/run/postgresql`` is where Debian's ``psql`` looks).
    """
    pg = postgres_bin()
    if pg is None:
        raise RuntimeError("PostgreSQL's server binaries are not installed (apt-get install postgresql)")
    data = scratch / "pgdata"
    user = None
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root: use the package's postgres user
        user = "postgres"
        entry = pwd.getpwnam(user)
        os.chmod(scratch.parent, 0o711)  # mkdtemp makes it 0700: let postgres through
        os.chown(scratch, entry.pw_uid, entry.pw_gid)
    init = ["initdb", "-D", str(data), "-U", superuser, "--auth=trust", "-E", "UTF8", "--no-sync"]
    init[0] = str(pg / "initdb")
    if user:
        init = ["runuser", "-u", user, "--", *init]
    done = subprocess.run(init, capture_output=True, text=True, timeout=120)
    if done.returncode:
        raise RuntimeError(f"initdb failed: {done.stdout}{done.stderr}")
    port = port or free_port()
    server = [str(pg / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1"]
    server += ["-k", socket_dir or str(scratch)]
    server += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    stack.start("postgres", server, env=dict(os.environ), user=user)

    def ready() -> bool:
        probe = subprocess.run(
            [str(pg / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True, timeout=10
        )
        return probe.returncode == 0

    wait_until("PostgreSQL", ready, 60)
    if not create_database:
        return f"127.0.0.1:{port}"
    createdb = [str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", superuser, "airflow"]
    subprocess.run(createdb, check=True, capture_output=True, timeout=60)
    return f"127.0.0.1:{port}"


def start_redis(stack: Stack, scratch: Path, port: int | None = None) -> str:
    """A throw-away Redis on loopback (``port``, else a free one), nothing saved; its ``host:port``."""
    port = port or free_port()
    server = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    stack.start("redis", [*server, "--dir", str(scratch)], env=dict(os.environ))

    def ping() -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
        return False

    wait_until("Redis", ping, 30)
    return f"127.0.0.1:{port}"


def launch_emulator(stack: Stack, export_seconds: float, extra_args: list[str], name: str = "emulator") -> str:
    """The emulator CLI as component ``name``; its URL."""
    cli = [sys.executable, "-m", "airflow_cvm_export.emulator", "--port", "0", "--secret-id", SECRET_ID]
    cli += ["--secret-key", SECRET_KEY, "--export-seconds", str(export_seconds), *extra_args]
    stack.start(name, cli, env=dict(os.environ))
    return wait_until(f"the {name}'s URL", lambda: stack.log(name).strip().splitlines()[:1], 30)[0]


def _start_emulator(stack: Stack, export_seconds: float, extra_args: list[str]) -> None:
    stack.emulator = launch_emulator(stack, export_seconds, extra_args)


def _connection(stack: Stack, role_credentials: bool) -> dict[str, Any]:
    """The default connection: the emulator's key pair, or (``role_credentials``) the instance's CAM role
    from the emulator's metadata service assuming a role through its STS."""
    extra: dict[str, Any] = {"endpoint": stack.emulator, "region": REGION}
    if not role_credentials:
        return {"conn_type": "tencentcloud", "login": SECRET_ID, "password": SECRET_KEY, "extra": extra}
    extra.update(
        credential_source="cvm_role",
        metadata_endpoint=stack.emulator,
        role_arn=ROLE_ARN,
        sts_endpoint=stack.emulator,
    )
    return {"conn_type": "tencentcloud", "extra": extra}


def _airflow_env(
    stack: Stack, variable: dict[str, Any] | None, dags_folder: Path, role_credentials: bool = False
) -> dict[str, str]:
    from cryptography.fernet import Fernet

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "TENCENTCLOUD_"))}
    env.update(
        AIRFLOW_HOME=str(stack.home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags_folder),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__FERNET_KEY=Fernet.generate_key().decode(),
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{stack.api}/execution/",
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__API__PORT=stack.api.rsplit(":", 1)[1],
        AIRFLOW__API__WORKERS="1",
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_urlsafe(32),
        AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),  # 8794 may be another stack's
        # As docker-compose.yaml: sensors without an explicit mode wait in the triggerer.
        AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE="True",
        AIRFLOW_CONN_TENCENTCLOUD_DEFAULT=json.dumps(_connection(stack, role_credentials)),
    )
    if variable is not None:
        env["AIRFLOW_VAR_CVM_EXPORT_CONFIG"] = json.dumps(variable)
    return env


def _start_airflow(stack: Stack, worker_concurrency: int) -> None:
    migrate = stack.airflow(MIGRATE)
    if migrate.returncode:
        raise RuntimeError(f"{MIGRATE} failed:\n{migrate.stdout[-3000:]}\n{migrate.stderr[-3000:]}")
    for name, command in COMPONENTS.items():
        stack.start(name, argv(command))
    for name in stack.workers:  # one log server each: two workers on one host cannot share its port
        env = {
            **stack.env,
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(worker_concurrency),
        }
        stack.start(name, argv(WORKERS[name]), env=env)
    wait_until("the api-server", lambda: answers(f"{stack.api}/api/v2/monitor/health"), STARTUP_TIMEOUT)
    # simple_auth_manager_all_admins: GET /auth/token hands out an admin token without credentials
    token = stack.session.get(f"{stack.api}/auth/token", timeout=10).json()["access_token"]
    stack.session.headers["Authorization"] = f"Bearer {token}"
    for name in stack.workers:
        wait_until(f"{name} to be ready", functools.partial(_ready, stack, name), STARTUP_TIMEOUT)
    for name, process in stack.processes.items():
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{stack.log(name)[-3000:]}")


@contextlib.contextmanager
def celery_stack(
    *,
    export_seconds: float = 10,
    emulator_args: list[str] | None = None,
    variable: dict[str, Any] | None = None,
    worker_concurrency: int = 1,
    dags_folder: Path = ROOT / "dags",
    role_credentials: bool = False,
    airflow_env: dict[str, str] | None = None,
    before_airflow: Callable[[Stack], None] | None = None,
) -> Iterator[Stack]:
    """PostgreSQL, Redis, the emulator and Airflow with the CeleryExecutor and two workers; with
    ``role_credentials`` every process signs with temporary credentials (docs/credentials.md).

    ``airflow_env`` adds to (or overrides) Airflow's environment; ``before_airflow(stack)`` runs once
    the databases and the emulator are up, before Airflow starts (to start more emulators, say).
    With ``CVM_KEEP_STACK=1`` in the environment its directory (logs, Airflow home) is kept afterwards.
    """
    scratch = Path(tempfile.mkdtemp(prefix="cvm-celery-"))
    stack = Stack(home=scratch / "airflow", api=f"http://127.0.0.1:{free_port()}", workers=tuple(WORKERS))
    stack.home.mkdir()
    try:
        (scratch / "pg").mkdir()
        database = start_postgres(stack, scratch / "pg")
        broker = start_redis(stack, scratch)
        _start_emulator(stack, export_seconds, emulator_args or [])
        stack.env = _airflow_env(stack, variable, dags_folder, role_credentials)
        # As docker-compose.yaml, but on loopback ports and without a password (trust auth).
        stack.env.update(
            AIRFLOW__CORE__EXECUTOR="CeleryExecutor",
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"postgresql+psycopg2://airflow@{database}/airflow",
            AIRFLOW__CELERY__RESULT_BACKEND=f"db+postgresql://airflow@{database}/airflow",
            AIRFLOW__CELERY__BROKER_URL=f"redis://{broker}/0",
        )
        stack.env.update(airflow_env or {})
        if before_airflow:
            before_airflow(stack)
        _start_airflow(stack, worker_concurrency)
        yield stack
    finally:
        stack.stop()
        if os.environ.get("CVM_KEEP_STACK"):
            print(f"\nkept the stack's directory: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def local_stack(*, export_seconds: float = 10, variable: dict[str, Any] | None = None) -> Iterator[Stack]:
    """The laptop variant: LocalExecutor on SQLite, no PostgreSQL, Redis or workers."""
    scratch = Path(tempfile.mkdtemp(prefix="cvm-local-"))
    stack = Stack(home=scratch, api=f"http://127.0.0.1:{free_port()}")
    try:
        _start_emulator(stack, export_seconds, [])
        stack.env = _airflow_env(stack, variable, ROOT / "dags")
        stack.env.update(
            AIRFLOW__CORE__EXECUTOR="LocalExecutor",
            AIRFLOW__CORE__PARALLELISM="4",
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{scratch}/airflow.db",
        )
        _start_airflow(stack, 1)
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def worker_runs(stack: Stack) -> dict[str, set[tuple[str, str, str]]]:
    """``{worker: {(dag_id, run_id, task_id)}}`` of the task workloads each Celery worker executed."""
    pattern = re.compile(r"Executing workload in Celery: .*?task_id='([^']+)', dag_id='([^']+)', run_id='([^']+)'")
    return {name: {(dag, run, task) for task, dag, run in pattern.findall(stack.log(name))} for name in stack.workers}


def _ready(stack: Stack, name: str) -> bool:
    """The worker ``name`` logged that it is ready."""
    return " ready." in stack.log(name)
