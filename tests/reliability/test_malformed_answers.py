"""Answers that are not what the API promises give clear errors naming the RequestId (scripted loopback server)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from airflow_cvm_export.hooks.cvm import CvmHook
from airflow_cvm_export.operators.cvm import ExportImagesOperator
from airflow_cvm_export.utils.errors import TencentCloudResponseError, TencentCloudServerError
from tests.hooks.conftest import NO_LIMITS
from tests.hooks.scripted_server import Answer, ScriptedServer, api_error, api_ok

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context

pytestmark = pytest.mark.reliability

EXPORT: dict[str, Any] = {"image_ids": ["img-centos02"], "bucket_name": "exports-1250000000"}
PATHS = ["/img-centos02_system_snap-7889666b.raw", "/img-centos02_data_snap-7b1b07a0.raw"]


def answer(**fields: Any) -> Answer:
    return Answer(body={"Response": {**fields, "RequestId": "req-7f3a"}})


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as srv:
        yield srv


@pytest.fixture
def hook(tencentcloud_conn: Callable[..., str], server: ScriptedServer) -> Iterator[CvmHook]:
    conn_id = tencentcloud_conn("tc_scripted", endpoint=server.url, region="ap-guangzhou", rate_limits=NO_LIMITS)
    hook = CvmHook(conn_id, retry_limit=1)
    yield hook
    hook.close()


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (answer(CosPaths=PATHS), "TaskId is None, not an integer"),
        (answer(TaskId="105591590", CosPaths=PATHS), "TaskId is '105591590', not an integer"),
        (answer(TaskId=True, CosPaths=PATHS), "TaskId is True"),
        (answer(TaskId=1), "CosPaths is None, not a non-empty list"),
        (answer(TaskId=1, CosPaths="/a.raw"), "CosPaths is '/a.raw'"),
        (answer(TaskId=1, CosPaths=[]), "CosPaths is \\[\\]"),
        (answer(TaskId=1, CosPaths=[7, None]), "other than object paths"),
        (answer(TaskId=1, CosPaths=PATHS[:1]), "lists 1 object\\(s\\) but the images have 2 disk"),
    ],
)
def test_export_answer_missing_or_wrong_fields_names_the_request_id(
    hook: CvmHook, server: ScriptedServer, reply: Answer, expected: str
) -> None:
    server.play(reply)
    with pytest.raises(TencentCloudResponseError, match=expected) as raised:
        hook.export_images(**EXPORT, expected_objects=2)
    assert raised.value.request_id == "req-7f3a" and "RequestId req-7f3a" in str(raised.value)
    assert "may have started" in str(raised.value)


@pytest.mark.parametrize(
    ("reply", "error", "expected"),
    [
        (
            Answer(200, b"<html><body>Gateway maintenance</body></html>", {"Content-Type": "text/html"}),
            TencentCloudResponseError,
            "not an API 3.0 JSON response \\(starts with '<html>",
        ),
        (Answer(502, b"<html>502 Bad Gateway</html>"), TencentCloudServerError, "HTTP 502"),
        (Answer(200, b'{"Response": {"TaskId": 1, "CosPa'), TencentCloudResponseError, "not an API 3.0 JSON"),
        (Answer(200, {"TaskId": 1, "CosPaths": PATHS}), TencentCloudResponseError, "not an API 3.0 JSON"),
        (Answer(200, {"Response": ["not", "an", "object"]}), TencentCloudResponseError, "not an API 3.0 JSON"),
        (
            Answer(200, {"Response": {"Error": "boom", "RequestId": "req-7f3a"}}),
            TencentCloudResponseError,
            "malformed Error object \\(RequestId req-7f3a\\)",
        ),
        (Answer(200, b""), TencentCloudResponseError, "not an API 3.0 JSON"),
        (Answer(200, b'{"Response": ' + b"[" * 5000 + b"]" * 5000 + b"}"), TencentCloudResponseError, "not an API"),
        (
            Answer(200, b'{"Response": {"RequestId": ' + b"[" * 100 + b"]" * 100 + b"}}"),
            TencentCloudResponseError,
            "not an",
        ),
    ],
    ids=[
        "html-page",
        "html-502",
        "truncated-json",
        "no-Response",
        "Response-not-object",
        "Error-not-object",
        "empty",
        "nested-5000-deep",
        "nested-100-deep",
    ],
)
def test_answers_that_are_not_api_responses(
    hook: CvmHook, server: ScriptedServer, reply: Answer, error: type[Exception], expected: str
) -> None:
    server.play(reply)
    with pytest.raises(error, match=expected) as raised:
        hook.export_images(**EXPORT)
    assert "Traceback" not in str(raised.value) and "JSONDecodeError" not in str(raised.value)


DESCRIBED = api_ok(
    ImageSet=[
        {
            "ImageId": "img-centos02",
            "ImageState": "NORMAL",
            "SnapshotSet": [
                {"SnapshotId": "snap-7889666b", "DiskUsage": "SYSTEM_DISK"},
                {"SnapshotId": "snap-7b1b07a0", "DiskUsage": "DATA_DISK"},
            ],
        }
    ]
)


def listing(*keys: str, modified: str = "2026-12-01T22:00:00.000Z") -> Answer:
    """A COS bucket listing of ``keys`` (ETag = key, so each object is its own)."""
    contents = "".join(
        f"<Contents><Key>{key}</Key><LastModified>{modified}</LastModified><ETag>&quot;{key}&quot;</ETag>"
        f"<Size>1</Size></Contents>"
        for key in keys
    )
    return Answer(body=f"<ListBucketResult><IsTruncated>false</IsTruncated>{contents}</ListBucketResult>".encode())


def test_operator_reads_a_wrong_answer_as_ambiguous_and_finds_out_without_sending_again(
    hook: CvmHook, server: ScriptedServer, context: Context
) -> None:
    keys = [path.lstrip("/") for path in PATHS]
    server.play(
        DESCRIBED,
        listing(keys[0]),  # the baseline: yesterday's system disk is there
        answer(TaskId=1, CosPaths=PATHS[:1]),  # one CosPath for two disks: not what the API promises
        api_error("InvalidParameterValue.InvalidImageState"),  # DryRun: busy (whose export? unknown yet)
        api_error("DryRunOperation"),  # DryRun: free again
        listing(*keys, modified="2026-12-01T23:00:00.000Z"),  # both files new or changed: it was ours
    )
    task = ExportImagesOperator(
        task_id="start", tencentcloud_conn_id=hook.tencentcloud_conn_id, poll_interval=0.1, **EXPORT
    )
    record = task.execute(context)
    assert record["recovered"] is True and record["cos_paths"] == PATHS
    actions = [r.headers.get("x-tc-action") or r.method for r in server.requests]
    assert actions == ["DescribeImages", "GET", "ExportImages", "ExportImages", "ExportImages", "GET"]
    assert [r.json.get("DryRun") for r in server.requests if r.headers.get("x-tc-action") == "ExportImages"] == [
        False,
        True,
        True,
    ]
