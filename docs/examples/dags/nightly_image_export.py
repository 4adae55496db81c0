"""The DAG that docs/examples/test_my_dag.py tests: export one custom image to COS and wait for it."""

import pendulum
from airflow.sdk import DAG

from airflow_cvm_export.operators.cvm import ExportImagesOperator
from airflow_cvm_export.sensors.cvm import ExportImagesSensor

with DAG(
    "nightly_image_export",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
):
    start = ExportImagesOperator(
        task_id="start_export",
        image_ids=["img-centos01"],
        bucket_name="exports-1250000000",
        region="ap-guangzhou",
        file_name_prefixes=["nightly-{{ ds_nodash }}"],
    )
    ExportImagesSensor(task_id="wait_for_export", export=start.output, poke_interval=1)
