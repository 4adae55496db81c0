"""Both example DAGs end to end under seeded faults, and with a recognisable secret key and token."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_cvm_export.emulator import Emulator
from airflow_cvm_export.version_compat import AIRFLOW_V_3_3_PLUS
from tests.e2e.conftest import REGION, DagRun, finished_once_waiting

pytestmark = pytest.mark.reliability

IMAGES = ["img-centos01", "img-centos02", "img-ubuntu01"]
CONFIG = {"image_ids": IMAGES, "bucket_name": "exports-1250000000", "poke_interval": 1, "batch_size": 2}
# The connection's timeouts and back-off for the emulator on loopback (its slowest fault answers within
# 3 s; quick_backoff scales the back-offs further): an ExportImages whose answer was lost and that
# started nothing is sent again once the hook's longest send, 5 x (1 + 5) + 1 s, and 5 s have passed,
# not 194 + 5 s (docs/faults.md, "A send held in flight"). The hook's retries are as many as shipped.
QUICK_SENDS = {"connect_timeout": 1, "read_timeout": 5, "retry_delay": 0.05}


def launch(run_dag: Callable[..., DagRun], dag_id: str, emulator: Emulator, **kwargs: Any) -> DagRun:
    if dag_id == "cvm_export_nightly":
        return run_dag(dag_id, emulator, variable={**CONFIG, "timeout": 120}, **kwargs)
    conf = {key: value for key, value in CONFIG.items() if key != "batch_size"}
    return run_dag(dag_id, emulator, conf=conf, **kwargs)


def assert_one_export_per_image(run: DagRun, emulator: Emulator) -> None:
    assert run.returncode == 0, run.output[-5000:]
    exports = emulator.state()["exports"]
    assert Counter(i for export in exports for i in export["ImageIds"]) == Counter(IMAGES)
    waited = sorted(path for batch in run.xcoms("wait_for_export") for path in batch)
    assert waited == sorted(path for export in exports for path in export["CosPaths"])


@pytest.mark.parametrize(
    ("dag_id", "deferrable"), [("cvm_export_nightly", False), ("cvm_export_adhoc", True)], ids=["nightly", "adhoc"]
)
def test_dags_succeed_under_30_percent_faults_with_one_export_per_image_and_no_task_retry(
    run_dag: Callable[..., DagRun], dag_id: str, deferrable: bool
) -> None:
    """The shipped DAGs as users copy them (their own retries with back-off): transient faults and a
    lost ExportImages answer are resolved inside the first try of every task, so no task instance
    ever needed its retries (try_number 1 in the metadata DB), and each image is exported once."""
    with Emulator(
        secret_id="AKIDTESTSECRETID",
        secret_key="test-secret-key-never-logged",
        export_seconds=2,
        fault_rate=0.3,
        seed=6,
    ) as emulator:
        emulator.inject("ExportImages", "drop_after")  # on top of the random faults: one lost answer for sure
        connection = {"extra": {"region": REGION, "endpoint": emulator.url, **QUICK_SENDS}}
        env = {"AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": str(deferrable)}
        run = launch(run_dag, dag_id, emulator, env=env, connection=connection)
        assert_one_export_per_image(run, emulator)
        tries = run.all_tries()
        assert {task_id for task_id, _ in tries} >= {"start_export", "wait_for_export"}
        assert [key for key, try_number in tries.items() if try_number != 1] == []  # no task needed a retry
        faults: Counter[str] = Counter()
        for outcomes in emulator.state()["requests"].values():
            faults.update({kind: n for kind, n in outcomes.items() if kind.startswith("fault:")})
        assert faults.total() >= 3 and len(faults) >= 2, faults  # faults of several kinds were really injected
        assert "finding out without sending it again" in run.output  # the planned lost answer was resolved


SECRET_KEY = "RELIABILITY-SECRET-KEY-5f0c1e"
TOKEN = "RELIABILITY-SESSION-TOKEN-9a7d3b"
# Anything that would show a credential or a signature.
FORBIDDEN = (SECRET_KEY, TOKEN, "Authorization", "TC3-HMAC-SHA256", "q-signature")


def test_no_secret_or_signature_reaches_logs_xcoms_rendered_fields_triggers_or_errors(
    run_dag: Callable[..., DagRun], airflow_home: Path
) -> None:
    # Exports finish when accepted: what is scanned is what the runs wrote, not how long they waited;
    # but the deferrable run's exports run until a trigger checked, so it really deferred (and wrote
    # its triggers' kwargs and the sensors' next_kwargs to the metadata DB).
    with Emulator(secret_id="AKIDSECRETSTEST", secret_key=SECRET_KEY, token=TOKEN, progression="immediate") as emulator:
        connection: dict[str, Any] = {
            "login": "AKIDSECRETSTEST",
            "password": SECRET_KEY,
            "extra": {"region": "ap-guangzhou", "endpoint": emulator.url, "token": TOKEN},
        }
        runs = [launch(run_dag, "cvm_export_nightly", emulator, connection=connection)]
        emulator.progression = "manual"
        with finished_once_waiting(emulator, airflow_home, "cvm_export_adhoc", "deferrable"):
            deferrable = {"AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True"}
            runs.append(launch(run_dag, "cvm_export_adhoc", emulator, connection=connection, env=deferrable))
        emulator.progression = "immediate"
        # And a failing run: the error message of a rejected request must not carry them either.
        bad = {**connection, "extra": {**connection["extra"], "token": TOKEN + "-expired"}}
        failed = run_dag(
            "cvm_export_adhoc",
            emulator,
            conf={"image_ids": IMAGES[:1], "bucket_name": CONFIG["bucket_name"]},
            connection=bad,
        )
    for run in runs:
        assert run.returncode == 0, run.output[-5000:]
    assert failed.returncode != 0 and "AuthFailure.TokenFailure" in failed.output
    places = {f"output of {run.dag_id}": run.output for run in [*runs, failed]}
    places.update(
        {
            f"log file {path}": path.read_text(errors="replace")
            for path in (airflow_home / "logs").rglob("*")
            if path.is_file()
        }
    )
    with sqlite3.connect(airflow_home / "airflow.db") as db:
        for table, column in (
            ("xcom", "value"),
            ("rendered_task_instance_fields", "rendered_fields"),
            ("trigger", "kwargs"),
            ("task_instance", "next_kwargs"),
            *([("task_state_store", "value")] if AIRFLOW_V_3_3_PLUS else []),  # the table is 3.3+
            ("log", "extra"),
        ):
            rows = db.execute(f"SELECT {column} FROM {table}").fetchall()  # noqa: S608 - fixed names
            places[f"table {table}"] = "\n".join(str(value) for (value,) in rows)
    # The scan saw real data, the deferred run's triggers included.
    assert places["table rendered_task_instance_fields"] and places["table xcom"] and places["table trigger"]
    leaks = [(where, word) for where, text in places.items() for word in FORBIDDEN if word in text]
    assert leaks == []
