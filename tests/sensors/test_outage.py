"""ExportImagesSensor and the operator's wait in a worker through an outage: ridden out up to max_outage."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import pytest

from airflow_cvm_export.hooks import cvm as hooks
from airflow_cvm_export.operators.cvm import ExportImagesOperator
from airflow_cvm_export.sensors.cvm import OUTAGE_KEY, ExportImagesSensor
from airflow_cvm_export.utils.errors import TencentCloudError
from airflow_cvm_export.version_compat import AirflowFailException
from tests.credentials import rotate_key
from tests.operators.conftest import BUCKET, CONN_ID, fake_store, fake_ti

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context

    from airflow_cvm_export.utils.records import ExportRecord

IMAGES = ["img-centos02"]


@pytest.fixture(autouse=True)
def one_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hook makes one attempt per call: each injected fault is one failed check."""
    monkeypatch.setattr(hooks, "CvmHook", functools.partial(hooks.CvmHook, retry_limit=1))


def start(context: Context) -> ExportRecord:
    op = ExportImagesOperator(
        task_id="start_export", image_ids=IMAGES, bucket_name=BUCKET, tencentcloud_conn_id=CONN_ID
    )
    return op.execute(context)


def sensor(record: ExportRecord, **kwargs: Any) -> ExportImagesSensor:
    return ExportImagesSensor(
        task_id="wait_for_export", export=record, tencentcloud_conn_id=CONN_ID, poke_interval=0.1, **kwargs
    )


def waiting_in_the_worker(max_outage: float) -> ExportImagesOperator:
    """The operator waiting for the export itself, in the worker (not deferring)."""
    return ExportImagesOperator(
        task_id="start_export",
        image_ids=IMAGES,
        bucket_name=BUCKET,
        tencentcloud_conn_id=CONN_ID,
        wait_for_completion=True,
        poll_interval=0.1,
        max_outage=max_outage,
        deferrable=False,
    )


def test_poke_rides_out_a_failed_check(
    start_emulator: Any, context: Context, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator = start_emulator(progression="manual")
    wait = sensor(start(context), max_outage=60)
    emulator.inject("DescribeImages", "drop_before", "http5xx")
    assert wait.poke(context) is False
    assert wait.poke(context) is False
    emulator.finish()
    assert wait.poke(context)
    out = capsys.readouterr().out  # structlog writes to stdout
    assert "[warning  ] ExportImages task" in out and "2 check(s) in a row; still waiting (max_outage 60 s)" in out
    assert "the checks work again after failing for" in out


def test_poke_gives_up_once_the_outage_is_longer_than_max_outage(start_emulator: Any, context: Context) -> None:
    emulator = start_emulator(progression="manual")
    wait = sensor(start(context), max_outage=0)
    emulator.inject("DescribeImages", "drop_before")
    with pytest.raises(TencentCloudError, match="longer than max_outage 0 s") as raised:
        wait.poke(context)
    assert not isinstance(raised.value, AirflowFailException)  # the task's retries run


def test_a_permanent_error_fails_the_sensor_at_once(start_emulator: Any, context: Context) -> None:
    emulator = start_emulator(progression="manual")
    wait = sensor(start(context), max_outage=3600)
    rotate_key(emulator)
    with pytest.raises(AirflowFailException, match="AuthFailure"):
        wait.poke(context)


def test_reschedule_mode_keeps_the_outage_across_reschedules(start_emulator: Any, context: Context) -> None:
    """Each reschedule is a new sensor object: the outage's start is in the task state store (Airflow 3.3+)."""
    emulator = start_emulator(progression="manual")
    record = start(context)
    store = fake_store(context)
    emulator.inject("DescribeImages", "drop_before")
    assert sensor(record, mode="reschedule").poke(context) is False
    kept = store[OUTAGE_KEY]
    assert kept["failures"] == 1 and kept["try_number"] == 1
    store[OUTAGE_KEY] = {**kept, "since": kept["since"] - 100}  # the outage began 100 s ago
    emulator.inject("DescribeImages", "drop_before")
    with pytest.raises(TencentCloudError, match=r"checks failing for 10\d s, longer than max_outage 60 s"):
        sensor(record, mode="reschedule", max_outage=60).poke(context)

    fake_ti(context).try_number = 2  # the retry: that try's outage is not this one's
    emulator.inject("DescribeImages", "drop_before")
    assert sensor(record, mode="reschedule", max_outage=60).poke(context) is False
    assert store[OUTAGE_KEY]["try_number"] == 2 and store[OUTAGE_KEY]["failures"] == 1
    assert sensor(record, mode="reschedule").poke(context) is False  # the check works: the outage is over
    assert OUTAGE_KEY not in store


def test_reschedule_mode_without_a_task_state_store_counts_each_reschedule_anew(
    start_emulator: Any, context: Context
) -> None:
    """Airflow 3.1 and 3.2: nowhere to keep the outage (XComs are cleared at every reschedule)."""
    emulator = start_emulator(progression="manual")
    record = start(context)
    del context["task_state_store"]
    for _ in range(3):
        emulator.inject("DescribeImages", "drop_before")
        assert sensor(record, mode="reschedule", max_outage=0.5).poke(context) is False


def test_the_operator_waiting_in_the_worker_rides_out_failed_checks(
    start_emulator: Any, context: Context, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator = start_emulator(export_seconds=1)
    emulator.inject("COS HEAD", "drop_before", "drop_before", "http5xx")
    record = waiting_in_the_worker(max_outage=60).execute(context)
    (export,) = emulator.state()["exports"]
    assert record["cos_paths"] == export["CosPaths"]
    assert "3 check(s) in a row; still waiting (max_outage 60 s)" in capsys.readouterr().out


def test_the_operator_waiting_in_the_worker_gives_up_after_max_outage(start_emulator: Any, context: Context) -> None:
    emulator = start_emulator(export_seconds=1)
    emulator.inject("COS HEAD", "drop_before")
    with pytest.raises(TencentCloudError, match="longer than max_outage 0 s"):
        waiting_in_the_worker(max_outage=0).execute(context)
    assert len(emulator.state()["exports"]) == 1
