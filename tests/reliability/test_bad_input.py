"""Malformed and hostile operator, sensor and connection inputs: each gets a typed error naming the
field, before any request reaches the emulator, and never a traceback from inside requests or json.
Hostile connections are in tests/security/test_connection_input.py."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from airflow_cvm_export.emulator import Emulator
from airflow_cvm_export.operators.cvm import ExportImagesOperator
from airflow_cvm_export.sensors.cvm import ExportImagesSensor
from airflow_cvm_export.utils.bounded_json import MAX_DEPTH
from airflow_cvm_export.utils.errors import TencentCloudConfigError
from tests.operators.conftest import BUCKET, CONN_ID
from tests.operators.test_validation import REJECTED_ARGS

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context

pytestmark = pytest.mark.reliability

GOOD: dict[str, Any] = {"image_ids": ["img-centos01"], "bucket_name": BUCKET}


def nested(depth: int, inner: Any = "img-centos01") -> Any:
    """``inner`` inside ``depth`` lists, built without recursion."""
    for _ in range(depth):
        inner = [inner]
    return inner


DEEP = nested(5000)
DEEP_TEXT = "[" * 5000 + "]" * 5000
IDS_1000 = [f"img-{n:08d}" for n in range(1000)]

# What templates can render to (native or not) and hostile values, beyond the pure validation table.
HOSTILE_ARGS: list[tuple[dict[str, Any], str]] = [
    ({"image_ids": "None"}, "image_ids"),  # "{{ params.missing }}" rendered as text
    ({"image_ids": ""}, "image_ids"),  # an undefined variable rendered empty
    ({"image_ids": "{'img-centos01': 1}"}, "image_ids"),  # a dict's repr
    ({"image_ids": "[[[[[[[[[[[[[[[["}, "image_ids"),
    ({"image_ids": ["img-cеntos01"]}, "image_ids item"),  # Cyrillic е
    ({"image_ids": ["img-centos01\x00"]}, "image_ids item"),
    ({"image_ids": ["img-centos01", None]}, "image_ids item"),
    ({"image_ids": ["img-x"] * 1000}, "image_ids must list at most 10 image ids"),
    ({"bucket_name": "exports-1250000000\r\nHost: evil"}, "bucket_name"),
    ({"bucket_name": "../exports-1250000000"}, "bucket_name"),
    ({"bucket_name": ""}, "bucket_name"),
    ({"export_format": "RAW; DROP"}, "export_format"),
    ({"file_name_prefixes": ["nightly\t"]}, "file_name_prefixes item"),
    ({"file_name_prefixes": ["../../etc"]}, "file_name_prefixes item"),
    ({"file_name_prefixes": ["x" * 10_000]}, "file_name_prefixes item"),
    ({"file_name_prefixes": "{{ ds_nodash }}"}, "file_name_prefixes"),  # a template that was never rendered
    ({"only_export_root_disk": "None"}, "only_export_root_disk"),
    ({"check_only": 0.5}, "check_only"),
    ({"role_name": "CVM_QcsRole\n"}, "role_name"),
    ({"region": "ap-guangzhou/../x"}, "region"),
    # Limits and nesting, checked before the first request (no RecursionError, no DescribeImages first).
    ({"image_ids": IDS_1000}, "image_ids must list at most 10 image ids per export, got 1000"),
    ({"image_ids": IDS_1000[:11]}, "image_ids must list at most 10 image ids per export, got 11"),
    ({"image_ids": str(IDS_1000)}, "image_ids must list at most 10 image ids"),  # a rendered list's repr
    ({"image_ids": DEEP}, "image_ids item"),
    ({"image_ids": [DEEP]}, "image_ids item"),
    ({"image_ids": DEEP_TEXT}, f"image_ids must be .*nested at most {MAX_DEPTH} levels"),
    ({"image_ids": "[" * 5000}, "image_ids must be"),
    ({"image_ids": str(nested(200))}, "image_ids must be"),  # the Python-literal path is bounded too
    ({"image_ids": "[__import__('os').getcwd()]"}, "image_ids must be"),
    ({"image_ids": "__import__('os').getcwd()"}, "not a bare string"),
    ({"image_ids": {"img-centos01"}}, "image_ids must be"),
    ({"image_ids": {"img-centos01": True}}, "image_ids must be"),
    ({"bucket_name": DEEP}, "bucket_name"),
    ({"bucket_name": {"Bucket": BUCKET}}, "bucket_name"),
    ({"export_format": DEEP}, "export_format"),
    ({"file_name_prefixes": DEEP}, "file_name_prefixes item"),
    ({"file_name_prefixes": DEEP_TEXT}, "file_name_prefixes must be"),
    ({"file_name_prefixes": ["..", "x"]}, "file_name_prefixes item"),
    ({"only_export_root_disk": DEEP}, "only_export_root_disk"),
    ({"check_only": DEEP}, "check_only"),
    ({"role_name": DEEP}, "role_name"),
    ({"role_name": "x" * 129}, "role_name"),
    ({"region": nested(5000, {})}, "region"),
    ({"region": "ap-guangzhou\r\nHost: evil"}, "region"),
]

# The operator's argument for ExportImages' DryRun is check_only (validate_export_args calls it dry_run).
OPERATOR_CASES = [
    pytest.param(
        {"check_only" if name == "dry_run" else name: value for name, value in changes.items()},
        "check_only" if field == "dry_run" else field,
        id=f"operator-{i}",
    )
    for i, (changes, field) in enumerate(REJECTED_ARGS + HOSTILE_ARGS)
]


@pytest.mark.parametrize(("changes", "field"), OPERATOR_CASES)
def test_operator_input(emulator: Emulator, context: Context, changes: dict[str, Any], field: str) -> None:
    task = ExportImagesOperator(task_id="start", tencentcloud_conn_id=CONN_ID, **GOOD)
    task._lock_for_execution = True  # as the task runner does: rendered values are not walked for XComArgs
    for name, value in changes.items():
        setattr(task, name, value)
    with pytest.raises(TencentCloudConfigError, match=field):
        task.execute(context)
    assert emulator.state()["requests"] == {}


RECORD = {
    "task_id": 105591590,
    "cos_paths": ["/img-centos01_system_snap-a90ff55d.raw"],
    "image_ids": ["img-centos01"],
    "bucket_name": BUCKET,
    "region": "ap-guangzhou",
    "started_at": "2026-11-26T02:00:00+00:00",
}
SENSOR_CASES = [
    ({"export": ""}, "export must be"),
    ({"export": "{'task_id': 1}"}, "export must be"),  # a dict's repr, not JSON
    ({"export": {}}, "export.image_ids"),
    ({"export": {**RECORD, "cos_paths": ["/a\nb.raw"]}}, "export.cos_paths item"),
    ({"export": {**RECORD, "started_at": None}}, "export.started_at"),
    ({"export": {**RECORD, "started_at": "2026-13-45T99:00:00+00:00"}}, "export.started_at"),
    ({"export": {**RECORD, "recovered": "perhaps"}}, "export.recovered"),
    ({"export": {**RECORD, "file_name_prefixes": ["a", "b"]}}, "export.file_name_prefixes"),
    ({"export": {**RECORD, "region": "ap-guangzhou\n"}}, "export.region"),
    ({"export": RECORD, "bucket_name": BUCKET}, "either export or the explicit fields"),
    ({"cos_paths": RECORD["cos_paths"], "image_ids": ["img-centos01"]}, "export.bucket_name"),
    # urllib3 resolves dot segments: '/../x' would HEAD another object (and its 403 read as a permission issue)
    ({"export": {**RECORD, "cos_paths": ["/../exports-1250000001/img.raw"]}}, "export.cos_paths item"),
    ({"export": {**RECORD, "cos_paths": ["/img/./x.raw"]}}, "export.cos_paths item"),
    ({"export": {**RECORD, "cos_paths": ["/img/.."]}}, "export.cos_paths item"),
    ({"export": {**RECORD, "cos_paths": ["/img\\..\\x.raw"]}}, "export.cos_paths item"),
    ({"export": {**RECORD, "cos_paths": ["/x\x7f.raw"]}}, "export.cos_paths item"),
    ({"export": {**RECORD, "cos_paths": ["/" + "a" * 2000]}}, "export.cos_paths item"),
    ({"export": {**RECORD, "cos_paths": ["/"]}}, "export.cos_paths item"),
    ({"export": {**RECORD, "cos_paths": [f"/p{n}.raw" for n in range(1001)]}}, "at most 1000 object paths"),
    ({"export": {**RECORD, "cos_paths": DEEP}}, "export must be .*nested at most"),
    ({"export": {**RECORD, "cos_paths": [["/a.raw"]]}}, "export.cos_paths item"),
    ({"export": {**RECORD, "cos_paths": DEEP_TEXT}}, "export.cos_paths must be"),
    ({"export": {**RECORD, "image_ids": IDS_1000}}, "export.image_ids must list at most 10 image ids"),
    ({"export": {**RECORD, "image_ids": DEEP}}, "export must be .*nested at most"),
    ({"export": {**RECORD, "note": nested(100, {})}}, "export must be .*nested at most"),
    ({"export": "{" * 5000}, "export must be"),
    ({"export": '{"a":' * 5000 + "1" + "}" * 5000}, "export must be .*nested at most"),
    ({"export": {**RECORD, "started_at": DEEP}}, "export must be .*nested at most"),
    ({"export": {**RECORD, "started_at": ["2026-11-26T02:00:00+00:00"]}}, "export.started_at"),
    ({"export": {**RECORD, "bucket_name": [BUCKET]}}, "export.bucket_name"),
    ({"export": {**RECORD, "region": {"r": "ap-guangzhou"}}}, "export.region"),
    ({"export": {**RECORD, "dry_run": "None"}}, "export.dry_run"),
    ({"export": [RECORD]}, "export must be"),
    ({"export": json.dumps([RECORD])}, "export must be"),
]


@pytest.mark.parametrize(("kwargs", "message"), SENSOR_CASES)
def test_sensor_input(emulator: Emulator, context: Context, kwargs: dict[str, Any], message: str) -> None:
    unset: dict[str, Any] = dict.fromkeys(kwargs)
    sensor = ExportImagesSensor(task_id="wait", tencentcloud_conn_id=CONN_ID, **unset)
    sensor._lock_for_execution = True  # as the task runner does before rendering
    for name, value in kwargs.items():
        setattr(sensor, name, value)
    with pytest.raises(TencentCloudConfigError, match=message):
        sensor.execute(context)
    assert emulator.state()["requests"] == {}


# Templates whose rendering is hostile: (operator arguments, params, field named by the error).
TEMPLATED_CASES: list[tuple[dict[str, Any], dict[str, Any], str]] = [
    ({"image_ids": "{{ params.ids }}"}, {"ids": IDS_1000}, "image_ids must list at most 10"),
    ({"image_ids": "{{ params.ids }}"}, {"ids": nested(40)}, "image_ids"),
    ({"image_ids": "{{ params.ids | tojson }}"}, {"ids": ["img-centos01\n"]}, "image_ids item"),
    ({"image_ids": "{{ params.get('missing') }}"}, {}, "image_ids"),
    ({"bucket_name": "{{ params.bucket }}"}, {"bucket": BUCKET + "\r\nHost: evil"}, "bucket_name"),
    ({"region": "{{ params.region }}"}, {"region": "ap-guangzhou/.."}, "region"),
    ({"file_name_prefixes": ["{{ params.prefix }}"]}, {"prefix": "../../x"}, "file_name_prefixes item"),
    ({"role_name": "{{ params.role }}"}, {"role": "CVM_QcsRole\x00"}, "role_name"),
    ({"check_only": "{{ params.flag }}"}, {"flag": "maybe"}, "check_only"),
    ({"tencentcloud_conn_id": "{{ params.conn }}"}, {"conn": "no_such_conn"}, "does not exist"),
]


@pytest.mark.parametrize("native", [False, True], ids=["text", "native"])
@pytest.mark.parametrize(("templates", "params", "field"), TEMPLATED_CASES)
def test_templated_input(
    emulator: Emulator,
    context: Context,
    templates: dict[str, Any],
    params: dict[str, Any],
    field: str,
    native: bool,
) -> None:
    from airflow.sdk import DAG

    with DAG("templated_hostile", schedule=None, render_template_as_native_obj=native) as dag:
        task = ExportImagesOperator(task_id="start", **{"tencentcloud_conn_id": CONN_ID, **GOOD, **templates})
    task.render_template_fields({"params": params}, jinja_env=dag.get_template_env())
    with pytest.raises(TencentCloudConfigError, match=field):
        task.execute(context)
    assert emulator.state()["requests"] == {}


# Operator arguments that are not templated, refused when the DAG file is parsed.
CONSTRUCTOR_CASES: list[tuple[dict[str, Any], str]] = [
    ({"poll_interval": "60"}, "poll_interval must be positive seconds"),
    ({"poll_interval": 0}, "poll_interval must be"),
    ({"poll_interval": -5}, "poll_interval must be"),
    ({"poll_interval": float("nan")}, "poll_interval must be"),
    ({"poll_interval": None}, "poll_interval must be"),
    ({"wait_timeout": "1d"}, "wait_timeout must be"),
    ({"wait_timeout": float("inf")}, "wait_timeout must be"),
    ({"wait_timeout": True}, "wait_timeout must be"),
]


@pytest.mark.parametrize(("kwargs", "message"), CONSTRUCTOR_CASES)
def test_operator_constructor_input(emulator: Emulator, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(TencentCloudConfigError, match=message):
        ExportImagesOperator(task_id="start", tencentcloud_conn_id=CONN_ID, wait_for_completion=True, **GOOD, **kwargs)
    assert emulator.state()["requests"] == {}
