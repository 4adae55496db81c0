"""OpenLineage end to end: the nightly DAG under ``airflow dags test`` with the OpenLineage provider's file
transport; the COMPLETE events of the export tasks carry the images in and the exported COS objects out
(docs/assets.md, "Lineage", shows such an event)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import finished_once_waiting

pytestmark = pytest.mark.e2e
# The openlineage extra (make venv and the older lines' venvs of make test-matrix install it).
pytest.importorskip("airflow.providers.openlineage")

BUCKET = "exports-1250000000"
REGION = "ap-guangzhou"


def complete_events(path: Path, task_id: str) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"].endswith(f".{task_id}")]


def names(datasets: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(d["namespace"], d["name"]) for d in datasets}


def test_events_carry_the_images_and_the_exported_object_keys(
    run_dag: Any, start_emulator: Any, tmp_path: Path, airflow_home: Path
) -> None:
    # The exports finish once a sensor has deferred (each checks before deferring): one resumes.
    emulator = start_emulator(progression="manual")
    events = tmp_path / "openlineage.jsonl"
    transport = {"type": "file", "log_file_path": str(events), "append": True}
    images = ["img-centos01", "img-ubuntu01", "img-ubuntu02"]
    # Deferred sensors: the task resumes in a new operator object, which must carry the lineage too.
    variable = {"image_ids": images, "bucket_name": BUCKET, "poke_interval": 1, "batch_size": 2, "mode": "deferrable"}
    with finished_once_waiting(emulator, airflow_home, "cvm_export_nightly", "deferrable"):
        run = run_dag(
            "cvm_export_nightly",
            emulator,
            variable=variable,
            env={
                "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport),
                "AIRFLOW__OPENLINEAGE__NAMESPACE": "e2e",
            },
        )
    assert run.returncode == 0, run.output[-5000:]
    assert "running trigger in line" in run.output

    exported = {(f"cos://{BUCKET}", path.lstrip("/")) for e in emulator.state()["exports"] for path in e["CosPaths"]}
    assert len(exported) == 5  # 1 + 3 + 1 disks, the object keys the emulator wrote
    images_in = {(f"cvm://{REGION}", image) for image in images}
    for task_id in ("start_export", "wait_for_export"):
        completed = complete_events(events, task_id)
        assert len(completed) == 2, task_id  # one per mapped batch
        assert {e["job"]["namespace"] for e in completed} == {"e2e"}
        assert set().union(*(names(e["inputs"]) for e in completed)) == images_in, task_id
        assert set().union(*(names(e["outputs"]) for e in completed)) == exported, task_id
