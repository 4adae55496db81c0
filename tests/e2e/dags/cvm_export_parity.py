"""Test DAG (airflow): one export waited for in each mode, each mode on its own emulator.

Branch ``<mode>`` uses connection ``tc_<mode>``: ``start_<mode>`` + ``wait_<mode>`` for the
sensor's poke, reschedule and deferrable modes, and ``one_task`` for
``ExportImagesOperator(wait_for_completion=True, deferrable=True)``. ``CVM_PARITY_TIMEOUT`` sets
every wait's timeout and ``CVM_PARITY_MAX_OUTAGE`` its ``max_outage`` (seconds). Waits retry once,
at once: a try that gives up on transient errors is retried and reattaches.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from airflow.sdk import DAG

from airflow_cvm_export.operators.cvm import ExportImagesOperator
from airflow_cvm_export.sensors.cvm import ExportImagesSensor

IMAGES = ["img-centos02"]
BUCKET = "exports-1250000000"
TIMEOUT = float(os.environ.get("CVM_PARITY_TIMEOUT", "60"))
MAX_OUTAGE = float(os.environ.get("CVM_PARITY_MAX_OUTAGE", "3600"))
RETRY: dict[str, Any] = {"retries": 1, "retry_delay": timedelta(0)}

with DAG(dag_id="cvm_export_parity", schedule=None):
    for mode in ("poke", "reschedule", "deferrable"):
        start = ExportImagesOperator(
            task_id=f"start_{mode}", image_ids=IMAGES, bucket_name=BUCKET, tencentcloud_conn_id=f"tc_{mode}"
        )
        ExportImagesSensor(
            task_id=f"wait_{mode}",
            export=start.output,
            tencentcloud_conn_id=f"tc_{mode}",
            poke_interval=1,
            timeout=TIMEOUT,
            max_outage=MAX_OUTAGE,
            mode="reschedule" if mode == "reschedule" else "poke",
            deferrable=mode == "deferrable",
            **RETRY,
        )
    ExportImagesOperator(
        task_id="one_task",
        image_ids=IMAGES,
        bucket_name=BUCKET,
        tencentcloud_conn_id="tc_one_task",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=1,
        wait_timeout=TIMEOUT,
        max_outage=MAX_OUTAGE,
        **RETRY,
    )
