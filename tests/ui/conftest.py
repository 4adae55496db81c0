"""A real Airflow UI for the browser tests, and a headless Chromium to drive it.

One deployment per session: the emulator, then Airflow's api-server, scheduler, dag-processor and
triggerer as separate processes (LocalExecutor, SQLite, a throw-away ``AIRFLOW_HOME``, free ports,
SimpleAuthManager with every user an admin, the connection Test button enabled, the sensors
deferrable). The browser is Debian's ``chromium`` driven by Playwright (``CHROMIUM`` overrides its
path); Playwright's own browser download is not used.

Screenshots go to the test's tmp dir, or to ``$UI_SCREENSHOTS`` (``make screenshots`` sets it to
``docs/img``, where the documentation's pictures live).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from airflow_cvm_export.emulator import Emulator

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize
from tests.credentials import SECRET_ID, SECRET_KEY

pytestmark = pytest.mark.ui

PROJECT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# A browser on a closed network: no first-run, update, sync or QUIC traffic, no GPU, no sandbox (root in CI).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
STARTUP_TIMEOUT = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(what: str, condition: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    """Poll ``condition()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


@dataclass
class Airflow:
    """The running deployment: its URL, an authenticated REST session, the emulator and the logs."""

    home: Path
    url: str
    emulator: Emulator
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    api: requests.Session = field(default_factory=requests.Session)

    def rest(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.api.request(method, f"{self.url}/api/v2{path}", timeout=60, **kwargs)
        response.raise_for_status()
        return response.json()

    def logs_tail(self, lines: int = 30) -> str:
        """The end of every component's log, for failure messages."""
        logs = {name: (self.home / f"{name}.log").read_text(errors="replace") for name in COMPONENTS}
        return "\n".join(f"--- {name} ---\n" + "\n".join(log.splitlines()[-lines:]) for name, log in logs.items())


def _answers(url: str, session: requests.Session | None = None) -> bool:
    try:
        return (session or requests).get(url, timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


def _stop(processes: dict[str, subprocess.Popen]) -> None:
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


@pytest.fixture(scope="session")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Airflow]:
    """Emulator, api-server, scheduler, dag-processor and triggerer, until the session ends."""
    home = tmp_path_factory.mktemp("ui_airflow_home")
    port = free_port()
    emulator = Emulator(secret_id=SECRET_ID, secret_key=SECRET_KEY, export_seconds=8).start()
    deployment = Airflow(home=home, url=f"http://127.0.0.1:{port}", emulator=emulator)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "TENCENTCLOUD_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(PROJECT / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__PARALLELISM="4",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
        AIRFLOW__CORE__TEST_CONNECTION="Enabled",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{deployment.url}/execution/",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        AIRFLOW__API_AUTH__JWT_SECRET="ui-test-jwt-secret-0123456789abcdef",
        AIRFLOW__API__BASE_URL=deployment.url,
        AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE="True",
        AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL="5",
    )
    try:
        migrate = subprocess.run([AIRFLOW, "db", "migrate"], env=env, cwd=home, capture_output=True, text=True)
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        commands = {
            "api-server": [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            **{name: [AIRFLOW, name] for name in COMPONENTS[1:]},
        }
        for name, command in commands.items():
            with open(home / f"{name}.log", "w") as log:
                deployment.processes[name] = subprocess.Popen(
                    command, env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
        wait_until("the api-server", lambda: _answers(f"{deployment.url}/api/v2/monitor/health"), STARTUP_TIMEOUT)
        # simple_auth_manager_all_admins: GET /auth/token hands out an admin token without credentials.
        token = deployment.api.get(f"{deployment.url}/auth/token", timeout=10).json()["access_token"]
        deployment.api.headers["Authorization"] = f"Bearer {token}"
        dag = f"{deployment.url}/api/v2/dags/cvm_export_adhoc"
        wait_until("cvm_export_adhoc to be parsed", lambda: _answers(dag, deployment.api), STARTUP_TIMEOUT)
        yield deployment
    finally:
        _stop(deployment.processes)
        emulator.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium under Playwright, with a fresh profile; one browser context per session."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium (.ci/run does), or set CHROMIUM")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, tempfile.TemporaryDirectory(prefix="ui-chromium-") as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, viewport=VIEWPORT
        )
        context.set_default_timeout(30_000)
        yield context
        context.close()


@pytest.fixture
def page(browser: Any, airflow: Airflow) -> Iterator[Any]:
    """A fresh tab, logged in to the Airflow UI."""
    tab = browser.new_page()
    tab.goto(airflow.url)
    tab.wait_for_url(f"{airflow.url}/**")
    yield tab
    tab.close()


@pytest.fixture
def screenshot(tmp_path: Path) -> Callable[..., Path]:
    """``screenshot(page_or_locator, name)``: a PNG in the test's tmp dir, or in ``$UI_SCREENSHOTS``."""
    folder = Path(os.environ.get("UI_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)

    def take(target: Any, name: str) -> Path:
        path = folder / f"{name}.png"
        target.screenshot(path=str(path))
        if os.environ.get("UI_SCREENSHOTS"):
            _shrink(path)
        return path

    return take


def _shrink(path: Path) -> None:
    """Keep the documentation's pictures small: 256 colours are plenty for a UI."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
