"""Console links: URL shapes, the folder holding the objects, and reading the values back from XCom."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_cvm_export.links.cvm import (
    LINK_XCOM_KEY,
    CosBucketLink,
    CosObjectsLink,
    common_folder,
    cos_console_url,
    persist_cos_link,
)
from tests.operators.conftest import FakeTaskInstance


def test_console_url() -> None:
    assert cos_console_url("exports-1250000000", "ap-guangzhou") == (
        "https://console.cloud.tencent.com/cos/bucket?bucket=exports-1250000000&region=ap-guangzhou"
    )
    assert cos_console_url("exports-1250000000", "ap-guangzhou", "a/b/").endswith("&path=%2Fa%2Fb%2F")


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


@pytest.fixture
def stored(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """XCom of one task instance, as the links read it back."""
    from airflow.sdk.execution_time import xcom

    store: dict[str, Any] = {}
    monkeypatch.setattr(xcom.XCom, "get_value", classmethod(lambda cls, *, ti_key, key: store.get(key)))
    return store


def test_links_from_the_persisted_values(stored: dict[str, Any]) -> None:
    ti = FakeTaskInstance()
    persist_cos_link({"ti": ti}, bucket="exports-1250000000", region="ap-guangzhou", cos_paths=["/x/a.raw"])
    stored.update(ti.xcoms)
    assert CosBucketLink().get_link(None, ti_key=None).endswith("bucket=exports-1250000000&region=ap-guangzhou")
    assert CosObjectsLink().get_link(None, ti_key=None).endswith("&path=%2Fx%2F")


def test_no_link_before_the_export_started(stored: dict[str, Any]) -> None:
    assert LINK_XCOM_KEY not in stored
    assert CosBucketLink().get_link(None, ti_key=None) == ""
    assert CosObjectsLink().get_link(None, ti_key=None) == ""
