"""Test DAG (airflow): start an export and wait for it, as the example DAGs do, with the start's
settings from the environment (``CVM_RUNS_START_TIMEOUT``, ``CVM_RUNS_RETRIES``,
``CVM_RUNS_RETRY_DELAY``, ``CVM_RUNS_DEFERRABLE``) and the request from the run's conf.
``CVM_RUNS_EXPLICIT=1`` gives the sensor the record's fields one by one instead of the record: no
``baseline``, so objects are judged by ``started_at`` alone."""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_cvm_export.operators.cvm import ExportImagesOperator
from airflow_cvm_export.sensors.cvm import ExportImagesSensor

with DAG(
    dag_id="cvm_export_runs",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"image_ids": ["img-centos01"], "file_name_prefixes": ["runs"], "export_format": "RAW"},
):
    start = ExportImagesOperator(
        task_id="start_export",
        image_ids="{{ params.image_ids | tojson }}",
        file_name_prefixes="{{ params.file_name_prefixes | tojson }}",
        export_format="{{ params.export_format }}",
        bucket_name="exports-1250000000",
        poll_interval=1,
        start_timeout=float(os.environ.get("CVM_RUNS_START_TIMEOUT", "120")),
        deferrable=os.environ.get("CVM_RUNS_DEFERRABLE") == "1",
        retries=int(os.environ.get("CVM_RUNS_RETRIES", "0")),
        retry_delay=timedelta(seconds=float(os.environ.get("CVM_RUNS_RETRY_DELAY", "0"))),
    )
    if os.environ.get("CVM_RUNS_EXPLICIT") == "1":  # the sensor's explicit fields: no baseline, only started_at
        record = "ti.xcom_pull(task_ids='start_export')"
        wait = ExportImagesSensor(
            task_id="wait_for_export",
            cos_paths=f"{{{{ {record}['cos_paths'] | tojson }}}}",
            image_ids=f"{{{{ {record}['image_ids'] | tojson }}}}",
            bucket_name="exports-1250000000",
            started_at=f"{{{{ {record}['started_at'] }}}}",
            poke_interval=1,
            timeout=60,
        )
        start >> wait
    else:
        ExportImagesSensor(task_id="wait_for_export", export=start.output, poke_interval=1, timeout=120)
