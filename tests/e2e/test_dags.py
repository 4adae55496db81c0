"""Both example DAGs end to end with ``airflow dags test`` against the emulator."""

from __future__ import annotations

import re
from collections import Counter
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest

from airflow_cvm_export.emulator import Emulator
from tests.e2e.conftest import DagRun, finished_once_waiting

pytestmark = pytest.mark.e2e

IMAGES = ["img-centos01", "img-centos02", "img-ubuntu01"]
BUCKET = "exports-1250000000"
CONSOLE = f"https://console.cloud.tencent.com/cos/bucket?bucket={BUCKET}&region=ap-guangzhou"
# Two images per ExportImages call: three images make two mapped batches.
CONFIG = {
    "image_ids": IMAGES,
    "bucket_name": BUCKET,
    "poke_interval": 1,
    "batch_size": 2,
    "timeout": 120,
    "mode": "poke",
}


def launch(run_dag: Any, dag_id: str, emulator: Emulator, **config: Any) -> DagRun:
    settings = {**CONFIG, **config}
    # The mode is explicit, so [operators] default_deferrable (on here) must not change it.
    env = {"AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True"}
    if dag_id == "cvm_export_nightly":
        return run_dag(dag_id, emulator, variable=settings, env=env)
    settings.pop("timeout")
    settings.pop("batch_size")  # not a form field: the form uses the default batch size
    return run_dag(dag_id, emulator, conf=settings, env=env)


# What shows in the output that the sensor really waited in that mode.
MODE_MARKS = {"poke": "objects present", "reschedule": "up_for_reschedule", "deferrable": "running trigger in line"}
# How the emulator's exports move on in each mode: a rescheduled or deferred sensor must find its
# export still running (manual: finished only once the sensors waited that way, as every wait checks
# once before it reschedules or defers); a poking sensor checks until it is there either way.
PROGRESSION = {"poke": "immediate", "reschedule": "manual", "deferrable": "manual"}


# Poke and deferrable (the matrix) also run on Airflow 3.1 and 3.2 in CI (tests/conftest.py).
MODES = [pytest.param(m, marks=pytest.mark.every_line) if m != "reschedule" else m for m in MODE_MARKS]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dag_id", ["cvm_export_nightly", "cvm_export_adhoc"])
def test_exports_each_image_once_and_hands_the_cos_paths_downstream(
    run_dag: Any, start_emulator: Any, airflow_home: Path, dag_id: str, mode: str
) -> None:
    emulator = start_emulator(progression=PROGRESSION[mode])
    waiting = finished_once_waiting(emulator, airflow_home, dag_id, mode) if mode != "poke" else nullcontext()
    with waiting:
        run = launch(run_dag, dag_id, emulator, mode=mode)
    assert run.returncode == 0, run.output[-5000:]
    assert "state=success" in run.output
    assert MODE_MARKS[mode] in run.output

    exports = {export["TaskId"]: export for export in emulator.state()["exports"]}
    assert Counter(i for export in exports.values() for i in export["ImageIds"]) == Counter(IMAGES)
    records = run.xcoms("start_export")
    waited = run.xcoms("wait_for_export")
    assert len(records) == len(waited) == len(exports)
    for record, cos_paths in zip(records, waited, strict=True):
        assert cos_paths == exports[record["task_id"]]["CosPaths"] == record["cos_paths"]
    objects = run.xcoms("wait_for_export", "objects")
    assert [[obj["cos_path"] for obj in batch] for batch in objects] == waited
    # Each task's console links, built when each of its runs ended; never from a missing XCom.
    assert not [line for line in run.output.splitlines() if "XCom not found" in line and "cos_console" in line]
    for task_id in ("start_export", "wait_for_export"):
        assert run.xcoms(task_id, "_link_CosBucketLink") == [f"{CONSOLE}&type=basicconfig"] * len(exports)
        assert run.xcoms(task_id, "_link_CosObjectsLink") == [f"{CONSOLE}&path=%252F"] * len(exports)
    # Each run's own prefix: the date of the run in the DAG's timezone and a fragment of its run id.
    stamp = re.compile(r"^/(nightly|adhoc)-\d{8}-[0-9a-f]{8}_img-")
    assert all(stamp.match(path) for batch in waited for path in batch), waited
    if dag_id == "cvm_export_nightly":
        (manifest,) = run.xcoms("write_manifest")
        assert manifest["cos_paths"] == [path for batch in waited for path in batch]


def test_unexportable_image_fails_start_export_with_its_code(run_dag: Any, start_emulator: Any) -> None:
    emulator = start_emulator()
    image = next(i for i in emulator.catalog()["images"] if i["triggers"].startswith("UnsupportedOperation."))
    run = run_dag("cvm_export_adhoc", emulator, conf={"image_ids": [image["ImageId"]], "bucket_name": BUCKET})
    assert run.returncode != 0
    assert image["triggers"] in run.output
    assert run.states("start_export") == ["failed"]
    assert emulator.state()["exports"] == []
    assert "XCom not found" not in run.output  # no console links to build: nothing read


def test_export_failing_in_the_cloud_fails_wait_for_export_fast(run_dag: Any, start_emulator: Any) -> None:
    emulator = start_emulator(fail_rate=1, progression="immediate")
    run = launch(run_dag, "cvm_export_nightly", emulator, image_ids=["img-centos01"], timeout=600)
    assert run.returncode != 0
    assert run.states("wait_for_export") == ["failed"]
    assert "img-centos01 is in state EXPORTFAILED" in run.output
    assert run.seconds < 60  # the timeout is 600 s
