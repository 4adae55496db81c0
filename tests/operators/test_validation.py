"""Pure argument checks: what is normalised, what is rejected, and that each error names its field."""

from __future__ import annotations

import re
from typing import Any

import pendulum
import pytest

from airflow_cvm_export.examples import planning
from airflow_cvm_export.examples.planning import export_kwargs, plan_exports, run_stamp, wait_kwargs
from airflow_cvm_export.utils import validation
from airflow_cvm_export.utils.errors import TencentCloudConfigError
from airflow_cvm_export.utils.validation import validate_export_args, validate_export_record

GOOD = {"image_ids": ["img-centos01"], "bucket_name": "exports-1250000000"}


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        ({"image_ids": '["img-centos01", "img-ubuntu01"]'}, "image_ids", ["img-centos01", "img-ubuntu01"]),
        ({"image_ids": "['img-centos01']"}, "image_ids", ["img-centos01"]),  # non-native render of a list
        ({"image_ids": ("img-centos01",)}, "image_ids", ["img-centos01"]),
        ({"export_format": "qcow2"}, "export_format", "QCOW2"),
        ({"export_format": None}, "export_format", "RAW"),
        ({"file_name_prefixes": [20261126]}, "file_name_prefixes", ["20261126"]),  # native "{{ ds_nodash }}"
        ({"file_name_prefixes": '["nightly-20261126"]'}, "file_name_prefixes", ["nightly-20261126"]),
        ({"file_name_prefixes": []}, "file_name_prefixes", None),
        ({"only_export_root_disk": "True"}, "only_export_root_disk", True),
        ({"only_export_root_disk": "false"}, "only_export_root_disk", False),
        ({"dry_run": True}, "dry_run", True),
        ({"role_name": "CVM_QcsRole"}, "role_name", "CVM_QcsRole"),
        ({"region": "na-siliconvalley"}, "region", "na-siliconvalley"),
        ({"region": ""}, "region", None),
    ],
)
def test_accepted_and_normalised(changes: dict[str, Any], field: str, expected: Any) -> None:
    args = validate_export_args(**{**GOOD, **changes})
    assert getattr(args, field) == expected


# Operator arguments rejected before any request, with the field the error names (also run through
# the operator against the emulator in tests/reliability/test_bad_input.py).
REJECTED_ARGS: list[tuple[dict[str, Any], str]] = [
    ({"image_ids": "img-centos01"}, "image_ids"),  # a bare string, not a list
    ({"image_ids": []}, "image_ids"),
    ({"image_ids": None}, "image_ids"),
    ({"image_ids": 20261126}, "image_ids"),
    ({"image_ids": ["img-CENTOS01"]}, "image_ids item"),
    ({"image_ids": ["img-centos0"]}, "image_ids item"),
    ({"image_ids": ["img-centos01\n"]}, "image_ids item"),
    ({"image_ids": [123]}, "image_ids item"),
    ({"image_ids": ["img-centos01", "img-centos01"]}, "without duplicates"),
    ({"image_ids": "[img-centos01"}, "image_ids"),  # broken JSON from a template
    ({"bucket_name": "exports"}, "bucket_name"),  # no APPID
    ({"bucket_name": "Exports-1250000000"}, "bucket_name"),
    ({"bucket_name": "exports-appid"}, "bucket_name"),
    ({"bucket_name": "x" * 60 + "-1250000000"}, "bucket_name"),
    ({"bucket_name": 1250000000}, "bucket_name"),
    ({"export_format": "ISO"}, "export_format"),
    ({"export_format": True}, "export_format"),
    ({"file_name_prefixes": ["a", "b"]}, "file_name_prefixes"),  # one image, two prefixes
    ({"file_name_prefixes": ["night/ly"]}, "file_name_prefixes item"),
    ({"file_name_prefixes": ["夜间"]}, "file_name_prefixes item"),
    ({"file_name_prefixes": ["p" * 65]}, "file_name_prefixes item"),
    ({"file_name_prefixes": [True]}, "file_name_prefixes item"),
    ({"file_name_prefixes": "nightly"}, "file_name_prefixes"),
    ({"only_export_root_disk": "yes please"}, "only_export_root_disk"),
    ({"only_export_root_disk": 1}, "only_export_root_disk"),
    ({"dry_run": "None"}, "dry_run"),
    ({"role_name": "role with spaces"}, "role_name"),
    ({"region": "Guangzhou"}, "region"),
    ({"region": 20261126}, "region"),
    ({"region": "ap-guangzhou\n"}, "region"),
]


