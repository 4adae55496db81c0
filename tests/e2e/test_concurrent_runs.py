"""Right files, no lost or duplicate export: someone else's export of the same image, a full export
queue, re-exports of the same keys, clears with and without the files, end to end with ``airflow dags
test`` against the emulator. Exports per image come from ``/_emulator/state``, what each run handed on
from its XComs."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tencentcloud.common import credential
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.cvm.v20170312 import cvm_client, models

from airflow_cvm_export.emulator import Emulator
from airflow_cvm_export.utils.validation import parse_time
from airflow_cvm_export.version_compat import AIRFLOW_V_3_3_PLUS
from tests.credentials import SECRET_ID, SECRET_KEY
from tests.e2e.conftest import AIRFLOW, PROJECT, REGION, DagRun, airflow_env, query_while_running

pytestmark = pytest.mark.e2e

TEST_DAGS = str(Path(__file__).resolve().parent / "dags")
BUCKET = "exports-1250000000"
IMAGE = "img-centos01"  # one system disk


def exports_per_image(emulator: Emulator) -> Counter[str]:
    return Counter(image for export in emulator.state()["exports"] for image in export["ImageIds"])


def someone_elses_export(emulator: Emulator, image_ids: list[str], prefix: str) -> dict[str, Any]:
    """An export nobody in this DAG started (another team, the console), sent with the official SDK."""
    profile = ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=emulator.url.removeprefix("http://")))
    client = cvm_client.CvmClient(credential.Credential(SECRET_ID, SECRET_KEY), REGION, profile)
    request = models.ExportImagesRequest()
    request.from_json_string(
        json.dumps({"BucketName": BUCKET, "ImageIds": image_ids, "FileNamePrefixList": [prefix] * len(image_ids)})
    )
    return json.loads(client.ExportImages(request).to_json_string())


BUSY = "InvalidParameterValue.InvalidImageState"
QUEUE_FULL = "LimitExceeded.ExportImageTaskLimitExceeded"


def refusals(emulator: Emulator, code: str) -> int:
    """ExportImages requests (sends and DryRuns) refused with ``code`` so far."""
    return emulator.state()["requests"].get("ExportImages", {}).get(code, 0)


def busy_until(emulator: Emulator, image_ids: list[str], prefix: str, until: Callable[[], bool]) -> threading.Thread:
    """Start :func:`someone_elses_export` as soon as the run's start task reads its images, keep it
    running (``manual`` progression) until ``until()`` holds, then finish it; the run's own exports
    finish as soon as they are accepted (``immediate``).

    The run's baseline listing is delayed (1 s), so the other export is running by the time the run
    sends ExportImages, however long Airflow took to get there.
    """
    emulator.progression = "manual"
    emulator.add_fault(action="COS LIST", count=1, latency=1.0)

    def watch() -> None:
        while "DescribeImages" not in emulator.state()["requests"]:
            time.sleep(0.02)
        someone_elses_export(emulator, image_ids, prefix)
        emulator.progression = "immediate"
        while not until():
            time.sleep(0.05)
        emulator.finish()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def up_for_retry(airflow_home: Path, task_id: str) -> bool:
    """Whether the first try of ``task_id`` in the latest run of ``cvm_export_runs`` is over, failed
    and up for retry (read from the metadata DB while the run goes on)."""
    row = query_while_running(
        airflow_home / "airflow.db",
        "SELECT ti.state, ti.try_number FROM task_instance ti JOIN dag_run r "
        "ON r.dag_id = ti.dag_id AND r.run_id = ti.run_id "
        "WHERE ti.dag_id = 'cvm_export_runs' AND ti.task_id = ? ORDER BY r.id DESC LIMIT 1",
        task_id,
    )
    return row is not None and (row[0] == "up_for_retry" or row[1] >= 2)


def run(run_dag: Callable[..., DagRun], emulator: Emulator, conf: dict[str, Any] | None = None, **env: str) -> DagRun:
    return run_dag("cvm_export_runs", emulator, conf=conf, env={"AIRFLOW__CORE__DAGS_FOLDER": TEST_DAGS, **env})


def handed_on(run: DagRun) -> list[dict[str, Any]]:
    (objects,) = run.xcoms("wait_for_export", key="objects")
    return objects


def test_busy_image_waits_gives_up_with_a_clear_message_and_the_retry_exports_its_own_files(
    run_dag: Callable[..., DagRun], start_emulator: Callable[..., Emulator], airflow_home: Path
) -> None:
    """Run B's image is busy with someone else's RAW export under another prefix. B (QCOW2) waits with
    back-off, gives up at start_timeout naming the image and the reason, and its retry, once the
    image is free, exports: B hands on only the QCOW2 files it wrote, never the other export's."""
    emulator = start_emulator()
    # Someone else's export ends once B's first try has given up (its start_export is up for retry).
    other = busy_until(emulator, [IMAGE], "team-a", lambda: up_for_retry(airflow_home, "start_export"))
    conf = {"image_ids": [IMAGE], "file_name_prefixes": ["team-b"], "export_format": "QCOW2"}
    b = run(run_dag, emulator, conf, CVM_RUNS_START_TIMEOUT="4", CVM_RUNS_RETRIES="1", CVM_RUNS_RETRY_DELAY="1")
    other.join(1)

    assert b.returncode == 0, b.output[-5000:]
    assert "Cannot start exporting img-centos01 yet ([InvalidParameterValue.InvalidImageState]" in b.output
    assert (
        "could not start exporting img-centos01 to exports-1250000000 within start_timeout (4 s): "
        "[InvalidParameterValue.InvalidImageState]" in b.output
    )
    assert exports_per_image(emulator) == {IMAGE: 2}  # someone else's and B's own, no third
    foreign, mine = emulator.state()["exports"]
    assert foreign["CosPaths"] == ["/team-a_img-centos01_system_snap-a90ff55d.raw"]
    assert [obj["cos_path"] for obj in handed_on(b)] == mine["CosPaths"]
    assert all(obj["key"].startswith("team-b_") and obj["key"].endswith(".qcow2") for obj in handed_on(b))
    assert b.tries("start_export") == 2  # the first try gave up, the retry exported


