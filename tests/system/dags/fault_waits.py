"""Test DAGs (airflow) of the fault suite (tests/system/test_faults.py): one export waited for in each mode.

``faults_<mode>`` for ``poke``, ``reschedule`` and ``deferrable`` (``start`` + ``wait``, the sensor)
and ``faults_one_task`` (``ExportImagesOperator(wait_for_completion=True, deferrable=True)``), and
``faults_victim``: poke mode on Celery queue ``victim``, served only by the worker the suite kills.
The run's conf gives ``image`` (one image id) and ``conn`` (the connection: each emulator has its
own). Three retries two seconds apart: a killed worker costs a retry; an outage must not.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG

from airflow_cvm_export.operators.cvm import ExportImagesOperator
from airflow_cvm_export.sensors.cvm import ExportImagesSensor

BUCKET = "exports-1250000000"
IMAGE = "{{ params.image }}"
CONN = "{{ params.conn }}"
DEFAULTS = {"retries": 3, "retry_delay": timedelta(seconds=2)}
PARAMS = {"image": "img-centos01", "conn": "tencentcloud_default"}

for name, mode, queue in [
    ("poke", "poke", "default"),
    ("reschedule", "reschedule", "default"),
    ("deferrable", "deferrable", "default"),
    ("victim", "poke", "victim"),
]:
    with DAG(dag_id=f"faults_{name}", schedule=None, default_args=DEFAULTS, params=PARAMS, max_active_runs=8):
        start = ExportImagesOperator(
            task_id="start", image_ids=[IMAGE], bucket_name=BUCKET, tencentcloud_conn_id=CONN, queue=queue
        )
        ExportImagesSensor(
            task_id="wait",
            export=start.output,
            tencentcloud_conn_id=CONN,
            mode="reschedule" if mode == "reschedule" else "poke",
            deferrable=mode == "deferrable",
            queue=queue,
            poke_interval=3,
            timeout=1200,
        )

with DAG(dag_id="faults_one_task", schedule=None, default_args=DEFAULTS, params=PARAMS, max_active_runs=8):
    ExportImagesOperator(
        task_id="wait",
        image_ids=[IMAGE],
        bucket_name=BUCKET,
        tencentcloud_conn_id=CONN,
        wait_for_completion=True,
        deferrable=True,
        poll_interval=3,
        wait_timeout=1200,
    )
