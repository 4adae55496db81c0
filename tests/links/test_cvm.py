"""Console links: URL shapes as the COS console writes them, the folder holding the objects, and the
values each run of a task gives its links (read in the same process, never from XCom)."""

from __future__ import annotations

import pytest

from airflow_cvm_export.links.cvm import (
    LINK_XCOM_KEY,
    CosBucketLink,
    CosObjectsLink,
    common_folder,
    cos_console_url,
    persist_cos_link,
    persist_export_links,
)
from airflow_cvm_export.sensors.cvm import ExportImagesSensor
from tests.operators.conftest import FakeTaskInstance, task_context

BUCKET, REGION = "exports-1250000000", "ap-guangzhou"
TASK = ExportImagesSensor(task_id="wait_for_export", export={})
CONSOLE = "https://console.cloud.tencent.com/cos/bucket"


def test_console_url() -> None:
    assert cos_console_url(BUCKET, REGION) == f"{CONSOLE}?bucket={BUCKET}&region={REGION}"
    assert cos_console_url(BUCKET, REGION, page="basicconfig").endswith(f"region={REGION}&type=basicconfig")
    # The console encodes the folder twice: /a/b/ is %252Fa%252Fb%252F.
    assert cos_console_url(BUCKET, REGION, path="a/b/").endswith("&path=%252Fa%252Fb%252F")
    assert cos_console_url(BUCKET, REGION, path="").endswith("&path=%252F")


@pytest.mark.parametrize(
    ("paths", "folder"),
    [
        ([], ""),
        (["/nightly-1_img-a_system_snap-1.raw", "/nightly-1_img-a_data_snap-2.raw"], ""),
        (["/exports/2026/a.raw", "/exports/2026/b.raw"], "exports/2026/"),
        (["/exports/2026/a.raw", "/exports/2025/b.raw"], "exports/"),
    ],
)
def test_common_folder(paths: list[str], folder: str) -> None:
    assert common_folder(paths) == folder


def test_links_are_distinct_and_come_from_this_run() -> None:
    ti = FakeTaskInstance()
    ti.try_number = 101  # a try no other test persists
    persist_cos_link(task_context(ti=ti), bucket=BUCKET, region=REGION, cos_paths=["/img-centos01_system_snap-1.raw"])
    assert ti.xcoms[LINK_XCOM_KEY] == {"bucket": BUCKET, "region": REGION, "folder": ""}
    bucket, objects = CosBucketLink().get_link(TASK, ti_key=ti.key), CosObjectsLink().get_link(TASK, ti_key=ti.key)
    assert bucket == f"{CONSOLE}?bucket={BUCKET}&region={REGION}&type=basicconfig"
    assert objects == f"{CONSOLE}?bucket={BUCKET}&region={REGION}&path=%252F"


def test_links_from_an_export_record() -> None:
    ti = FakeTaskInstance()
    ti.try_number = 102
    persist_export_links(task_context(ti=ti), {"bucket_name": BUCKET, "region": REGION, "cos_paths": ["/x/y/a.raw"]})
    assert CosObjectsLink().get_link(TASK, ti_key=ti.key).endswith("&path=%252Fx%252Fy%252F")
    recovered = FakeTaskInstance()
    recovered.try_number = 103
    persist_export_links(task_context(ti=recovered), {"bucket_name": BUCKET, "region": None, "cos_paths": []})
    assert CosObjectsLink().get_link(TASK, ti_key=recovered.key) == f"{CONSOLE}?bucket={BUCKET}&region=&path=%252F"


def test_no_link_and_no_xcom_read_before_the_export_is_known(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deferral or a failed start ends a run without link values: no XCom read (it would log an error)."""
    from airflow.sdk.execution_time import xcom

    def read(*args: object, **kwargs: object) -> None:
        raise AssertionError("the links read XCom")

    monkeypatch.setattr(xcom.XCom, "get_value", read)
    monkeypatch.setattr(xcom.XCom, "get_one", read)
    ti = FakeTaskInstance()
    ti.try_number = 104
    assert CosBucketLink().get_link(TASK, ti_key=ti.key) == ""
    assert CosObjectsLink().get_link(TASK, ti_key=ti.key) == ""


def test_a_later_try_does_not_show_an_earlier_try_s_links() -> None:
    first = FakeTaskInstance()
    first.try_number = 105
    persist_cos_link(task_context(ti=first), bucket=BUCKET, region=REGION, cos_paths=[])
    second = FakeTaskInstance()
    second.try_number = 106
    assert CosBucketLink().get_link(TASK, ti_key=second.key) == ""
