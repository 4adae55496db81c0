"""ExportImagesOperator(wait_for_completion=True): waiting in the worker and deferring, against the emulator."""

from __future__ import annotations

import threading
from functools import cached_property
from typing import TYPE_CHECKING, Any

import pytest

from airflow_cvm_export.emulator import Emulator
from airflow_cvm_export.operators.cvm import EXPORT_XCOM_KEY, ExportImagesOperator
from airflow_cvm_export.sensors.cvm import OBJECTS_XCOM_KEY
from airflow_cvm_export.triggers.cvm import ExportImagesTrigger
from airflow_cvm_export.utils.errors import TencentCloudConfigError, TencentCloudError
from airflow_cvm_export.version_compat import AirflowFailException, AirflowSensorTimeout, TaskDeferred
from tests.operators.conftest import BUCKET, CONN_ID, fake_ti, needs_task_state_store

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context

IMAGES = ["img-centos02", "img-ubuntu01"]


def waiting_operator(**kwargs: Any) -> ExportImagesOperator:
    args = {
        "image_ids": IMAGES,
        "bucket_name": BUCKET,
        "tencentcloud_conn_id": CONN_ID,
        "wait_for_completion": True,
        "poll_interval": 0.1,
        "deferrable": False,
        **kwargs,
    }
    return ExportImagesOperator(task_id="start_export", **args)


def test_waits_in_the_worker_and_returns_the_export_record(emulator: Emulator, context: Context) -> None:
    record = waiting_operator().execute(context)

    (export,) = emulator.state()["exports"]
    assert export["status"] == "succeeded"
    assert record["task_id"] == export["TaskId"] and record["cos_paths"] == export["CosPaths"]
    assert fake_ti(context).xcoms[EXPORT_XCOM_KEY] == record
    assert [obj["cos_path"] for obj in fake_ti(context).xcoms[OBJECTS_XCOM_KEY]] == export["CosPaths"]


def test_returns_the_same_type_with_or_without_waiting(emulator: Emulator, context: Context) -> None:
    waited = waiting_operator().execute(context)
    started = waiting_operator(wait_for_completion=False, image_ids=["img-centos01"]).execute(context)

    assert waited.keys() == started.keys()


def test_an_export_failing_in_the_cloud_fails_the_wait(start_emulator: Any, context: Context) -> None:
    start_emulator(fail_rate=1.0)
    with pytest.raises(AirflowFailException, match=r"img-centos02 is in state \w*FAILED"):
        waiting_operator().execute(context)


def test_the_wait_times_out(start_emulator: Any, context: Context) -> None:
    emulator = start_emulator(progression="manual")
    with pytest.raises(AirflowSensorTimeout, match="did not finish within 0.3 s: 0 of 5 exported objects present"):
        waiting_operator(wait_timeout=0.3).execute(context)
    assert len(emulator.state()["exports"]) == 1


def test_deferrable_hands_the_record_to_the_trigger(start_emulator: Any, context: Context) -> None:
    emulator = start_emulator(progression="manual")  # still running when the operator checks before deferring
    with pytest.raises(TaskDeferred) as deferred:
        waiting_operator(deferrable=True, poll_interval=5, wait_timeout=600).execute(context)

    trigger = deferred.value.trigger
    assert isinstance(trigger, ExportImagesTrigger)
    (export,) = emulator.state()["exports"]
    record = fake_ti(context).xcoms[EXPORT_XCOM_KEY]
    assert record["cos_paths"] == export["CosPaths"]
    classpath, kwargs = trigger.serialize()
    assert kwargs["export"] == record and kwargs["poll_interval"] == 5
    assert kwargs["tencentcloud_conn_id"] == CONN_ID
    assert deferred.value.method_name == "execute_complete"


def test_deferrable_hands_on_an_export_finished_before_deferring(start_emulator: Any, context: Context) -> None:
    emulator = start_emulator(progression="immediate")
    record = waiting_operator(deferrable=True, poll_interval=60).execute(context)  # no TaskDeferred

    (export,) = emulator.state()["exports"]
    assert record["cos_paths"] == export["CosPaths"]
    assert [obj["cos_path"] for obj in fake_ti(context).xcoms[OBJECTS_XCOM_KEY]] == export["CosPaths"]


