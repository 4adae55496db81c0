"""The production shape, natively: CeleryExecutor, PostgreSQL, Redis, two workers (``make system-test``).

One stack for the module (``tests/system/stack.py``: a throw-away PostgreSQL cluster and Redis, the
emulator, api-server, scheduler, dag-processor, triggerer, two Celery workers). Three runs, one
after the other: the nightly DAG started with the documented ``airflow dags trigger`` (no logical
date; its mode unset, so ``[operators] default_deferrable`` makes it wait in the triggerer), then the
ad-hoc DAG through the REST API without a logical date, once deferrable and once waiting in a worker
(poke). For each run: success, the sensors' XCom is the emulator's CosPaths, one export per image,
tasks ran on both workers, and no ERROR line in any of its task logs.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_cvm_export.emulator.catalog import EXPORTABLE_IMAGE_IDS, WRITABLE_BUCKETS, extra_image_id
from tests.system.stack import (
    ADHOC_UNPAUSE,
    GUIDE_ENV,
    NIGHTLY_TRIGGER,
    NIGHTLY_UNPAUSE,
    Stack,
    celery_stack,
    missing_for_celery,
    worker_runs,
)

pytestmark = pytest.mark.system

BUCKET = WRITABLE_BUCKETS[0]
EXPORT_SECONDS = 8
POKE_INTERVAL = 2
RUN_TIMEOUT = 240
NIGHTLY = {  # the cvm_export_nightly Variable: two batches of two, mode unset
    "image_ids": list(EXPORTABLE_IMAGE_IDS[:4]),
    "bucket_name": BUCKET,
    "poke_interval": POKE_INTERVAL,
    "batch_size": 2,
    "timeout": RUN_TIMEOUT,
}
# The form's batch size is 10: eleven images make two batches, so both workers get a start_export.
ADHOC_IMAGES = {
    "deferrable": [extra_image_id(i) for i in range(1, 12)],
    "poke": [extra_image_id(i) for i in range(12, 23)],
}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    missing = missing_for_celery()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"the Celery system test needs {', '.join(missing)} (.ci/run installs them)")
        pytest.skip(f"needs {', '.join(missing)}; tests/system/test_deferrable.py runs without them")
    with celery_stack(
        export_seconds=EXPORT_SECONDS, emulator_args=["--extra-images", "22"], variable=NIGHTLY
    ) as running:
        for dag_id in ("cvm_export_nightly", "cvm_export_adhoc"):
            running.wait_until_parsed(dag_id)
        yield running


def check_run(stack: Stack, dag_id: str, run_id: str, images: list[str]) -> list[list[str]]:
    """Success, XCom == the emulator's CosPaths, one export per image, both workers, no ERROR log line."""
    state = stack.wait_for_run(dag_id, run_id, RUN_TIMEOUT)
    assert state == "success", stack.logs_tail()
    xcom = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
    records = [entry["value"] for entry in xcoms(stack, f"{xcom}/start_export")]
    waited = [entry["value"] for entry in xcoms(stack, f"{xcom}/wait_for_export")]
    exports = {export["TaskId"]: export for export in stack.emulator_state()["exports"]}
    assert len(records) == len(waited) == 2, (records, waited)
    for record, cos_paths in zip(records, waited, strict=True):
        assert cos_paths == exports[record["task_id"]]["CosPaths"] == record["cos_paths"]
    ours = [exports[record["task_id"]] for record in records]
    assert Counter(i for export in ours for i in export["ImageIds"]) == Counter(images)
    # This run's own prefixes (its date and a fragment of its run id), written by no other export.
    prefixes = {
        re.match(r"^/((?:nightly|adhoc)-\d{8}-[0-9a-f]{8})_img-", path)[1] for batch in waited for path in batch
    }
    assert len(prefixes) == 1, waited
    others = [export for task_id, export in exports.items() if task_id not in {r["task_id"] for r in records}]
    assert not [path for export in others for path in export["CosPaths"] if path.startswith(f"/{min(prefixes)}_")]

    by_worker = {
        name: {task for dag, run, task in ran if (dag, run) == (dag_id, run_id)}
        for name, ran in worker_runs(stack).items()
    }
    assert all(by_worker.values()), f"a worker ran none of {run_id}'s tasks: {by_worker}"

    logs = sorted((stack.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}").rglob("*.log"))
    levels = Counter(level(line) for path in logs for line in path.read_text(errors="replace").splitlines())
    assert levels["info"], f"no structured task log lines for {run_id}: {levels}"  # else the check below proves nothing
    errors = [
        f"{path.relative_to(stack.home)}: {line}"
        for path in logs
        for line in path.read_text(errors="replace").splitlines()
        if level(line) in ("error", "critical")
    ]
    assert not errors, "\n".join(errors)
    return waited


def xcoms(stack: Stack, task_path: str) -> list[dict[str, Any]]:
    """The ``return_value`` XCom of every map index of a mapped task."""
    entries = stack.get(f"{task_path}/xcomEntries", xcom_key="return_value")["xcom_entries"]
    return [
        stack.get(f"{task_path}/xcomEntries/return_value", map_index=entry["map_index"])
        for entry in sorted(entries, key=lambda entry: entry["map_index"])
    ]


def level(line: str) -> str | None:
    """The level of a structured (JSON) task log line."""
    try:
        return str(json.loads(line).get("level", "")).lower()
    except (ValueError, AttributeError):
        return None


def trigger_logs(stack: Stack, dag_id: str, run_id: str) -> list[str]:
    run_logs = stack.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / "task_id=wait_for_export"
    return sorted(str(path) for path in run_logs.rglob("*.log.trigger.*.log"))


def test_stack_sets_the_environment_the_guide_exports(stack: Stack) -> None:
    """docs/deployment.md exports GUIDE_ENV (tests/docs checks that): every name is set here too."""
    worker_only = {"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"}  # set per worker, see stack._start_airflow
    assert GUIDE_ENV - worker_only <= set(stack.env)


def test_nightly_from_the_documented_cli_trigger(stack: Stack) -> None:
    unpause = stack.airflow(NIGHTLY_UNPAUSE)
    assert unpause.returncode == 0, unpause.stderr
    triggered = stack.airflow(NIGHTLY_TRIGGER)
    assert triggered.returncode == 0, triggered.stdout + triggered.stderr
    runs = {run["run_type"]: run for run in stack.get("/dags/cvm_export_nightly/dagRuns")["dag_runs"]}
    # Unpausing also starts the latest scheduled night (catchup=False): two runs of one day.
    assert set(runs) == {"manual", "scheduled"}, runs
    assert runs["manual"]["logical_date"] is None
    for run in runs.values():  # max_active_runs=1: one after the other
        run_id = run["dag_run_id"]
        waited = check_run(stack, "cvm_export_nightly", run_id, NIGHTLY["image_ids"])
        # Mode unset: [operators] default_deferrable (on, as in docker-compose.yaml): waits in the triggerer.
        assert len(trigger_logs(stack, "cvm_export_nightly", run_id)) == 2
        manifest = stack.get(
            f"/dags/cvm_export_nightly/dagRuns/{run_id}/taskInstances/write_manifest/xcomEntries/return_value"
        )
        assert manifest["value"]["cos_paths"] == [path for batch in waited for path in batch]


@pytest.mark.parametrize("mode", ["deferrable", "poke"])
def test_adhoc_from_the_rest_api_without_a_logical_date(stack: Stack, mode: str) -> None:
    unpause = stack.airflow(ADHOC_UNPAUSE)
    assert unpause.returncode == 0, unpause.stderr
    conf = {"image_ids": ADHOC_IMAGES[mode], "bucket_name": BUCKET, "poke_interval": POKE_INTERVAL, "mode": mode}
    response = stack.session.post(
        f"{stack.api}/api/v2/dags/cvm_export_adhoc/dagRuns", json={"logical_date": None, "conf": conf}, timeout=10
    )
    assert response.status_code == 200, response.text
    run_id = response.json()["dag_run_id"]
    check_run(stack, "cvm_export_adhoc", run_id, ADHOC_IMAGES[mode])
    # An explicit mode wins over [operators] default_deferrable (on here): poke never defers.
    assert len(trigger_logs(stack, "cvm_export_adhoc", run_id)) == (2 if mode == "deferrable" else 0)
