"""Test DAG for the crash window of ``start_export``: the task process kills itself with SIGKILL.

``CVM_EXPORT_CRASH_AT=answer`` kills it right after the ExportImages answer, before the export
record reaches the task state store (only the intent is stored: request, start time, baseline);
``CVM_EXPORT_CRASH_AT=stored`` right after the record is stored. It is killed once: the file
``CVM_EXPORT_CRASH_MARKER`` is created just before.
"""

from __future__ import annotations

import os
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG

from airflow_cvm_export.operators.cvm import ExportImagesOperator
from airflow_cvm_export.sensors.cvm import ExportImagesSensor
from airflow_cvm_export.utils.records import ExportRecord


def _crash_here(point: str) -> None:
    marker = Path(os.environ.get("CVM_EXPORT_CRASH_MARKER", "/nonexistent/marker"))
    if os.environ.get("CVM_EXPORT_CRASH_AT") == point and not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)


class CrashingExportImagesOperator(ExportImagesOperator):
    """ExportImagesOperator whose process dies at the point named by ``CVM_EXPORT_CRASH_AT``."""

    def _keep(self, store: Any, record: ExportRecord) -> ExportRecord:
        _crash_here("answer")
        return super()._keep(store, record)

    def poll_until_complete(self, external_id: Any, context: Any) -> None:
        _crash_here("stored")
        super().poll_until_complete(external_id, context)


with DAG(
    dag_id="cvm_export_crash",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
):
    start = CrashingExportImagesOperator(
        task_id="start_export",
        image_ids=["img-centos01", "img-centos02"],
        bucket_name="exports-1250000000",
        retries=1,
        retry_delay=timedelta(0),
    )
    ExportImagesSensor(task_id="wait_for_export", export=start.output, poke_interval=1, timeout=120)