def test_resuming_after_the_trigger_uses_the_sensors_handling(start_emulator: Any, context: Context) -> None:
    emulator = start_emulator(progression="manual")  # still running when the operator checks before deferring
    op = waiting_operator(deferrable=True)
    with pytest.raises(TaskDeferred):
        op.execute(context)
    record = fake_ti(context).xcoms[EXPORT_XCOM_KEY]
    objects = [
        {"bucket": BUCKET, "key": p.lstrip("/"), "cos_path": p, "size": 1, "etag": "", "last_modified": "", "url": ""}
        for p in record["cos_paths"]
    ]

    assert op.execute_complete(context, {"status": "success", "objects": objects}) == record
    assert fake_ti(context).xcoms[OBJECTS_XCOM_KEY] == objects
    with pytest.raises(AirflowFailException, match="image gone"):
        op.execute_complete(context, {"status": "failed", "message": "image gone"})
    with pytest.raises(TencentCloudError, match="could not check") as transient:
        op.execute_complete(context, {"status": "error", "message": "could not check"})
    assert not isinstance(transient.value, AirflowFailException)  # the task's own retries run
    with pytest.raises(AirflowSensorTimeout, match="too slow"):
        op.execute_complete(context, {"status": "timeout", "message": "too slow"})
    assert len(emulator.state()["exports"]) == 1  # resuming never exports again


@pytest.mark.parametrize("field", ["poll_interval", "wait_timeout", "start_timeout"])
@pytest.mark.parametrize("value", [0, -1, "60", True])
def test_wait_settings_must_be_positive(field: str, value: Any) -> None:
    with pytest.raises(TencentCloudConfigError, match=f"{field} must be positive seconds"):
        waiting_operator(**{field: value})


# -- retries (same task state store): the mixin asks get_job_status, which runs the sensor's check ---------------


def retry(context: Context) -> Context:
    fake_ti(context).try_number += 1
    return context


@needs_task_state_store
def test_a_retry_reattaches_to_a_running_export_and_waits_again(start_emulator: Any, context: Context) -> None:
    emulator = start_emulator(progression="manual")
    with pytest.raises(AirflowSensorTimeout):
        waiting_operator(wait_timeout=0.1).execute(context)

    done = threading.Timer(0.3, emulator.finish)  # the export finishes while the retry waits
    done.start()
    try:
        record = waiting_operator().execute(retry(context))
    finally:
        done.join()

    (export,) = emulator.state()["exports"]
    assert record["cos_paths"] == export["CosPaths"]
    assert [obj["cos_path"] for obj in fake_ti(context).xcoms[OBJECTS_XCOM_KEY]] == export["CosPaths"]


@needs_task_state_store
def test_a_deferred_retry_of_a_running_export_defers_again(start_emulator: Any, context: Context) -> None:
    emulator = start_emulator(progression="manual")
    with pytest.raises(TaskDeferred):
        waiting_operator(deferrable=True).execute(context)
    with pytest.raises(TaskDeferred) as deferred:
        waiting_operator(deferrable=True).execute(retry(context))

    (export,) = emulator.state()["exports"]
    assert deferred.value.trigger.serialize()[1]["export"]["task_id"] == export["TaskId"]


@needs_task_state_store
def test_a_retry_of_a_finished_export_hands_it_on_without_waiting(start_emulator: Any, context: Context) -> None:
    emulator = start_emulator(progression="manual")
    with pytest.raises(TaskDeferred):
        waiting_operator(deferrable=True).execute(context)
    emulator.finish()  # the export is done before the retry

    record = waiting_operator(deferrable=True).execute(retry(context))  # no TaskDeferred: it is finished

    (export,) = emulator.state()["exports"]
    assert record["cos_paths"] == export["CosPaths"]
    assert [obj["cos_path"] for obj in fake_ti(context).xcoms[OBJECTS_XCOM_KEY]] == export["CosPaths"]


@needs_task_state_store
def test_a_retry_of_an_export_that_failed_in_the_cloud_exports_again(start_emulator: Any, context: Context) -> None:
    emulator = start_emulator(fail_rate=1.0)
    with pytest.raises(AirflowFailException, match="FAILED"):
        waiting_operator().execute(context)
    emulator.exports.fail_rate = 0.0

    record = waiting_operator().execute(retry(context))

    first, second = emulator.state()["exports"]
    assert first["status"] == "failed" and record["cos_paths"] == second["CosPaths"]


def test_every_attribute_is_set_in_init(emulator: Emulator, context: Context) -> None:
    """execute creates no attribute __init__ did not (the cached properties aside: they are declared;
    and Airflow's own lazily made logger)."""
    op = waiting_operator()
    before = set(vars(op))
    op.execute(context)

    cached = {name for name, value in vars(ExportImagesOperator).items() if isinstance(value, cached_property)}
    assert set(vars(op)) - before - {"_cached_logger"} <= cached
