"""pytest plugin for DAG authors: a running emulator, a connection to it, and ``dag.test()`` against it.

Registered through the ``pytest11`` entry point, so ``pip install airflow-cvm-export`` is enough:

- ``tencentcloud_emulator``: one :class:`~airflow_cvm_export.emulator.Emulator` per test session,
  reset before each test (exports ``immediate`` unless a ``tencentcloud_emulator`` marker says otherwise);
- ``tencentcloud_connection``: sets ``AIRFLOW_CONN_TENCENTCLOUD_DEFAULT`` to it, returns the connection id;
- ``tencentcloud_run_dag``: ``tencentcloud_run_dag(dag_id_or_dag, conf=None)`` runs the DAG with
  ``dag.test()`` against the emulator and returns the finished DAG run.

See docs/emulator.md, "Testing your own DAGs with it".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # the fixtures import it when first used: loading the plugin imports no emulator, no Airflow
    from airflow_cvm_export.emulator.server import Emulator

CONN_ID = "tencentcloud_default"
DEFAULT_PROGRESSION = "immediate"
# What a ``@pytest.mark.tencentcloud_emulator(...)`` marker may set for one test.
MARKER_SETTINGS = (
    "progression",
    "fail_rate",
    "export_seconds",
    "max_running_exports",
    "credential_lifetime",
    "cam_role",
)
# Marker settings that are the emulator's own (the others are its export backend's).
_EMULATOR_SETTINGS = ("credential_lifetime", "cam_role")


def pytest_configure(config: pytest.Config) -> None:
    """Declare the ``tencentcloud_emulator`` marker."""
    config.addinivalue_line(
        "markers",
        "tencentcloud_emulator(progression=, fail_rate=, export_seconds=, max_running_exports=, "
        "credential_lifetime=, cam_role=): "
        "settings of the tencentcloud_emulator fixture for this test",
    )


@pytest.fixture(scope="session")
def tencentcloud_emulator_server() -> Iterator[Emulator]:
    """The session's emulator, started once (use ``tencentcloud_emulator``, which resets it per test)."""
    from airflow_cvm_export.emulator.server import Emulator

    with Emulator(progression=DEFAULT_PROGRESSION) as emulator:
        yield emulator


@pytest.fixture
def tencentcloud_emulator(request: pytest.FixtureRequest, tencentcloud_emulator_server: Emulator) -> Emulator:
    """A running emulator, reset before the test; a ``tencentcloud_emulator`` marker adjusts it."""
    emulator = tencentcloud_emulator_server
    marker = request.node.get_closest_marker("tencentcloud_emulator")
    settings = dict(marker.kwargs) if marker else {}
    unknown = sorted(set(settings) - set(MARKER_SETTINGS))
    if unknown:
        allowed = ", ".join(MARKER_SETTINGS)
        raise pytest.UsageError(f"tencentcloud_emulator marker: unknown {unknown}; allowed: {allowed}")
    emulator.reset(progression=settings.pop("progression", None))
    for name, value in settings.items():
        setattr(emulator if name in _EMULATOR_SETTINGS else emulator.exports, name, value)
    return emulator


@pytest.fixture
def tencentcloud_connection(monkeypatch: pytest.MonkeyPatch, tencentcloud_emulator: Emulator) -> str:
    """Point ``tencentcloud_default`` (``AIRFLOW_CONN_TENCENTCLOUD_DEFAULT``) at the emulator; return its id."""
    connection = {
        "conn_type": "tencentcloud",
        "login": tencentcloud_emulator.secret_id,
        "password": tencentcloud_emulator.secret_key,
        "extra": {"region": tencentcloud_emulator.region, "endpoint": tencentcloud_emulator.url},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(connection))
    return CONN_ID


@pytest.fixture(scope="session")
def tencentcloud_airflow_db() -> None:
    """Create or upgrade the metadata DB of the ``AIRFLOW_HOME`` in use, as ``airflow db migrate`` does."""
    from airflow.utils.db import upgradedb

    upgradedb()


@pytest.fixture
def tencentcloud_run_dag(tencentcloud_connection: str, tencentcloud_airflow_db: None) -> Callable[..., Any]:
    """``tencentcloud_run_dag(dag, conf=None)``: run the DAG once with ``dag.test()``; returns the DAG run.

    ``dag`` is a DAG id (read from the configured DAGs folder) or a DAG object from a file in that
    folder (``AIRFLOW__CORE__DAGS_FOLDER``), since ``dag.test()`` reads the DAG from there.
    """

    def run(dag: Any, conf: dict[str, Any] | None = None) -> Any:
        from airflow_cvm_export.version_compat import DagBag
        from airflow_cvm_export.version_compat import conf as airflow_conf

        folder = Path(airflow_conf.get("core", "dags_folder")).resolve()
        if isinstance(dag, str):
            dag_id, dag = dag, DagBag(dag_folder=str(folder)).get_dag(dag)
            if dag is None:
                raise ValueError(f"no DAG {dag_id!r} in the DAGs folder {folder} (AIRFLOW__CORE__DAGS_FOLDER)")
        fileloc = Path(dag.fileloc).resolve()
        if folder not in fileloc.parents:
            raise ValueError(
                f"the DAG {dag.dag_id!r} is in {fileloc}, outside the DAGs folder {folder}: "
                "set AIRFLOW__CORE__DAGS_FOLDER to its folder for the test session"
            )
        return dag.test(run_conf=conf)

    return run
