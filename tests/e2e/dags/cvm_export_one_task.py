"""Test DAG (airflow): one ExportImagesOperator that also waits, deferred to the triggerer."""

from __future__ import annotations

from airflow.sdk import DAG

from airflow_cvm_export.operators.cvm import ExportImagesOperator

with DAG(dag_id="cvm_export_one_task", schedule=None, params={"image_ids": ["img-centos02", "img-ubuntu01"]}):
    ExportImagesOperator(
        task_id="start_export",
        image_ids="{{ params.image_ids | tojson }}",
        bucket_name="exports-1250000000",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=1,
        wait_timeout=120,
    )
