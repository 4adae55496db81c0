"""Export CVM custom images to COS on demand, from the trigger form.

Fill in the images and the bucket in the form (or ``airflow dags test cvm_export_adhoc -c '<json>'``);
the form checks every value before the run starts, and ``start_export`` checks them again before
sending anything. ``wait_for_export`` returns the CosPaths through XCom. Each prefix (``adhoc`` when
none is given) is stamped with the run's date and a fragment of its run id
(``adhoc-20261126-3f2a9c1d``), so two runs never write the same keys. "How to wait" left empty follows
``[operators] default_deferrable`` (deferrable when on, else poke). Tasks are retried three times,
30 s apart and doubling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_cvm_export.examples.planning import (
    DAG_RETRIES,
    DEFAULT_POKE_INTERVAL,
    WAIT_MODES,
    export_kwargs,
    plan_exports,
    run_stamp,
    wait_kwargs,
)
from airflow_cvm_export.operators.cvm import ExportImagesOperator
from airflow_cvm_export.sensors.cvm import ExportImagesSensor
from airflow_cvm_export.utils.validation import (
    BUCKET_NAME_MAX,
    BUCKET_NAME_PATTERN,
    DEFAULT_EXPORT_FORMAT,
    EXPORT_FORMATS,
    FILE_NAME_PREFIX_PATTERN,
    IMAGE_ID_PATTERN,
    REGION_PATTERN,
)

if TYPE_CHECKING:
    from airflow.sdk.types import DagRunProtocol

with DAG(
    dag_id="cvm_export_adhoc",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    default_args=DAG_RETRIES,
    doc_md=__doc__,
    tags=["tencentcloud", "cvm", "export"],
    # The trigger form: a typed Param is required unless its type allows "null". Airflow checks the
    # schema (patterns, lengths, enums) on submit; a bad value is refused with the param's name.
    params={
        "image_ids": Param(
            type="array",
            items={"type": "string", "pattern": IMAGE_ID_PATTERN},
            minItems=1,
            uniqueItems=True,
            title="Image ids",
            description="Custom images to export, one per line: img- and 8 lowercase letters or digits",
        ),
        "bucket_name": Param(
            type="string",
            pattern=BUCKET_NAME_PATTERN,
            maxLength=BUCKET_NAME_MAX,
            title="COS bucket",
            description="Full bucket name <name>-<APPID>, e.g. exports-1250000000, in the images' region",
        ),
        "export_format": Param(
            DEFAULT_EXPORT_FORMAT,
            type="string",
            enum=list(EXPORT_FORMATS),
            title="Export format",
            description="Format of the exported disk files",
        ),
        "file_name_prefixes": Param(
            None,
            type=["null", "array"],
            items={"type": "string", "pattern": FILE_NAME_PREFIX_PATTERN},
            title="File name prefixes",
            description="Optional: one per image, one per line (letters, digits, . _ -; up to 64)",
        ),
        "region": Param(
            None,
            type=["null", "string"],
            pattern=REGION_PATTERN,
            title="Region",
            description="Optional: e.g. ap-guangzhou; empty for the connection's region",
        ),
        "poke_interval": Param(
            DEFAULT_POKE_INTERVAL,
            type="integer",
            minimum=1,
            title="Check interval (s)",
            description="Seconds between two checks of the export",
            section="Waiting for the files",
        ),
        "mode": Param(
            None,
            type=["null", "string"],
            enum=[None, *WAIT_MODES],
            title="How to wait",
            description="deferrable waits in the triggerer (no worker slot); poke holds a worker slot for the "
            "whole wait; reschedule frees it between checks; empty: deferrable if [operators] default_deferrable "
            "is on, else poke",
            section="Waiting for the files",
        ),
    },
):

    @task
    def plan(
        params: dict[str, Any] | None = None, dag_run: DagRunProtocol | None = None, dag: DAG | None = None
    ) -> list[dict[str, dict[str, Any]]]:
        """Split the form's images into ExportImages batches with this run's prefixes."""
        assert dag_run is not None and dag is not None  # Airflow passes both to a running task
        stamp = run_stamp(dag_run.run_id, dag_run.run_after, dag.timezone)
        return plan_exports(params, prefix_suffix=stamp, default_prefix="adhoc")

    planned = plan()
    start = ExportImagesOperator.partial(task_id="start_export").expand_kwargs(planned.map(export_kwargs))
    ExportImagesSensor.partial(task_id="wait_for_export").expand_kwargs(start.output.zip(planned).map(wait_kwargs))
