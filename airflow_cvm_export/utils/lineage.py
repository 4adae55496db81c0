"""OpenLineage datasets of an export: the images in, the exported COS objects out.

Naming (OpenLineage's dataset naming spec has no entry for Tencent Cloud; these follow its rule
"namespace = scheme://authority of the datasource, name = the dataset within it" and its blob
storage entries, see docs/assets.md, "Lineage"):

- a COS object: namespace ``cos://<bucket>``, name ``<object key>`` (the CosPath without its
  leading ``/``), as ``s3://<bucket>`` / ``<object key>`` for S3; the same scheme and bucket as
  the provider's Airflow assets ``cos://<bucket>/<ImageId>?dag_id=<dag_id>``.
- a CVM custom image: namespace ``cvm://<region>``, name ``<image id>``: an image id is unique
  and lives in one region, and the region is where the CVM API serves it.

The OpenLineage provider is imported only when its listener asks a task for its lineage, so
nothing here costs anything at DAG parse time or without the provider.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage


def remember(task: Any, export: Mapping[str, Any], cos_paths: Sequence[str]) -> None:
    """Keep the export a task hands on for its lineage.

    The OpenLineage listener builds the COMPLETE event in a fork of the task process after the
    task, where XComs cannot be read back, so the lineage comes from the task object itself.
    """
    task._cvm_exported = (dict(export), list(cos_paths))


def task_lineage(task: Any) -> OperatorLineage:
    """The images of the export ``task`` handed on as inputs, its COS objects as outputs (none before)."""
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.openlineage.extractors import OperatorLineage

    from airflow_cvm_export.utils.protocol import cos_key

    exported = getattr(task, "_cvm_exported", None)
    if exported is None:
        return OperatorLineage()
    export, cos_paths = exported
    return OperatorLineage(
        inputs=[Dataset(namespace=f"cvm://{export['region']}", name=image_id) for image_id in export["image_ids"]],
        outputs=[Dataset(namespace=f"cos://{export['bucket_name']}", name=cos_key(path)) for path in cos_paths],
    )
