"""The how-to pages' DAGs (docs/operator.md, docs/sensor.md): each snippet the pages include is between
``[START howto_...]`` and ``[END howto_...]`` markers, and tests/docs/test_snippets.py runs every DAG
here with ``airflow dags test`` against the emulator."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_cvm_export.operators.cvm import ExportImagesOperator
from airflow_cvm_export.sensors.cvm import ExportImagesSensor

with DAG("howto_export_images", schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False):
    # [START howto_operator_export_images]
    start = ExportImagesOperator(
        task_id="start_export",
        image_ids=["img-centos01", "img-ubuntu01"],
        bucket_name="exports-1250000000",
        export_format="QCOW2",
        file_name_prefixes=["nightly-{{ ds_nodash }}", "nightly-{{ ds_nodash }}"],
        region="ap-guangzhou",
    )
    # [END howto_operator_export_images]

    # [START howto_sensor_export_images]
    wait = ExportImagesSensor(
        task_id="wait_for_export",
        export=start.output,  # the export record the operator returned
        deferrable=True,  # wait in the triggerer; the export is checked once before deferring
        poke_interval=60,
        timeout=6 * 3600,
        retries=3,
    )
    # [END howto_sensor_export_images]

    # [START howto_sensor_reschedule]
    wait_in_reschedule_mode = ExportImagesSensor(
        task_id="wait_for_export_rescheduled",
        export=start.output,
        mode="reschedule",  # a worker slot only during each check
        poke_interval=60,
        asset_alias=None,  # no asset events from this second wait
    )
    # [END howto_sensor_reschedule]

with DAG("howto_export_one_task", schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False):
    # [START howto_operator_wait_for_completion]
    export_and_wait = ExportImagesOperator(
        task_id="export_and_wait",
        image_ids=["img-ubuntu02"],
        bucket_name="backups-1250000000",
        wait_for_completion=True,  # also waits; XCom objects as the sensor's
        deferrable=True,
        poll_interval=60,
        wait_timeout=6 * 3600,
    )
    # [END howto_operator_wait_for_completion]

with DAG("howto_check_only", schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False):
    # [START howto_operator_check_only]
    check_exportable = ExportImagesOperator(
        task_id="check_exportable",
        image_ids=["img-centos02"],
        bucket_name="exports-1250000000",
        check_only=True,  # ExportImages with DryRun: nothing is exported; the record has dry_run true
    )
    # [END howto_operator_check_only]
