"""The production shape, natively: CeleryExecutor, PostgreSQL, Redis, two workers (``make system-test``).

One stack for the module (``tests/system/stack.py``: a throw-away PostgreSQL cluster and Redis, the
emulator, api-server, scheduler, dag-processor, triggerer, two Celery workers), every process signing
with temporary credentials (the instance's CAM role assuming a role, 20-second lifetime). Three runs, one
after the other: the nightly DAG started with the documented ``airflow dags trigger`` (no logical
date; its mode unset, so ``[operators] default_deferrable`` makes it wait in the triggerer), then the
ad-hoc DAG through the REST API without a logical date, once deferrable and once waiting in a worker
(poke). For each run: success, the sensors' XCom is the emulator's CosPaths, one export per image,
tasks ran on both workers, and no ERROR line in any of its task logs. Then a second night of the
same images once the scheduler has activated their assets: no new asset, and not one WARNING or
ERROR line in the api-server's or the scheduler's log while it runs. Last, what the asset URIs are
designed around, shown on this stack with ``tests/system/dags/asset_race.py``: two tasks that create
the same new asset at the same moment, and Airflow's api-server fails one of them.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_cvm_export.emulator.catalog import EXPORTABLE_IMAGE_IDS, WRITABLE_BUCKETS, extra_image_id
from tests.system.stack import (
    ADHOC_UNPAUSE,
    GUIDE_ENV,
    NIGHTLY_TRIGGER,
    NIGHTLY_UNPAUSE,
    ROOT,
    Stack,
    celery_stack,
    missing_for_celery,
    require,
    wait_until,
    worker_runs,
)

pytestmark = pytest.mark.system

BUCKET = WRITABLE_BUCKETS[0]
EXPORT_SECONDS = 8
POKE_INTERVAL = 2
RUN_TIMEOUT = 240
# Every process signs with the instance's CAM role assuming a role (docs/credentials.md), credentials
# living 20 s: renewed several times along the runs.
CREDENTIAL_LIFETIME = 20
NIGHTLY: dict[str, Any] = {  # the cvm_export_nightly Variable: two batches of two, mode unset
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
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require("the Celery system test", missing_for_celery(), "; tests/system/test_deferrable.py runs without them")
    dags = tmp_path_factory.mktemp("dags")  # the example DAGs and the asset race DAG
    for path in [*(ROOT / "dags").glob("*.py"), Path(__file__).parent / "dags" / "asset_race.py"]:
        shutil.copy(path, dags / path.name)
    emulator_args = ["--extra-images", "22", "--credential-lifetime", str(CREDENTIAL_LIFETIME)]
    with celery_stack(
        export_seconds=EXPORT_SECONDS,
        emulator_args=emulator_args,
        variable=NIGHTLY,
        dags_folder=dags,
        role_credentials=True,
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
    prefixes: set[str] = set()
    for path in (path for batch in waited for path in batch):
        found = re.match(r"^/((?:nightly|adhoc)-\d{8}-[0-9a-f]{8})_img-", path)
        assert found, path
        prefixes.add(found[1])
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
    conf: dict[str, Any] = {
        "image_ids": ADHOC_IMAGES[mode],
        "bucket_name": BUCKET,
        "poke_interval": POKE_INTERVAL,
        "mode": mode,
    }
    response = stack.session.post(
        f"{stack.api}/api/v2/dags/cvm_export_adhoc/dagRuns", json={"logical_date": None, "conf": conf}, timeout=10
    )
    assert response.status_code == 200, response.text
    run_id = response.json()["dag_run_id"]
    check_run(stack, "cvm_export_adhoc", run_id, ADHOC_IMAGES[mode])
    # An explicit mode wins over [operators] default_deferrable (on here): poke never defers.
    assert len(trigger_logs(stack, "cvm_export_adhoc", run_id)) == (2 if mode == "deferrable" else 0)


def test_a_second_night_logs_no_warning_in_the_api_server_or_scheduler(stack: Stack) -> None:
    # A first export of an image creates its asset cos://<bucket>/<ImageId>?dag_id=<dag> through the
    # alias, and Airflow warns that the new asset is not found, then not active yet (the scheduler
    # activates it on its next [scheduler] parsing_cleanup_interval pass). Those warnings are in the
    # log already: the check sees them.
    nightly_assets = {f"cos://{BUCKET}/{image_id}?dag_id=cvm_export_nightly" for image_id in NIGHTLY["image_ids"]}
    first_nights = [line for line in server_lines(stack) if server_level(line) == "warning"]
    for warning in ("not found; cannot create asset event", "Emitting event for inactive AssetModel"):
        warned = {uri for uri in nightly_assets for line in first_nights if uri in line and warning in line}
        assert warned == nightly_assets, (warning, first_nights)
    wait_until("the nightly's assets to be active", lambda: nightly_assets <= asset_uris(stack, only_active=True), 90)
    assets_before = asset_uris(stack, only_active=False)
    runs_before = {run["dag_run_id"] for run in stack.get("/dags/cvm_export_nightly/dagRuns")["dag_runs"]}
    offsets = {name: len(stack.log(name)) for name in SERVERS}

    triggered = stack.airflow(NIGHTLY_TRIGGER)
    assert triggered.returncode == 0, triggered.stdout + triggered.stderr
    (run_id,) = {run["dag_run_id"] for run in stack.get("/dags/cvm_export_nightly/dagRuns")["dag_runs"]} - runs_before
    check_run(stack, "cvm_export_nightly", run_id, NIGHTLY["image_ids"])

    assert asset_uris(stack, only_active=False) == assets_before  # the same assets as the first nights
    lines = server_lines(stack, offsets)
    assert sum(server_level(line) == "info" for line in lines), lines  # else the check below proves nothing
    flagged = [line for line in lines if server_level(line) in ("warning", "error", "critical")]
    assert not flagged, "\n".join(flagged)


SERVERS = ("api-server", "scheduler")


def server_lines(stack: Stack, offsets: dict[str, int] | None = None) -> list[str]:
    """The api-server's and the scheduler's log lines, from ``offsets`` (characters) on."""
    return [
        f"{name}: {line}" for name in SERVERS for line in stack.log(name)[(offsets or {}).get(name, 0) :].splitlines()
    ]


def server_level(line: str) -> str | None:
    """The level of a component's log line (structlog's console format: ``<time> [warning  ] ...``)."""
    found = re.search(r" \[(debug|info|warning|error|critical) *\] ", line)
    return found[1] if found else None


def run_state(stack: Stack, run_id: str) -> str:
    return stack.get(f"/dags/asset_race/dagRuns/{run_id}")["state"]


def asset_uris(stack: Stack, *, only_active: bool, pattern: str = BUCKET) -> set[str]:
    """The URIs of the assets in this bucket (``only_active``: those the scheduler has activated)."""
    found = stack.get("/assets", uri_pattern=pattern, only_active=only_active, limit=1000)["assets"]
    return {asset["uri"] for asset in found}


RACE_PAIRS = 3


def test_two_tasks_creating_one_new_asset_at_once_fail_one_of_them(stack: Stack, tmp_path: Path) -> None:
    """Airflow 3.3.2's behaviour, not this provider's: why the asset URIs name the image and the DAG.

    Both map indexes of an ``asset_race`` run emit through an alias the same asset, new, within a
    millisecond or so. The api-server (``TaskInstance.register_asset_changes_in_db``) finds no such
    asset in either request and inserts it in both; the second insert waits for the first
    transaction and hits ``idx_asset_name_uri_unique``. ``ti_update_state`` then sets that task
    ``failed``, whatever its retries (two here), though the task itself succeeded.
    """
    unpause = stack.airflow("airflow dags unpause asset_race")
    assert unpause.returncode == 0, unpause.stderr
    collided = []
    for pair in range(RACE_PAIRS):
        barrier = tmp_path / f"barrier{pair}"
        barrier.mkdir()
        uri = f"cos://race-1250000000/img-race{pair:02d}?dag_id=asset_race"
        offset = len(stack.log("api-server"))
        conf = {"uri": uri, "barrier": str(barrier)}
        response = stack.session.post(
            f"{stack.api}/api/v2/dags/asset_race/dagRuns", json={"logical_date": None, "conf": conf}, timeout=10
        )
        assert response.status_code == 200, response.text
        run_id = response.json()["dag_run_id"]
        stack.wait_for_run("asset_race", run_id, RUN_TIMEOUT)
        tis = stack.get(f"/dags/asset_race/dagRuns/{run_id}/taskInstances")["task_instances"]
        outcome = sorted((ti["state"], ti["try_number"]) for ti in tis)
        log = stack.log("api-server")[offset:]
        if outcome == [("success", 1), ("success", 1)]:  # the requests did not overlap this time
            collided.append(False)
            continue
        assert outcome == [("failed", 1), ("success", 1)], (outcome, log[-3000:])
        assert "Error updating Task Instance state. Setting the task to failed." in log, log[-3000:]
        assert 'duplicate key value violates unique constraint "idx_asset_name_uri_unique"' in log, log[-3000:]
        assert asset_uris(stack, only_active=False, pattern="race-1250000000") >= {uri}  # the winner's asset
        if not any(collided):  # cleared, the failed task runs again and succeeds: the asset is there now
            failed = [ti["task_id"] for ti in tis if ti["state"] == "failed"]
            clear = {"dag_run_id": run_id, "task_ids": failed, "only_failed": True, "dry_run": False}
            cleared = stack.session.post(f"{stack.api}/api/v2/dags/asset_race/clearTaskInstances", json=clear)
            assert cleared.status_code == 200, cleared.text

            def restarted(run_id: str = run_id) -> bool:
                return run_state(stack, run_id) != "failed"

            wait_until("the cleared run to start again", restarted, 60)
            assert stack.wait_for_run("asset_race", run_id, RUN_TIMEOUT) == "success"
        collided.append(True)
    assert any(collided), f"no pair of the {RACE_PAIRS} overlapped: the test showed nothing"


def test_temporary_credentials_were_renewed_and_never_refused(stack: Stack) -> None:
    """After the runs above (last in the module): the workers and the triggerer took the CAM role's
    credentials, assumed the role and renewed it, and not one request was refused for an expired token."""
    requests = stack.emulator_state()["requests"]
    assert requests["Metadata Credentials"].get("ok", 0) >= 1, requests
    assert requests["AssumeRole"].get("ok", 0) >= 2, requests
    refused = {action: outcomes for action, outcomes in requests.items() if "AuthFailure.TokenFailure" in outcomes}
    assert refused == {}, refused