def test_full_export_queue_waits_in_the_same_try_then_exports(
    run_dag: Callable[..., DagRun], start_emulator: Callable[..., Emulator]
) -> None:
    emulator = start_emulator(max_running_exports=1)
    # Someone else's export takes the queue's only place until B was refused twice.
    other = busy_until(emulator, ["img-centos02"], "team-a", lambda: refusals(emulator, QUEUE_FULL) >= 2)
    b = run(run_dag, emulator)
    other.join(1)

    assert b.returncode == 0, b.output[-5000:]
    assert "[LimitExceeded.ExportImageTaskLimitExceeded]" in b.output
    assert exports_per_image(emulator) == {"img-centos02": 1, IMAGE: 1}
    assert [obj["cos_path"] for obj in handed_on(b)] == emulator.state()["exports"][1]["CosPaths"]
    assert b.tries("start_export") == 1  # waited in the same try


def test_deferrable_start_waits_for_a_busy_image_in_the_triggerer_then_exports_its_own_files(
    run_dag: Callable[..., DagRun], start_emulator: Callable[..., Emulator]
) -> None:
    """deferrable=True, the image busy with someone else's export: the start defers to
    ExportStartTrigger (run in line by ``airflow dags test``, as the triggerer would), resumes once the
    image is free and exports in the same try; the run hands on only its own files."""
    emulator = start_emulator()
    # The refused send, then at least two DryRuns of the trigger, before someone else's export ends.
    other = busy_until(emulator, [IMAGE], "team-a", lambda: refusals(emulator, BUSY) >= 3)
    b = run(run_dag, emulator, CVM_RUNS_DEFERRABLE="1", CVM_RUNS_START_TIMEOUT="60")
    other.join(1)

    assert b.returncode == 0, b.output[-5000:]
    assert "Cannot start exporting img-centos01 yet ([InvalidParameterValue.InvalidImageState]" in b.output
    assert "waiting in the triggerer" in b.output
    assert "[DAG TEST] running trigger in line" in b.output
    assert exports_per_image(emulator) == {IMAGE: 2}  # someone else's and the run's own
    foreign, mine = emulator.state()["exports"]
    assert foreign["CosPaths"] == ["/team-a_img-centos01_system_snap-a90ff55d.raw"]
    assert [obj["cos_path"] for obj in handed_on(b)] == mine["CosPaths"]
    assert all(obj["key"].startswith("runs_") for obj in handed_on(b))
    assert b.tries("start_export") == 1  # resumed from the trigger, no retry


def finished_after_its_first_check(emulator: Emulator) -> threading.Thread:
    """Finish the next export once a wait has checked it (a COS HEAD after it was accepted)."""

    def heads() -> int:
        return sum(emulator.state()["requests"].get("COS HEAD", {}).values())

    def watch() -> None:
        while not any(export["status"] == "running" for export in emulator.state()["exports"]):
            time.sleep(0.02)
        before = heads()
        while heads() == before:
            time.sleep(0.02)
        emulator.finish()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_re_export_of_the_same_keys_hands_on_the_new_files_not_the_old(
    run_dag: Callable[..., DagRun], start_emulator: Callable[..., Emulator]
) -> None:
    """A second run right after the first writes the same keys: its first check must not find the
    first run's objects "present" (they were written seconds before it started)."""
    emulator = start_emulator(progression="immediate")
    first = run(run_dag, emulator)
    emulator.progression = "manual"
    checked = finished_after_its_first_check(emulator)
    second = run(run_dag, emulator)
    checked.join(1)

    assert first.returncode == 0 and second.returncode == 0, second.output[-5000:]
    assert exports_per_image(emulator) == {IMAGE: 2}
    old, new = handed_on(first), handed_on(second)
    assert [obj["key"] for obj in old] == [obj["key"] for obj in new]
    assert [obj["etag"] for obj in old] != [obj["etag"] for obj in new]  # the second export's own objects
    assert "1 of 1 exported objects present" not in second.output.split("0 of 1 exported objects present")[0]


