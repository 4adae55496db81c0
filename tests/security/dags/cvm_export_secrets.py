"""The DAG of the secrets scan (tests/security/test_secrets.py): one good export, waited for in the
triggerer, and one task per malformed connection, each failing before it sends anything."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_cvm_export.operators.cvm import ExportImagesOperator
from airflow_cvm_export.sensors.cvm import ExportImagesSensor

# Connection ids the test defines through AIRFLOW_CONN_<ID>, each malformed in its own way.
BAD_CONNECTIONS = ("tc_bad_newline", "tc_bad_url_password", "tc_bad_token", "tc_bad_extra", "tc_bad_backslash")

with DAG(dag_id="cvm_export_secrets", schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False):
    start = ExportImagesOperator(
        task_id="start",
        image_ids=["img-centos01"],
        bucket_name="exports-1250000000",
        file_name_prefixes=["secrets"],
    )
    ExportImagesSensor(task_id="wait", export=start.output, poke_interval=1, deferrable=True)
    for conn_id in BAD_CONNECTIONS:
        ExportImagesOperator(
            task_id=conn_id,
            image_ids=["img-ubuntu01"],
            bucket_name="exports-1250000000",
            tencentcloud_conn_id=conn_id,
            retries=0,
        )
