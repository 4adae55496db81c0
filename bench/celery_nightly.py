"""The nightly DAG over 20 images on the Celery stack: wall time from trigger to the manifest's success.

Starts tests/system/stack.py's production shape (PostgreSQL, Redis, api-server, scheduler,
dag-processor, triggerer, two Celery workers with the default 16 slots each) with an emulator whose
exports take ``--export-seconds``. Unpausing ``cvm_export_nightly`` starts the latest scheduled night
(measured from its creation: a cold start of every component); when it is done, ``airflow dags
trigger cvm_export_nightly`` starts a manual run (measured from the command). The mode is unset, so
the waits run in the triggerer (``[operators] default_deferrable`` on, as in docker-compose.yaml).

Target per run: export time + 2 poll intervals + 30 s. Needs Debian's postgresql and redis-server;
not part of ``make bench`` (its 5-minute budget): ``python bench/celery_nightly.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from airflow_cvm_export.emulator.catalog import WRITABLE_BUCKETS, extra_image_id  # noqa: E402
from tests.system.stack import NIGHTLY_TRIGGER, NIGHTLY_UNPAUSE, Stack, celery_stack, missing_for_celery, wait_until  # noqa: E402

DAG_ID = "cvm_export_nightly"


def seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def manifest_end(stack: Stack, run_id: str, timeout: float) -> str:
    """When ``write_manifest`` of the run succeeded (server time)."""
    state = stack.wait_for_run(DAG_ID, run_id, timeout)
    if state != "success":
        raise SystemExit(f"run {run_id} ended {state}:\n{stack.logs_tail()}")
    return stack.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/write_manifest")["end_date"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--export-seconds", type=float, default=60)
    parser.add_argument("--poke-interval", type=int, default=10)
    args = parser.parse_args()
    missing = missing_for_celery()
    if missing:
        raise SystemExit(f"needs {', '.join(missing)}")
    target = args.export_seconds + 2 * args.poke_interval + 30
    variable = {
        "image_ids": [extra_image_id(i) for i in range(1, args.images + 1)],
        "bucket_name": WRITABLE_BUCKETS[0],
        "poke_interval": args.poke_interval,
    }
    began = time.monotonic()
    with celery_stack(
        export_seconds=args.export_seconds,
        emulator_args=["--extra-images", str(args.images), "--max-running-exports", str(args.images)],
        variable=variable,
        worker_concurrency=16,
    ) as stack:
        print(f"stack up in {time.monotonic() - began:.0f} s")
        stack.wait_until_parsed(DAG_ID)
        if stack.airflow(NIGHTLY_UNPAUSE).returncode:
            raise SystemExit("airflow dags unpause failed")
        (scheduled,) = wait_until("the scheduled run", lambda: stack.get(f"/dags/{DAG_ID}/dagRuns")["dag_runs"], 60)
        cold = seconds(scheduled["queued_at"], manifest_end(stack, scheduled["dag_run_id"], 600))
        triggered_at = datetime.now(UTC).isoformat()
        started = time.monotonic()
        if stack.airflow(NIGHTLY_TRIGGER).returncode:
            raise SystemExit(f"{NIGHTLY_TRIGGER} failed")
        (manual,) = [run for run in stack.get(f"/dags/{DAG_ID}/dagRuns")["dag_runs"] if run["run_type"] == "manual"]
        warm = seconds(triggered_at, manifest_end(stack, manual["dag_run_id"], 600))
        wall = time.monotonic() - started
        exports = stack.emulator_state()["exports"]
    print(
        f"{args.images} images, {len(exports)} ExportImages calls, export time {args.export_seconds:g} s, "
        f"poll interval {args.poke_interval} s, target {target:g} s"
    )
    ok = True
    for name, value in (("scheduled run (cold, from its creation)", cold), ("`airflow dags trigger` run", warm)):
        print(
            f"{name}: trigger to manifest success {value:.1f} s = export time + {value - args.export_seconds:.1f} s "
            f"(ratio to target {value / target:.2f})"
        )
        ok = ok and value <= target
    print(f"manual run, wall clock around the CLI: {wall:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
