"""Nightly export of CVM custom images to COS, then a manifest of the exported files.

The images, bucket and polling settings come from the Airflow Variable ``cvm_export_config``, read
when the run starts (never while the file is parsed), for example::

    {"image_ids": ["img-centos01", "img-ubuntu01"], "bucket_name": "exports-1250000000",
     "export_format": "QCOW2", "region": "ap-guangzhou", "poke_interval": 60, "mode": "reschedule"}

Instead of ``image_ids``, ``image_tags`` and/or ``image_filters`` (DescribeImages filters) select
the custom images when the run starts; images ExportImages would refuse (not NORMAL, Windows...)
are skipped with a log line::

    {"image_tags": {"backup": "nightly"}, "bucket_name": "exports-1250000000"}

Optional keys: ``file_name_prefixes`` (one per image id; default ``nightly``), ``timeout`` (seconds),
``batch_size`` (image ids per ExportImages call, default 10), ``mode`` (``deferrable``, ``poke`` or
``reschedule``; unset: deferrable when ``[operators] default_deferrable`` is on, else poke). Every
prefix is stamped with the run's date in the DAG's timezone and a fragment of its run id
(``nightly-20261126-3f2a9c1d``), so no two runs, even of the same day (the scheduled one, a manual
trigger, a REST call without a logical date), write the same keys. The images are exported in
batches: ``start_export`` and ``wait_for_export`` are mapped over them. Tasks are retried three
times, 30 s apart and doubling (docs/failures.md, "Task retries": a retry never exports twice).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pendulum
from airflow.sdk import DAG, XComArg, task

from airflow_cvm_export.examples.planning import DAG_RETRIES, export_kwargs, plan_exports, run_stamp, wait_kwargs
from airflow_cvm_export.operators.cvm import ExportImagesOperator
from airflow_cvm_export.sensors.cvm import OBJECTS_XCOM_KEY, ExportImagesSensor

if TYPE_CHECKING:
    from airflow.sdk.types import DagRunProtocol

CONFIG_VARIABLE = "cvm_export_config"

with DAG(
    dag_id="cvm_export_nightly",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    max_active_runs=1,
    default_args=DAG_RETRIES,
    doc_md=__doc__,
    tags=["tencentcloud", "cvm", "export"],
):

    @task
    def plan(dag_run: DagRunProtocol | None = None, dag: DAG | None = None) -> list[dict[str, dict[str, Any]]]:
        """Read the config Variable, list the images its tags/filters select, split them into batches."""
        from airflow.sdk import Variable

        from airflow_cvm_export.hooks.cvm import CvmHook

        assert dag_run is not None and dag is not None  # Airflow passes both to a running task
        stamp = run_stamp(dag_run.run_id, dag_run.run_after, dag.timezone)
        config = Variable.get(CONFIG_VARIABLE, deserialize_json=True)
        hook = CvmHook(region=config.get("region") if isinstance(config, dict) else None)
        try:
            return plan_exports(config, prefix_suffix=stamp, list_images=hook.list_images)
        finally:
            hook.close()

    @task(multiple_outputs=False)
    def write_manifest(cos_paths: list[list[str]], objects: list[list[dict[str, Any]]]) -> dict[str, Any]:
        """Downstream use of the export: one manifest of every exported file (logged and returned)."""
        files = [obj for batch in objects for obj in batch]
        manifest = {
            "cos_paths": [path for batch in cos_paths for path in batch],
            "files": [{"url": obj["url"], "size": obj["size"], "etag": obj["etag"]} for obj in files],
            "total_bytes": sum(obj["size"] for obj in files),
        }
        print(f"Manifest: {len(manifest['cos_paths'])} files, {manifest['total_bytes']} bytes")
        for path in manifest["cos_paths"]:
            print(f"  {path}")
        return manifest

    # [START howto_nightly_mapped_export]
    planned = plan()
    start = ExportImagesOperator.partial(task_id="start_export").expand_kwargs(planned.map(export_kwargs))
    wait = ExportImagesSensor.partial(task_id="wait_for_export").expand_kwargs(
        start.output.zip(planned).map(wait_kwargs)
    )
    # An XComArg stands for the task's value when it runs; TaskFlow's call types cannot say so.
    write_manifest(cos_paths=wait.output, objects=XComArg(wait, key=OBJECTS_XCOM_KEY))  # type: ignore[arg-type]
    # [END howto_nightly_mapped_export]