@pytest.mark.parametrize(("changes", "field"), REJECTED_ARGS)
def test_rejected_with_the_field_named(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(TencentCloudConfigError, match=field):
        validate_export_args(**{**GOOD, **changes})


RECORD = {
    "task_id": 105591590,
    "cos_paths": ["/img-centos01_system_snap-a90ff55d.raw"],
    "image_ids": ["img-centos01"],
    "bucket_name": "exports-1250000000",
    "region": "ap-guangzhou",
    "started_at": "2026-11-26T02:00:00+00:00",
    "request_id": "r-1",
}


def test_export_record_is_checked_and_extra_keys_kept() -> None:
    record = validate_export_record({**RECORD, "started_at": "2026-11-26T02:00:00Z"})
    assert record["request_id"] == "r-1"
    assert record["dry_run"] is False


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"started_at": "2026-11-26T02:00:00"}, "started_at"),  # no time zone
        ({"started_at": "yesterday"}, "started_at"),
        ({"cos_paths": []}, "cos_paths"),
        ({"cos_paths": ["/"]}, "cos_paths item"),
        ({"cos_paths": ["/a\x00b"]}, "cos_paths item"),
        ({"bucket_name": None}, "export.bucket_name"),
        ({"image_ids": "img-centos01"}, "export.image_ids"),
    ],
)
def test_bad_export_record(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(TencentCloudConfigError, match=field):
        validate_export_record({**RECORD, **changes})


@pytest.mark.parametrize("export", ["not json", "[1, 2]", 42, None])
def test_export_must_be_a_record(export: Any) -> None:
    with pytest.raises(TencentCloudConfigError, match="export must be"):
        validate_export_record(export)


def test_plan_batches_stamps_prefixes_and_carries_sensor_settings() -> None:
    ids = [f"img-x{i:07d}" for i in range(1, 24)]
    config = {"image_ids": ids, "bucket_name": "exports-1250000000", "poke_interval": "5", "mode": "reschedule"}
    batches = plan_exports(config, prefix_suffix="20261126")
    assert [len(b["export"]["image_ids"]) for b in batches] == [10, 10, 3]
    assert [i for b in batches for i in export_kwargs(b)["image_ids"]] == ids
    assert batches[2]["export"]["file_name_prefixes"] == ["nightly-20261126"] * 3
    assert wait_kwargs(({"task_id": 1}, batches[0])) == {
        "export": {"task_id": 1},
        "poke_interval": 5,
        "timeout": 86400,
        "mode": "reschedule",
        "deferrable": False,  # an explicit mode: [operators] default_deferrable cannot override it
    }


@pytest.mark.parametrize(
    ("mode", "wait"),
    [
        (None, {}),  # the sensor's default: [operators] default_deferrable, else poke
        ("deferrable", {"deferrable": True}),
        ("poke", {"mode": "poke", "deferrable": False}),
    ],
)
def test_plan_wait_mode(mode: str | None, wait: dict[str, Any]) -> None:
    (batch,) = plan_exports({"image_ids": ["img-centos01"], "bucket_name": "exports-1250000000", "mode": mode})
    assert batch["wait"] == {"poke_interval": 60, "timeout": 86400, **wait}


def test_run_stamp_is_readable_and_differs_between_runs_of_one_day() -> None:
    shanghai = pendulum.timezone("Asia/Shanghai")
    night = pendulum.datetime(2026, 11, 25, 18, 0, tz="UTC")  # 02:00 on the 26th in Shanghai
    scheduled = run_stamp("scheduled__2026-11-25T18:00:00+00:00", night, shanghai)
    manual = run_stamp("manual__2026-11-25T18:00:00+00:00", night, shanghai)
    assert re.fullmatch(r"20261126-[0-9a-f]{8}", scheduled), scheduled
    assert manual[:9] == scheduled[:9] and manual != scheduled
    assert run_stamp("scheduled__2026-11-25T18:00:00+00:00", night, shanghai) == scheduled  # a retry: same stamp


def test_plan_keeps_given_prefixes_without_a_stamp() -> None:
    config = {"image_ids": ["img-centos01"], "bucket_name": "exports-1250000000", "file_name_prefixes": ["web"]}
    (batch,) = plan_exports(config)
    assert batch["export"]["file_name_prefixes"] == ["web"]
    (batch,) = plan_exports(config, prefix_suffix="20261126-3f2a9c1d", default_prefix="adhoc")
    assert batch["export"]["file_name_prefixes"] == ["web-20261126-3f2a9c1d"]
    (batch,) = plan_exports({**config, "file_name_prefixes": []}, prefix_suffix="x", default_prefix="adhoc")
    assert batch["export"]["file_name_prefixes"] == ["adhoc-x"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"mode": "deferred"}, "mode"),
        ({"poke_interval": 0}, "poke_interval"),
        ({"poke_interval": True}, "poke_interval"),
        ({"batch_size": "ten"}, "batch_size"),
        ({"bucket_name": ""}, "bucket_name"),
    ],
)
def test_plan_rejects_bad_config(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(TencentCloudConfigError, match=field):
        plan_exports({"image_ids": ["img-centos01"], "bucket_name": "exports-1250000000", **changes})


def test_plan_rejects_a_config_that_is_not_an_object() -> None:
    with pytest.raises(TencentCloudConfigError, match="config must be"):
        plan_exports(["img-centos01"])


@pytest.mark.parametrize("name", ["plan_exports", "export_kwargs", "wait_kwargs", "run_stamp", "DAG_RETRIES"])
def test_the_example_dags_planning_still_imports_from_validation_with_a_warning(name: str) -> None:
    with pytest.warns(DeprecationWarning, match=f"moved to airflow_cvm_export.examples.planning.{name}"):
        moved = getattr(validation, name)
    assert moved is getattr(planning, name)


def test_default_conn_id_moved_to_the_hooks_with_a_warning() -> None:
    from airflow_cvm_export.hooks import DEFAULT_CONN_ID

    with pytest.warns(DeprecationWarning, match="moved to airflow_cvm_export.hooks.DEFAULT_CONN_ID"):
        assert validation.DEFAULT_CONN_ID == DEFAULT_CONN_ID == "tencentcloud_default"
