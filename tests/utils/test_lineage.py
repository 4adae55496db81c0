"""The OpenLineage datasets of an export: images in (``cvm://<region>``), COS objects out (``cos://<bucket>``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from airflow_cvm_export.utils.lineage import remember, task_lineage

# The openlineage extra (make venv and the older lines' venvs of make test-matrix install it).
pytest.importorskip("airflow.providers.openlineage")

EXPORT = {"region": "ap-shanghai", "image_ids": ["img-centos01", "img-ubuntu01"], "bucket_name": "b-1250000000"}


def test_inputs_are_the_images_and_outputs_the_object_keys() -> None:
    task = SimpleNamespace()
    remember(task, EXPORT, ["/n_img-centos01_system_snap-1.raw", "/n_img-ubuntu01_data_snap-2.raw"])
    lineage = task_lineage(task)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [
        ("cvm://ap-shanghai", "img-centos01"),
        ("cvm://ap-shanghai", "img-ubuntu01"),
    ]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [
        ("cos://b-1250000000", "n_img-centos01_system_snap-1.raw"),
        ("cos://b-1250000000", "n_img-ubuntu01_data_snap-2.raw"),
    ]


def test_a_task_that_handed_nothing_on_has_no_lineage() -> None:  # a dry run, or a failed task
    lineage = task_lineage(SimpleNamespace())
    assert lineage.inputs == [] and lineage.outputs == []
