"""CvmHook.list_images against the emulator: DescribeImages Filters paged 100 at a time, checked first."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from airflow_cvm_export.emulator import Emulator
from airflow_cvm_export.hooks.cvm import CvmHook
from airflow_cvm_export.utils.errors import TencentCloudConfigError
from tests.credentials import SECRET_ID, SECRET_KEY


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(secret_id=SECRET_ID, secret_key=SECRET_KEY, extra_images=250) as emu:
        yield emu


@pytest.fixture
def hook(emulator: Emulator, tencentcloud_conn: Callable[..., str]) -> Iterator[CvmHook]:
    hook = CvmHook(tencentcloud_conn(region="ap-guangzhou", endpoint=emulator.url))
    yield hook
    hook.close()


def test_tag_filter_selects_the_tagged_custom_images(hook: CvmHook) -> None:
    filters = [{"Name": "image-type", "Values": ["PRIVATE_IMAGE"]}, {"Name": "tag:backup", "Values": ["nightly"]}]
    assert [image["ImageId"] for image in hook.list_images(filters)] == ["img-centos01", "img-centos02"]


def test_every_page_is_read_100_at_a_time(hook: CvmHook, emulator: Emulator) -> None:
    images = hook.list_images([{"Name": "tag:env", "Values": ["scale"]}])
    assert len({image["ImageId"] for image in images}) == len(images) == 250
    assert emulator.state()["requests"]["DescribeImages"] == {"ok": 3}


def test_bad_filters_are_refused_before_any_request(hook: CvmHook, emulator: Emulator) -> None:
    too_many = [{"Name": f"tag:k{i}", "Values": ["v"]} for i in range(11)]
    for filters in (too_many, [{"Name": "image-state", "Values": ["NORMAL"]}], [{"Name": "platform", "Values": []}]):
        with pytest.raises(TencentCloudConfigError, match=r"^filters"):
            hook.list_images(filters)
    assert emulator.state()["requests"] == {}