@pytest.mark.parametrize("cos_clock", [+120, -120], ids=["cos_ahead", "cos_behind"])
def test_without_a_baseline_files_are_judged_by_cos_clock_from_its_date_header(
    run_dag: Callable[..., DagRun], start_emulator: Callable[..., Emulator], cos_clock: int
) -> None:
    """COS's clock 2 minutes off this machine's and the API's; the sensor gets the record's fields one
    by one (no baseline: only ``started_at``). COS ahead: a file an earlier export left under the run's
    key, stamped "after" this machine's start, is not handed on. COS behind: the run's own files,
    stamped "before" this machine's start, are. ``started_at`` is by COS's clock (its ``Date`` header)."""
    emulator = start_emulator(export_seconds=4, cos_clock_offset=cos_clock)
    key = "runs_img-centos01_system_snap-a90ff55d.raw"
    earlier = emulator.put_object(BUCKET, key, b"an earlier export's file")
    began = time.time()
    b = run(run_dag, emulator, CVM_RUNS_EXPLICIT="1")

    assert b.returncode == 0, b.output[-5000:]
    assert exports_per_image(emulator) == {IMAGE: 1}
    (obj,) = handed_on(b)
    assert obj["key"] == key and obj["etag"] != earlier.etag.strip('"')  # the run's own file
    (record,) = b.xcoms("start_export")
    started = parse_time(record["started_at"]).timestamp() - cos_clock  # by this machine's clock
    assert began - 2 < started < began + b.seconds


def clear(airflow_home: Path, logical_date: str) -> None:
    env = {**airflow_env(airflow_home), "AIRFLOW__CORE__DAGS_FOLDER": TEST_DAGS}
    cleared = subprocess.run(
        [AIRFLOW, "tasks", "clear", "cvm_export_runs", "-y", "-s", logical_date, "-e", logical_date],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT,
    )
    assert cleared.returncode == 0, cleared.stdout + cleared.stderr


def test_clear_hands_on_files_that_are_there_and_exports_again_when_they_were_removed(
    run_dag: Callable[..., DagRun], start_emulator: Callable[..., Emulator], airflow_home: Path
) -> None:
    """On 3.3+ from the export record in the task state store (ResumableJobMixin). Before 3.3 there is
    no record and a clear starts the DAG run afresh (its start is what a retry counts from), so the
    cleared task exports again: the documented fallback (docs/failures.md), asserted here so it cannot become a
    hand-on of older files unnoticed."""
    emulator = start_emulator(progression="immediate")
    when = "2026-03-01T00:00:00+00:00"
    env = {"AIRFLOW__CORE__DAGS_FOLDER": TEST_DAGS}
    first = run_dag("cvm_export_runs", emulator, env=env, logical_date=when)
    assert first.returncode == 0, first.output[-5000:]
    first_objects = handed_on(first)  # the same DAG run: its XComs are replaced by each clear

    clear(airflow_home, when)  # files still there: handed on again, no new export (3.3+)
    kept = run_dag("cvm_export_runs", emulator, env=env, logical_date=when)
    assert kept.returncode == 0, kept.output[-5000:]
    if not AIRFLOW_V_3_3_PLUS:
        assert exports_per_image(emulator) == {IMAGE: 2}
        assert [obj["cos_path"] for obj in handed_on(kept)] == emulator.state()["exports"][1]["CosPaths"]
        assert [obj["etag"] for obj in handed_on(kept)] != [obj["etag"] for obj in first_objects]
        return
    assert "Job already completed successfully" in kept.output
    assert exports_per_image(emulator) == {IMAGE: 1}
    assert handed_on(kept) == first_objects

    for obj in first_objects:  # a user cleans up the bucket
        assert emulator.delete_object(BUCKET, obj["key"])
    clear(airflow_home, when)  # files gone: the cleared task exports again instead of waiting forever
    again = run_dag("cvm_export_runs", emulator, env=env, logical_date=when)
    assert again.returncode == 0, again.output[-5000:]
    assert "the files were removed; exporting again" in again.output
    assert exports_per_image(emulator) == {IMAGE: 2}
    assert [obj["cos_path"] for obj in handed_on(again)] == emulator.state()["exports"][1]["CosPaths"]
    assert [obj["etag"] for obj in handed_on(again)] != [obj["etag"] for obj in first_objects]
