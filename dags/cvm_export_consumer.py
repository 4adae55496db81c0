"""Downstream of every export: runs when exported images land in COS, scheduled on the asset alias.

Each successful ``wait_for_export`` (in ``cvm_export_nightly``, ``cvm_export_adhoc`` or any DAG
using ``ExportImagesSensor``) emits, through ``AssetAlias("cvm_export")``, one asset event per
exported image: URI ``cos://<bucket>/<ImageId>?dag_id=<producing DAG>`` (the same every run), extra
``{"export_task_id": <ExportImages TaskId>, "keys": [<this run's object keys of the image>]}``.
The scheduler starts this DAG on those events. ``list_exported_objects`` reads them from
``triggering_asset_events`` and returns the URI of every exported object, ``cos://<bucket>/<key>``:
replace it with whatever should happen to fresh images (copy, scan, register).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import pendulum
from airflow.sdk import DAG, AssetAlias, task

from airflow_cvm_export.sensors.cvm import DEFAULT_ASSET_ALIAS

EXPORTS = AssetAlias(DEFAULT_ASSET_ALIAS)

# [START howto_consumer_asset_events]
with DAG(
    dag_id="cvm_export_consumer",
    schedule=[EXPORTS],
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    doc_md=__doc__,
    tags=["tencentcloud", "cvm", "export"],
):

    @task
    def list_exported_objects(triggering_asset_events: Mapping[AssetAlias, Sequence[Any]] | None = None) -> list[str]:
        """Log and return ``cos://<bucket>/<key>`` of every object in the asset events that started this run."""
        uris: list[str] = []
        for event in triggering_asset_events.get(EXPORTS, []) if triggering_asset_events else []:
            bucket = urlsplit(event.asset.uri).netloc
            print(
                f"{event.asset.uri}: ExportImages task {event.extra.get('export_task_id')} "
                f"from {event.source_dag_id}/{event.source_task_id}[{event.source_map_index}] ({event.source_run_id})"
            )
            uris += [f"cos://{bucket}/{key}" for key in event.extra.get("keys", [])]
        for uri in uris:
            print(f"  {uri}")
        return uris

    list_exported_objects()
# [END howto_consumer_asset_events]
