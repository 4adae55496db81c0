"""docs/deployment.md, "Native install with Celery", run as written (``make system-test``).

Every bash block of the section, in order, verbatim, in a throw-away copy of the checkout
(``setup.cfg``, ``pyproject.toml``, ``README.md``, ``LICENSE``, ``constraints.txt``, the package,
``dags/``) with ``HOME`` in a throw-away directory. The one exception is step 1, the line of port settings: it
gets free ports instead of the defaults (and must name exactly the ports below). What
``apt-get install`` would start, this test starts itself on those ports: a throw-away PostgreSQL
cluster owned by ``postgres`` with its socket in Debian's ``/var/run/postgresql`` (so the guide's
``sudo -u postgres psql -p "$PGPORT"`` reaches it) and a Redis. Long-running commands (the emulator,
the Airflow components, the workers) each get their own shell, as the guide's terminals, which runs
the step 1 line and the guide's ``. venv/bin/activate && . ./airflow.env`` first. Then the three
runs of step 5 (the scheduled night, the ``airflow dags trigger`` night, the REST ad-hoc run) must
succeed, each handing on the emulator's CosPaths.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.stack import (
    COMPONENTS,
    STARTUP_TIMEOUT,
    WORKERS,
    Stack,
    answers,
    free_port,
    missing_for_celery,
    require,
    start_postgres,
    start_redis,
    wait_until,
)

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
GUIDE = (ROOT / "docs" / "deployment.md").read_text()
PORTS = (  # step 1, in its order
    "PGPORT",
    "REDIS_PORT",
    "AIRFLOW_PORT",
    "EMULATOR_PORT",
    "WORKER_LOG_PORT",
    "WORKER2_LOG_PORT",
    "TRIGGERER_LOG_PORT",
)
CHECKOUT = ("setup.cfg", "pyproject.toml", "README.md", "LICENSE", "constraints.txt", "airflow_cvm_export", "dags")
RUN_TIMEOUT = 300


def guide_blocks() -> list[str]:
    """The bash blocks of the section, dedented, in order."""
    start = GUIDE.index("## Native install with Celery\n")
    section = GUIDE[start : GUIDE.index("\n## ", start + 1)]
    return [textwrap.dedent(block) for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def is_long_running(line: str) -> bool:
    """A command of the guide that runs until stopped: a component, a worker or the emulator."""
    command = re.sub(r"^([A-Z_][A-Z0-9_]*=\S+ )+", "", line)
    return command in {*COMPONENTS.values(), *WORKERS.values()} or command.startswith("cvm-export-emulator ")


def shell_env(home: Path) -> dict[str, str]:
    """This machine's environment without this project's venv and Airflow settings, ``HOME`` elsewhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "TENCENTCLOUD_", "VIRTUAL_ENV"))}
    venv = str(ROOT / ".venv")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(venv))
    real_home = Path.home()
    env.setdefault("PIP_CACHE_DIR", str(real_home / ".cache" / "pip"))  # the warm cache, not a new HOME's
    if (real_home / ".pyenv").is_dir():
        env.setdefault("PYENV_ROOT", str(real_home / ".pyenv"))  # pyenv's python3.11 shim finds its root
    env["HOME"] = str(home)
    return env


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    missing = missing_for_celery() + [tool for tool in ("sudo", "curl") if not shutil.which(tool)]
    if os.geteuid() != 0:
        missing.append("root (the guide runs sudo apt-get)")
    require("the deployment guide test", missing)
    path = Path(tempfile.mkdtemp(prefix="cvm-guide-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def wait_until_ready(stack: Stack, airflow_home: Path, started: list[str]) -> None:
    """The api-server answers (then log in as the guide's admin), both DAGs are parsed, the workers are up."""
    wait_until("the api-server", lambda: answers(f"{stack.api}/api/v2/monitor/health"), STARTUP_TIMEOUT)
    if "Authorization" not in stack.session.headers:
        password = json.loads((airflow_home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
        login = {"username": "admin", "password": password}
        token = stack.session.post(f"{stack.api}/auth/token", data=login, timeout=10).json()["access_token"]
        stack.session.headers["Authorization"] = f"Bearer {token}"
    for dag_id in ("cvm_export_nightly", "cvm_export_adhoc"):
        stack.wait_until_parsed(dag_id)
    for name in started:
        if "celery-worker" in name:

            def ready(name: str = name) -> bool:
                return " ready." in stack.log(name)

            wait_until(f"{name} to be ready", ready, STARTUP_TIMEOUT)
        process = stack.processes[name]
        assert process.poll() is None, f"{name} exited:\n{stack.log(name)[-3000:]}"


def test_the_native_install_runs_as_written(scratch: Path) -> None:
    blocks = guide_blocks()
    settings, *steps = blocks
    ports = {name: free_port() for name in PORTS}
    default_names = re.fullmatch(r"export ((?:[A-Z0-9_]+=\d+ ?)+)\n", settings)
    assert default_names and [w.split("=")[0] for w in default_names[1].split()] == list(PORTS), settings
    settings = "export " + " ".join(f"{name}={port}" for name, port in ports.items()) + "\n"

    checkout = scratch / "airflow-cvm-export"
    checkout.mkdir()
    for name in CHECKOUT:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, checkout / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(source, checkout / name)
    (scratch / "home").mkdir()
    env = shell_env(scratch / "home")
    stack = Stack(home=checkout, api=f"http://localhost:{ports['AIRFLOW_PORT']}")

    def shell(script: str, name: str) -> str:
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", settings + script],
            env=env,
            cwd=checkout,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        (checkout / f"{name}.log").write_text(done.stdout + done.stderr)
        assert done.returncode == 0, f"{name}:\n{script}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        return done.stdout

    try:
        # What apt-get's service start gives a newcomer, on the ports of step 1.
        (scratch / "pg").mkdir()
        start_postgres(
            stack,
            scratch / "pg",
            port=ports["PGPORT"],
            superuser="postgres",
            socket_dir="/var/run/postgresql",
            create_database=False,
        )
        start_redis(stack, scratch, port=ports["REDIS_PORT"])

        terminal = ""  # the first line of the block that starts the components, run in every terminal
        started: list[str] = []  # the names of the long-running commands not yet waited for
        stdout = ""
        for number, block in enumerate(steps, start=2):
            lines = block.splitlines(keepends=True)
            if not any(is_long_running(line.strip()) for line in lines):
                if started:
                    wait_until_ready(stack, scratch / "home" / "airflow", started)
                    started = []
                stdout = shell(terminal + block, f"step{number}")
                continue
            terminal = terminal or lines.pop(0)
            for line in lines:
                if not is_long_running(line.strip()):
                    shell(terminal + line, f"step{number}")
                    continue
                name = re.sub(r"\W+", "-", line.strip()).strip("-")
                stack.start(name, ["bash", "-c", settings + terminal + line], env=env)
                started.append(name)
        assert terminal.strip() == ". venv/bin/activate && . ./airflow.env", terminal
        adhoc = json.loads(stdout.strip().splitlines()[-1])  # what the last block, the REST call, printed
        assert adhoc["logical_date"] is None, adhoc

        nightly = stack.get("/dags/cvm_export_nightly/dagRuns")["dag_runs"]
        assert sorted(run["run_type"] for run in nightly) == ["manual", "scheduled"], nightly
        runs = [("cvm_export_nightly", run["dag_run_id"]) for run in nightly]
        runs.append(("cvm_export_adhoc", adhoc["dag_run_id"]))
        emulator = f"http://localhost:{ports['EMULATOR_PORT']}"
        for dag_id, run_id in runs:
            assert stack.wait_for_run(dag_id, run_id, RUN_TIMEOUT) == "success", stack.logs_tail()
            waited = stack.get(
                f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/wait_for_export/xcomEntries/return_value",
                map_index=0,
            )["value"]
            exports = stack.session.get(f"{emulator}/_emulator/state", timeout=10).json()["exports"]
            assert waited in [export["CosPaths"] for export in exports], (waited, exports)
    finally:
        stack.stop()
