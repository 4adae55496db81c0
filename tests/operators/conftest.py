"""Fixtures for operator and sensor tests: an in-process emulator, a connection to it, a task context."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import pytest
from airflow.sdk.execution_time.context import OutletEventAccessors

from airflow_cvm_export.emulator import Emulator
from airflow_cvm_export.version_compat import AIRFLOW_V_3_3_PLUS
from tests.airflow_compat import TaskInstanceKey
from tests.credentials import SECRET_ID, SECRET_KEY

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context

CONN_ID = "tc_test"
REGION = "ap-guangzhou"
BUCKET = "exports-1250000000"
# Retries that find their record in the task state store; before 3.3 a retry takes the DAG run's start
# instead (tests/reliability/test_lost_answers.py and test_task_retries.py run that path).
needs_task_state_store = pytest.mark.skipif(
    not AIRFLOW_V_3_3_PLUS, reason="the task state store of ResumableJobMixin is Airflow 3.3+"
)


class FakeTaskInstance:
    """The parts of a task instance the operator and the sensor use: ``xcom_push``, ``start_date``, ``try_number``."""

    def __init__(self) -> None:
        self.xcoms: dict[str, Any] = {}
        self.start_date = datetime.now(UTC)
        self.try_number = 1
        self.stats_tags: dict[str, str] = {}

    dag_id = "cvm_export_adhoc"
    run_id = "manual__2026-01-01T00:00:00+00:00"
    task_id = "start_export"
    map_index = -1

    @property
    def key(self) -> TaskInstanceKey:
        """This try's key, as the UI hands it to the console links."""
        return TaskInstanceKey(self.dag_id, self.task_id, self.run_id, self.try_number, self.map_index)

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value

    def xcom_pull(self, *, task_ids: str, key: str, map_indexes: int) -> Any:
        assert (task_ids, map_indexes) == (self.task_id, self.map_index)
        return self.xcoms.get(key)


def task_context(**values: Any) -> Context:
    """Test doubles typed as the task context Airflow passes (only the keys the code under test reads)."""
    return cast("Context", values)


class FakeTaskStateStore(dict):
    """``context["task_state_store"]``: ``get``/``set`` of JSON values that survive a task's tries."""

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        self[key] = value

    def delete(self, key: str) -> None:
        self.pop(key, None)


def fake_ti(context: Context) -> FakeTaskInstance:
    """The test double in ``context["ti"]``, typed as itself (``xcoms``, a settable ``try_number``)."""
    return cast(FakeTaskInstance, context["ti"])


def fake_store(context: Context) -> FakeTaskStateStore:
    """The test double in ``context["task_state_store"]``, typed as itself (a dict)."""
    return cast(FakeTaskStateStore, context["task_state_store"])


@pytest.fixture
def context() -> Context:
    """A minimal task context for calling ``execute``/``poke`` directly.

    Its DAG run started now: what a retry counts from without a task state store (before Airflow 3.3).
    """
    return task_context(
        ti=FakeTaskInstance(),
        dag_run=SimpleNamespace(start_date=datetime.now(UTC)),
        outlet_events=OutletEventAccessors(),
        task_state_store=FakeTaskStateStore(),
    )


@pytest.fixture
def start_emulator(tencentcloud_conn: Callable[..., str]) -> Iterator[Callable[..., Emulator]]:
    """``start_emulator(**Emulator kwargs)``: a started emulator that connection ``tc_test`` points at.

    Exports finish as they are accepted (``immediate``) unless a test asks for ``progression="manual"``
    and moves them on itself (``finish``/``advance``): no test waits on the emulator's export timer.
    """
    started: list[Emulator] = []

    def start(**kwargs: Any) -> Emulator:
        kwargs.setdefault("progression", "immediate")
        emu = Emulator(secret_id=SECRET_ID, secret_key=SECRET_KEY, **kwargs).start()
        started.append(emu)
        tencentcloud_conn(
            CONN_ID,
            endpoint=emu.url,
            region=REGION,
            rate_limits={"ExportImages": 0, "DescribeImages": 0},
        )
        return emu

    yield start
    for emu in started:
        emu.stop()


@pytest.fixture
def emulator(start_emulator: Callable[..., Emulator]) -> Emulator:
    return start_emulator()
