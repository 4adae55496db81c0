"""Shared fixtures: a clean credential environment and Airflow connections from ``AIRFLOW_CONN_*``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.credentials import SECRET_ID, SECRET_KEY


@pytest.fixture(autouse=True)
def _no_ambient_tencent_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up the developer's own Tencent Cloud credentials."""
    for name in ("TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY", "TENCENTCLOUD_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def tencentcloud_conn(monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """Define a ``tencentcloud`` connection through ``AIRFLOW_CONN_<ID>`` and return its id.

    ``tencentcloud_conn(conn_id="tc_test", login=..., password=..., **extra)``; pass
    ``login=None``/``password=None`` for a connection without credentials.
    """

    def make(
        conn_id: str = "tc_test", *, login: str | None = SECRET_ID, password: str | None = SECRET_KEY, **extra: Any
    ) -> str:
        conn = {"conn_type": "tencentcloud", "login": login, "password": password, "extra": extra}
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return conn_id

    return make


# CI on Airflow 3.1 and 3.2 (make test-matrix-older MATRIX_PYTEST=--matrix-lean in .ci/run) keeps to
# the 45-minute budget: of the `airflow dags test` runs (10 s to 2 min each) it runs only those marked
# every_line (the example DAGs' poke and deferrable runs, the retry of a killed start, the secrets
# check at debug level); the others run the same code on every line. It leaves out the release tests
# too: they install constraints.txt (Airflow 3.3) in a fresh venv whichever venv runs them. make test
# runs all of them on 3.3, make test-matrix without --matrix-lean on every line.
LEFT_OUT_ON_OLDER_LINES = (
    "--matrix-lean: this airflow dags test run is left out on the older Airflow lines in CI (the 45-minute "
    "budget); make test runs it on 3.3, make test-matrix on every line"
)
RELEASE_ON_3_3_ONLY = (
    "--matrix-lean: a release test installs constraints.txt (Airflow 3.3) whichever venv runs it; make test runs it"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--matrix-lean",
        action="store_true",
        help="run only the airflow dags test runs marked every_line, and no release tests",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--matrix-lean"):
        return
    for item in items:
        if item.get_closest_marker("release") is not None:
            item.add_marker(pytest.mark.skip(reason=RELEASE_ON_3_3_ONLY))
        elif "run_dag" in getattr(item, "fixturenames", ()) and item.get_closest_marker("every_line") is None:
            item.add_marker(pytest.mark.skip(reason=LEFT_OUT_ON_OLDER_LINES))
