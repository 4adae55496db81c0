"""Malformed and hostile operator, sensor and connection inputs: each gets a typed error naming the
field, before any request reaches the emulator, and never a traceback from inside requests or json."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_cvm_export.emulator import Emulator
from airflow_cvm_export.operators.cvm import ExportImagesOperator
from airflow_cvm_export.sensors.cvm import ExportImagesSensor
from airflow_cvm_export.utils.errors import TencentCloudConfigError
from tests.credentials import SECRET_ID, SECRET_KEY
from tests.operators.conftest import BUCKET, CONN_ID
from tests.operators.test_validation import REJECTED_ARGS

pytestmark = pytest.mark.reliability

GOOD = {"image_ids": ["img-centos01"], "bucket_name": BUCKET}

# What templates can render to (native or not) and hostile values, beyond the pure validation table.
HOSTILE_ARGS: list[tuple[dict[str, Any], str]] = [
    ({"image_ids": "None"}, "image_ids"),  # "{{ params.missing }}" rendered as text
    ({"image_ids": ""}, "image_ids"),  # an undefined variable rendered empty
    ({"image_ids": "{'img-centos01': 1}"}, "image_ids"),  # a dict's repr
    ({"image_ids": "[[[[[[[[[[[[[[[["}, "image_ids"),
    ({"image_ids": ["img-cеntos01"]}, "image_ids item"),  # Cyrillic е
    ({"image_ids": ["img-centos01\x00"]}, "image_ids item"),
    ({"image_ids": ["img-centos01", None]}, "image_ids item"),
    ({"image_ids": ["img-x"] * 1000}, "image_ids item"),
    ({"bucket_name": "exports-1250000000\r\nHost: evil"}, "bucket_name"),
    ({"bucket_name": "../exports-1250000000"}, "bucket_name"),
    ({"bucket_name": ""}, "bucket_name"),
    ({"export_format": "RAW; DROP"}, "export_format"),
    ({"file_name_prefixes": ["nightly\t"]}, "file_name_prefixes item"),
    ({"file_name_prefixes": ["../../etc"]}, "file_name_prefixes item"),
    ({"file_name_prefixes": ["x" * 10_000]}, "file_name_prefixes item"),
    ({"file_name_prefixes": "{{ ds_nodash }}"}, "file_name_prefixes"),  # a template that was never rendered
    ({"only_export_root_disk": "None"}, "only_export_root_disk"),
    ({"dry_run": 0.5}, "dry_run"),
    ({"role_name": "CVM_QcsRole\n"}, "role_name"),
    ({"region": "ap-guangzhou/../x"}, "region"),
]

OPERATOR_CASES = [
    pytest.param(changes, field, id=f"operator-{i}") for i, (changes, field) in enumerate(REJECTED_ARGS + HOSTILE_ARGS)
]


@pytest.mark.parametrize(("changes", "field"), OPERATOR_CASES)
def test_operator_input(emulator: Emulator, context: dict[str, Any], changes: dict[str, Any], field: str) -> None:
    task = ExportImagesOperator(task_id="start", tencentcloud_conn_id=CONN_ID, **{**GOOD, **changes})
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
]


@pytest.mark.parametrize(("kwargs", "message"), SENSOR_CASES)
def test_sensor_input(emulator: Emulator, context: dict[str, Any], kwargs: dict[str, Any], message: str) -> None:
    sensor = ExportImagesSensor(task_id="wait", tencentcloud_conn_id=CONN_ID, **kwargs)
    with pytest.raises(TencentCloudConfigError, match=message):
        sensor.execute(context)
    assert emulator.state()["requests"] == {}


CONNECTION_CASES = [
    ({"extra": {"endpoint": "http://203.0.113.7:9000"}}, "plain http to a non-loopback host"),
    ({"extra": {"endpoint": "ftp://127.0.0.1"}}, "endpoint must be"),
    ({"extra": {"endpoint": "https://cvm.tencentcloudapi.com/v3?x=1"}}, "endpoint must be"),
    ({"extra": {"endpoint": "http://127.0.0.1:notaport"}}, "endpoint must be"),
    ({"extra": {"cos_endpoint": "http://cos.example.com"}}, "cos_endpoint uses plain http"),
    ({"extra": "{not json"}, "extra is not valid JSON"),
    ({"extra": "[1, 2]"}, "extra must be a JSON object"),
    ({"extra": {"rate_limits": "{DescribeImages: 40"}}, "rate_limits must be a JSON object"),
    ({"extra": {"rate_limits": {"DescribeImages": -1}}}, "rate_limits\\['DescribeImages'\\]"),
    ({"extra": {"rate_limits": {"ExportImages": "fast"}}}, "rate_limits\\['ExportImages'\\]"),
    ({"extra": {"rate_limits": [20]}}, "rate_limits must be a JSON object"),
    ({"extra": {"allow_http": "maybe"}}, "allow_http must be true or false"),
    ({"extra": {"token": 12345}}, "token must be a string"),
    ({"extra": {"region": "ap-guangzhou\n"}}, "region must be"),
    ({"login": None, "password": None}, "no credentials"),
    ({"login": SECRET_ID, "password": None}, "no credentials"),
    ({"login": None, "password": SECRET_KEY}, "no credentials"),
]


@pytest.mark.parametrize(("fields", "message"), CONNECTION_CASES)
def test_connection_input(
    emulator: Emulator,
    context: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fields: dict[str, Any],
    message: str,
) -> None:
    extra = fields.get("extra", {})
    if isinstance(extra, dict):
        extra = {"region": "ap-guangzhou", "endpoint": emulator.url, **extra}
    connection = {"conn_type": "tencentcloud", "login": SECRET_ID, "password": SECRET_KEY, **fields, "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_TC_BAD", json.dumps(connection))
    task = ExportImagesOperator(task_id="start", tencentcloud_conn_id="tc_bad", **GOOD)
    with pytest.raises(TencentCloudConfigError, match=message) as raised:
        task.execute(context)
    assert emulator.state()["requests"] == {}
    error = raised.value  # no traceback from inside json or requests chained to it
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    assert SECRET_KEY not in str(raised.value) + capsys.readouterr().out


def test_the_table_is_at_least_40_inputs() -> None:
    assert len(OPERATOR_CASES) + len(SENSOR_CASES) + len(CONNECTION_CASES) >= 40
