"""ExportImagesSensor against the in-process emulator: progress, freshness, failures, XComs and assets."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from airflow.sdk import DAG, Asset, AssetAlias, PokeReturnValue

from airflow_cvm_export.emulator import Emulator
from airflow_cvm_export.links.cvm import LINK_XCOM_KEY
from airflow_cvm_export.operators.cvm import ExportImagesOperator
from airflow_cvm_export.sensors.cvm import DEFAULT_ASSET_ALIAS, OBJECTS_XCOM_KEY, ExportImagesSensor
from airflow_cvm_export.utils.completion import take_baseline
from airflow_cvm_export.utils.errors import TencentCloudConfigError, TencentCloudError
from airflow_cvm_export.utils.waiting import export_assets
from airflow_cvm_export.version_compat import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    TaskDeferred,
)
from tests.credentials import SECRET_KEY
from tests.operators.conftest import BUCKET, CONN_ID, REGION, FakeTaskInstance, fake_ti, task_context

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context

    from airflow_cvm_export.utils.records import ExportRecord


def start(context: Context, image_ids: list[str], **kwargs: Any) -> ExportRecord:
    op = ExportImagesOperator(
        task_id="start_export", image_ids=image_ids, bucket_name=BUCKET, tencentcloud_conn_id=CONN_ID, **kwargs
    )
    return op.execute(context)


def sensor(export: Mapping[str, Any] | None = None, **kwargs: Any) -> ExportImagesSensor:
    kwargs.setdefault("poke_interval", 0.1)
    return ExportImagesSensor(task_id="wait_for_export", export=export, tencentcloud_conn_id=CONN_ID, **kwargs)


def poke_until_done(wait: ExportImagesSensor, context: Context, seconds: float = 10) -> PokeReturnValue:
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        result = wait.poke(context)
        if result:
            assert isinstance(result, PokeReturnValue)
            return result
        time.sleep(0.1)
    raise AssertionError("export did not finish")


def test_pokes_until_every_object_is_there(
    start_emulator: Any, context: Context, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator = start_emulator(progression="manual")
    record = start(context, ["img-centos02", "img-ubuntu01"], file_name_prefixes=["web", "app"])
    wait = sensor(record)

    assert wait.poke(context) is False
    emulator.advance(objects=2)
    assert wait.poke(context) is False
    emulator.finish()
    result = poke_until_done(wait, context)

    (export,) = emulator.state()["exports"]
    assert result.xcom_value == export["CosPaths"]
    assert "0 of 5 exported objects present" in capsys.readouterr().out  # structlog writes to stdout
    objects = fake_ti(context).xcoms[OBJECTS_XCOM_KEY]
    assert [obj["cos_path"] for obj in objects] == export["CosPaths"]
    assert {obj["bucket"] for obj in objects} == {BUCKET}
    assert all(obj["size"] > 0 and obj["url"].startswith(f"https://{BUCKET}.cos.{REGION}.") for obj in objects)
    assert fake_ti(context).xcoms[LINK_XCOM_KEY]["bucket"] == BUCKET
    events = context["outlet_events"][AssetAlias(DEFAULT_ASSET_ALIAS)].asset_alias_events
    assert sorted(event.dest_asset_key.uri for event in events) == [
        f"cos://{BUCKET}/img-centos02?dag_id={wait.dag_id}",
        f"cos://{BUCKET}/img-ubuntu01?dag_id={wait.dag_id}",
    ]


def test_objects_older_than_the_export_never_count(emulator: Emulator, context: Context) -> None:
    record = start(context, ["img-centos01"])
    poke_until_done(sensor(record), context)
    # The same image exported again later writes the same key: yesterday's object must not count,
    # whether the record says what was there before (its baseline) or only when it started.
    later = {**record, "started_at": (datetime.now(UTC) + timedelta(minutes=5)).isoformat(), "baseline": None}
    assert sensor(later).poke(context) is False
    existing = {obj["key"]: obj for obj in fake_ti(context).xcoms[OBJECTS_XCOM_KEY]}
    rerun = {**record, "baseline": take_baseline(existing, existing)}  # started before yesterday's files
    assert sensor(rerun).poke(context) is False


@pytest.mark.parametrize("cos_clock", [-120, +120], ids=["cos_behind", "cos_ahead"])
def test_without_a_baseline_objects_are_judged_by_cos_clock(
    start_emulator: Any, context: Context, cos_clock: int
) -> None:
    """COS's clock 2 minutes off this machine's (and the API's): ``started_at`` is taken by COS's clock,
    from the baseline listing's ``Date``, so a record without a baseline still hands on the new files
    (COS behind: they are stamped "2 minutes before" this machine's start) and never the files an
    earlier export wrote 30 s before the start (COS ahead: they are stamped "90 s after" it)."""
    emulator = start_emulator(progression="manual", cos_clock_offset=cos_clock)
    key = "img-centos01_system_snap-a90ff55d.raw"
    earlier = emulator.objects.put_object(BUCKET, key, b"earlier export", time.time() - 30)
    record = start(context, ["img-centos01"])
    started = datetime.fromisoformat(record["started_at"]).timestamp()
    assert abs(started - (time.time() + cos_clock)) < 3

    legacy = {**record, "baseline": None}  # a record of an older version, or the sensor's explicit fields
    assert sensor(legacy).poke(context) is False  # the earlier export's file is not this export's
    emulator.finish()
    poke_until_done(sensor(legacy), context)
    (obj,) = fake_ti(context).xcoms[OBJECTS_XCOM_KEY]
    assert obj["key"] == key and obj["etag"] != earlier.etag.strip('"')  # the new export's file


def test_export_failing_in_the_cloud_fails_fast(start_emulator: Any, context: Context) -> None:
    start_emulator(fail_rate=1)
    record = start(context, ["img-centos01"])
    wait = sensor(record, timeout=60)
    began = time.monotonic()
    with pytest.raises(AirflowFailException, match="img-centos01 is in state EXPORTFAILED"):
        wait.execute(context)
    assert time.monotonic() - began < 5


def test_deleted_image_fails_at_once(start_emulator: Any, context: Context) -> None:
    start_emulator(progression="manual")
    record = start(context, ["img-centos01"])
    gone = {**record, "image_ids": ["img-zzzzzzzz"]}
    with pytest.raises(AirflowFailException, match="img-zzzzzzzz no longer exists"):
        sensor(gone).poke(context)


def test_execute_returns_the_cos_paths(emulator: Emulator, context: Context) -> None:
    record = start(context, ["img-ubuntu03"])
    assert sensor(record).execute(context) == record["cos_paths"]


def test_explicit_fields_instead_of_a_record(emulator: Emulator, context: Context) -> None:
    record = start(context, ["img-ubuntu02"])
    wait = ExportImagesSensor(
        task_id="wait_for_export",
        export_task_id=record["task_id"],
        cos_paths=str(record["cos_paths"]),  # as a template renders a list without native rendering
        image_ids=record["image_ids"],
        bucket_name=record["bucket_name"],
        started_at=record["started_at"],
        tencentcloud_conn_id=CONN_ID,
        poke_interval=0.1,
    )
    assert wait.execute(context) == record["cos_paths"]
    assert wait.export_record["region"] == REGION  # from the connection


@pytest.mark.parametrize("soft_fail", [False, True])
def test_timeout(start_emulator: Any, context: Context, soft_fail: bool) -> None:
    start_emulator(progression="manual")
    record = start(context, ["img-centos01"])
    expected = AirflowSkipException if soft_fail else AirflowSensorTimeout
    with pytest.raises(expected):
        sensor(record, timeout=0.3, soft_fail=soft_fail).execute(context)


def test_dry_run_record_skips(emulator: Emulator, context: Context) -> None:
    record = start(context, ["img-centos01"], dry_run=True)
    with pytest.raises(AirflowSkipException, match="dry run"):
        sensor(record).execute(context)
    assert "DescribeImages" not in emulator.state()["requests"]


def test_record_and_explicit_fields_are_exclusive(context: Context) -> None:
    wait = sensor({"task_id": 1}, bucket_name=BUCKET)
    with pytest.raises(TencentCloudConfigError, match="either export or the explicit fields"):
        wait.execute(context)


def test_deferrable_defers_to_the_trigger_with_the_deadline(start_emulator: Any, context: Context) -> None:
    start_emulator(progression="manual")  # still running when the sensor checks before deferring
    record = start(context, ["img-centos01"])
    with pytest.raises(TaskDeferred) as deferred:
        sensor(record, deferrable=True, timeout=120, poke_interval=7).execute(context)
    trigger = deferred.value.trigger
    _, kwargs = trigger.serialize()
    assert deferred.value.method_name == "execute_complete"
    assert kwargs["export"] == {**record, "region": REGION}
    assert kwargs["poll_interval"] == 7
    assert kwargs["end_time"] == pytest.approx(fake_ti(context).start_date.timestamp() + 120)
    assert SECRET_KEY not in repr(kwargs)


@pytest.mark.parametrize("mode", ["poke", "reschedule", "deferrable"])
def test_a_finished_export_is_handed_on_at_once_in_every_mode(start_emulator: Any, context: Context, mode: str) -> None:
    """The default poke_interval (60 s): the first check comes before any wait, deferring included."""
    start_emulator(progression="immediate")
    record = start(context, ["img-centos01"])
    wait = ExportImagesSensor(
        task_id="wait_for_export",
        export=record,
        tencentcloud_conn_id=CONN_ID,
        mode="poke" if mode == "deferrable" else mode,
        deferrable=mode == "deferrable",
    )
    assert wait.poke_interval == 60
    fake_ti(context).get_first_reschedule_date = lambda context: None  # type: ignore[attr-defined]  # reschedule mode: the first try
    began = time.monotonic()
    assert wait.execute(context) == record["cos_paths"]  # no TaskDeferred, no reschedule
    assert time.monotonic() - began < 5
    assert [obj["cos_path"] for obj in fake_ti(context).xcoms[OBJECTS_XCOM_KEY]] == record["cos_paths"]
    events = context["outlet_events"][AssetAlias(DEFAULT_ASSET_ALIAS)].asset_alias_events
    assert [event.dest_asset_key.uri for event in events] == [f"cos://{BUCKET}/img-centos01?dag_id={wait.dag_id}"]


def test_deferrable_fails_a_failed_export_before_deferring(start_emulator: Any, context: Context) -> None:
    start_emulator(progression="immediate", fail_rate=1)
    record = start(context, ["img-centos01"])
    with pytest.raises(AirflowFailException, match="img-centos01 is in state EXPORTFAILED"):
        sensor(record, deferrable=True).execute(context)


def test_execute_complete_success(emulator: Emulator, context: Context) -> None:
    record = start(context, ["img-centos01"])
    objects = [{"bucket": BUCKET, "key": path.lstrip("/"), "cos_path": path} for path in record["cos_paths"]]
    event = {"status": "success", "message": "done", "objects": objects, "cos_paths": record["cos_paths"]}
    assert sensor(record).execute_complete(context, event) == record["cos_paths"]
    assert fake_ti(context).xcoms[OBJECTS_XCOM_KEY] == objects


@pytest.mark.parametrize(
    ("status", "error", "final"),
    [
        ("failed", AirflowFailException, True),
        ("timeout", AirflowSensorTimeout, True),
        ("error", TencentCloudError, False),
    ],
)
def test_execute_complete_failure(emulator: Emulator, status: str, error: type[Exception], final: bool) -> None:
    """A failed export or a timeout ends the task; an export that could not be checked fails only this try."""
    record = start(task_context(ti=FakeTaskInstance()), ["img-centos01"])
    resumed = task_context(ti=FakeTaskInstance())  # a resumed task runs in a new process
    with pytest.raises(error, match="image img-centos01 is in state") as raised:
        sensor(record).execute_complete(resumed, {"status": status, "message": "image img-centos01 is in state X"})
    assert isinstance(raised.value, AirflowFailException | AirflowSensorTimeout) is final
    assert fake_ti(resumed).xcoms[LINK_XCOM_KEY]["bucket"] == BUCKET  # the failed task keeps its console links


def test_one_asset_per_bucket_image_and_dag_whatever_the_prefix() -> None:
    objects = [
        {"bucket": BUCKET, "key": "web-20261126-3f2a9c1d_img-centos01_system_snap-1.raw"},
        {"bucket": BUCKET, "key": "web-20261126-3f2a9c1d_img-centos01_data_snap-2.raw"},
        # A prefix that starts like another image's file names: the longest listing prefix wins.
        {"bucket": BUCKET, "key": "web-20261126-3f2a9c1d_img-centos01_img-ubuntu01_system_snap-4.raw"},
    ]
    prefixes = ["web-20261126-3f2a9c1d", "web-20261126-3f2a9c1d_img-centos01"]
    export = {"file_name_prefixes": prefixes, "image_ids": ["img-centos01", "img-ubuntu01"]}
    assert export_assets(export, objects, "nightly") == {
        f"cos://{BUCKET}/img-centos01?dag_id=nightly": [obj["key"] for obj in objects[:2]],
        f"cos://{BUCKET}/img-ubuntu01?dag_id=nightly": [objects[2]["key"]],
    }
    tomorrow = {**export, "file_name_prefixes": [p.replace("20261126-3f2a9c1d", "20261127-0b1c2d3e") for p in prefixes]}
    renamed = [{**obj, "key": obj["key"].replace("20261126-3f2a9c1d", "20261127-0b1c2d3e")} for obj in objects]
    assert export_assets(tomorrow, renamed, "nightly").keys() == export_assets(export, objects, "nightly").keys()
    # Another DAG exporting the same image to the same bucket has its own assets (never created at once).
    assert not export_assets(export, objects, "adhoc").keys() & export_assets(export, objects, "nightly").keys()
    assert list(export_assets(export, objects)) == [f"cos://{BUCKET}/img-centos01", f"cos://{BUCKET}/img-ubuntu01"]


def test_assets_without_prefixes_and_of_keys_off_the_documented_pattern() -> None:
    objects = [
        {"bucket": BUCKET, "key": "img-ubuntu01_system_snap-3.raw"},
        {"bucket": BUCKET, "key": "unexpected-name.raw"},
    ]
    export = {"file_name_prefixes": None, "image_ids": ["img-ubuntu01"]}
    assert export_assets(export, objects, "adhoc") == {
        f"cos://{BUCKET}/img-ubuntu01?dag_id=adhoc": ["img-ubuntu01_system_snap-3.raw"],
        f"cos://{BUCKET}/unexpected-name.raw?dag_id=adhoc": ["unexpected-name.raw"],
    }


def test_asset_alias_can_be_switched_off() -> None:
    assert ExportImagesSensor(task_id="w", export={}, asset_alias=None).outlets == []
    assert ExportImagesSensor(task_id="w", export={}).outlets == [AssetAlias(DEFAULT_ASSET_ALIAS)]


@pytest.mark.parametrize(
    ("kwargs", "outlets"),
    [
        ({}, [AssetAlias(DEFAULT_ASSET_ALIAS)]),
        ({"asset_alias": "images"}, [AssetAlias("images")]),
        ({"asset_alias": None}, []),
        ({"outlets": [Asset("s3://mirror/images")]}, [Asset("s3://mirror/images"), AssetAlias(DEFAULT_ASSET_ALIAS)]),
        ({"outlets": AssetAlias(DEFAULT_ASSET_ALIAS)}, [AssetAlias(DEFAULT_ASSET_ALIAS)]),
    ],
)
def test_asset_alias_declared_at_construction_mapped_or_not(kwargs: dict[str, Any], outlets: list[Any]) -> None:
    """The alias must be in the DAG as written (a mapped task's outlets are its partial() arguments)."""
    with DAG("assets", schedule=None):
        plain = ExportImagesSensor(task_id="plain", export={}, **kwargs)
        mapped = ExportImagesSensor.partial(task_id="mapped", **kwargs).expand(export=[{}])
    assert plain.outlets == mapped.outlets == outlets
    assert mapped.unmap({"export": {}}).outlets == outlets  # as it runs: no alias added twice


def test_partial_keeps_the_sdks_guard_against_calling_it_on_a_task() -> None:
    with pytest.raises(TypeError, match="partial can only be called on Operator classes"):
        ExportImagesSensor(task_id="w", export={}).partial(task_id="again")
