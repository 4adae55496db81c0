"""ExportImagesOperator against the in-process emulator: the record, dry runs, Tencent errors, bad input."""

from __future__ import annotations

import inspect
import json
import warnings
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from airflow.sdk import DAG

from airflow_cvm_export.emulator import Emulator
from airflow_cvm_export.emulator.catalog import image_for
from airflow_cvm_export.links.cvm import LINK_XCOM_KEY
from airflow_cvm_export.operators.cvm import ExportImagesOperator
from airflow_cvm_export.utils.errors import TencentCloudConfigError, TencentCloudError
from airflow_cvm_export.version_compat import ResumableJobStandIn
from tests.operators.conftest import BUCKET, CONN_ID, REGION, fake_ti, task_context

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context

RECORD_KEYS = {
    "task_id",
    "baseline",
    "cos_paths",
    "image_ids",
    "bucket_name",
    "region",
    "file_name_prefixes",
    "export_format",
    "only_export_root_disk",
    "request_id",
    "started_at",
    "dry_run",
    "recovered",
}


def operator(**kwargs: Any) -> ExportImagesOperator:
    args = {"image_ids": ["img-centos02"], "bucket_name": BUCKET, "tencentcloud_conn_id": CONN_ID, **kwargs}
    return ExportImagesOperator(task_id="start_export", **args)


def test_export_record(emulator: Emulator, context: Context) -> None:
    before = datetime.now(UTC)
    record = operator(file_name_prefixes=["nightly-20261126"], export_format="vmdk").execute(context)

    assert set(record) == RECORD_KEYS
    assert json.loads(json.dumps(record)) == record
    (export,) = emulator.state()["exports"]
    assert record["task_id"] == export["TaskId"]
    assert record["cos_paths"] == export["CosPaths"]
    assert all(path.startswith("/nightly-20261126_img-centos02_") for path in record["cos_paths"])
    assert record["export_format"] == "VMDK"
    assert record["region"] == REGION
    assert record["request_id"]
    assert record["dry_run"] is False
    # By COS's clock, as its Date header shows it: to the whole second, never ahead.
    assert before - timedelta(seconds=2) <= datetime.fromisoformat(record["started_at"]) <= datetime.now(UTC)
    assert fake_ti(context).xcoms[LINK_XCOM_KEY] == {"bucket": BUCKET, "region": REGION, "folder": ""}


def test_check_only_starts_nothing(emulator: Emulator, context: Context) -> None:
    record = operator(check_only="True").execute(context)

    assert record["dry_run"] is True
    assert record["cos_paths"] == []
    assert record["task_id"] is None
    assert emulator.state()["exports"] == []
    assert emulator.state()["requests"]["ExportImages"] == {"DryRunOperation": 1}
    assert LINK_XCOM_KEY not in fake_ti(context).xcoms


@pytest.mark.parametrize(
    "code",
    [
        "UnsupportedOperation.WindowsImageExportUnsupported",
        "UnsupportedOperation.PublicImageExportUnsupported",
        "InvalidParameterValue.InvalidImageOsName",
    ],
)
def test_unexportable_image_fails_with_its_tencent_code(emulator: Emulator, context: Context, code: str) -> None:
    with pytest.raises(TencentCloudError, match=code) as raised:
        operator(image_ids=[image_for(code)]).execute(context)
    assert raised.value.code == code
    assert emulator.state()["exports"] == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"image_ids": "img-centos01"},
        {"image_ids": ["img-centos01", "img-centos01"]},
        {"bucket_name": "exports"},
        {"export_format": "ISO"},
        {"file_name_prefixes": ["a", "b"]},
        {"role_name": "no spaces allowed"},
        {"region": "guangzhou"},
    ],
)
def test_bad_arguments_fail_before_any_request(emulator: Emulator, context: Context, kwargs: dict) -> None:
    with pytest.raises(TencentCloudConfigError):
        operator(**kwargs).execute(context)
    assert emulator.state()["requests"] == {}


def test_the_old_dry_run_keyword_still_works_with_a_deprecation_warning(emulator: Emulator, context: Context) -> None:
    with pytest.warns(DeprecationWarning, match="use check_only"):
        op = operator(dry_run=True)

    assert op.check_only is True
    assert inspect.ismethod(op.dry_run)  # BaseOperator.dry_run() is no longer hidden
    assert op.execute(context)["dry_run"] is True
    assert emulator.state()["exports"] == []


def test_durable_below_airflow_3_3_warns_once_and_is_ignored() -> None:
    class Base:
        def __init__(self, **kwargs: Any) -> None:
            pass

    class Task(ResumableJobStandIn, Base):
        pass

    with pytest.warns(UserWarning, match="durable. has no effect on Airflow versions below 3.3"):
        task = Task(durable=True)
    assert task.durable is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Task().durable is False  # left at its default: no warning


def test_region_is_required(emulator: Emulator, context: Context, tencentcloud_conn: Any) -> None:
    conn_id = tencentcloud_conn("tc_no_region", endpoint=emulator.url)
    with pytest.raises(TencentCloudConfigError, match="region must be set"):
        operator(tencentcloud_conn_id=conn_id).execute(context)
    assert emulator.state()["requests"] == {}


def test_every_export_argument_is_templated() -> None:
    """Every argument of the ExportImages request is templated; how the task waits is not (as a sensor's mode)."""
    waiting = {"wait_for_completion", "poll_interval", "wait_timeout", "max_outage", "start_timeout", "deferrable"}
    arguments = set(inspect.signature(ExportImagesOperator.__init__).parameters) - {"self", "kwargs"} - waiting
    assert set(ExportImagesOperator.template_fields) == arguments


@pytest.mark.parametrize("native", [True, False])
def test_rendered_templates_are_normalised(emulator: Emulator, context: Context, native: bool) -> None:
    with DAG("templated", schedule=None, render_template_as_native_obj=native) as dag:
        op = operator(
            image_ids="{{ params.ids }}",
            file_name_prefixes=["{{ ds_nodash }}"],
            only_export_root_disk="{{ params.root }}",
        )
    template_context = task_context(ds_nodash="20261126", params={"ids": ["img-centos02"], "root": True})
    op.render_template_fields(template_context, jinja_env=dag.get_template_env())
    assert op.file_name_prefixes == ([20261126] if native else ["20261126"])
    assert op.image_ids == (["img-centos02"] if native else "['img-centos02']")

    record = op.execute(context)

    assert record["image_ids"] == ["img-centos02"]
    assert record["file_name_prefixes"] == ["20261126"]
    assert record["only_export_root_disk"] is True
    (path,) = record["cos_paths"]  # img-centos02 has a data disk too: only the root disk was exported
    assert path.startswith("/20261126_img-centos02_system_")
