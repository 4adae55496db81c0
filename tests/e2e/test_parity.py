"""Parity of the ways to wait: one table of scenarios, each run once through every mode.

Each scenario is one ``airflow dags test`` run of ``cvm_export_parity`` (tests/e2e/dags): the
sensor's poke, reschedule and deferrable modes and the one-task deferrable operator wait for the
same export side by side, each on its own emulator given the same trouble, and must end the same
way with the same XCom. Faults are injected (and images deleted) once the export of that emulator
has started, so they hit the wait, not the start.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from airflow_cvm_export.emulator import Emulator
from tests.credentials import SECRET_ID, SECRET_KEY, rotate_key
from tests.e2e.conftest import REGION, DagRun

pytestmark = pytest.mark.e2e

TEST_DAGS = Path(__file__).resolve().parent / "dags"
MODES = ("poke", "reschedule", "deferrable", "one_task")
IMAGE = "img-centos02"
# Task that waits, and task that started the export, of each mode.
WAITS = {"poke": "wait_poke", "reschedule": "wait_reschedule", "deferrable": "wait_deferrable", "one_task": "one_task"}
STARTS = {"poke": "start_poke", "reschedule": "start_reschedule", "deferrable": "start_deferrable"}


def inject(faults: dict[str, list[str]]) -> Callable[[Emulator], None]:
    def apply(emulator: Emulator) -> None:
        for action, kinds in faults.items():
            emulator.inject(action, *kinds)

    return apply


def delete_image(emulator: Emulator) -> None:
    """The user deletes the image while it exports."""
    emulator.delete_image(IMAGE)


@dataclass(frozen=True)
class Scenario:
    """Trouble to give every mode and how every mode must end (``success``, or ``failed`` logging ``says``)."""

    emulator: dict[str, Any] = field(default_factory=dict)
    clock_offset: float | None = None  # Airflow's wall clock off by this many seconds
    on_export: Callable[[Emulator], None] | None = None  # done to each emulator once its export started
    timeout: float = 60
    max_outage: float = 3600
    outcome: str = "success"
    says: str = ""
    tries: int = 1  # the try every wait ends in


# Transient trouble the hook rides through: dropped connections, throttling and 5xx, in a burst.
BURST = ["drop_before", "throttle", "http5xx"]
SCENARIOS = {
    "clock_400s_ahead": Scenario(clock_offset=+400),
    "clock_400s_behind": Scenario(clock_offset=-400),
    "dropped_throttled_5xx": Scenario(on_export=inject({"DescribeImages": BURST, "COS HEAD": ["internal", *BURST]})),
    # More failures in a row than the hook's 5 attempts: a failed check, ridden out in the same try.
    "outage_ridden_out": Scenario(on_export=inject({"COS HEAD": ["drop_before"] * 6}), says="check failed"),
    # The same outage with max_outage 0: the try fails, the task's retry reattaches.
    "outage_longer_than_max_outage": Scenario(
        on_export=inject({"COS HEAD": ["drop_before"] * 6}), max_outage=0, says="longer than max_outage", tries=2
    ),
    # A permanent error while checking (the credentials revoked): the task fails at once, no retry.
    "credentials_revoked": Scenario(on_export=rotate_key, outcome="failed", says="AuthFailure"),
    "export_failed_in_cloud": Scenario({"fail_rate": 1}, outcome="failed", says="is in state EXPORTFAILED"),
    "image_deleted": Scenario(
        {"export_seconds": 6}, on_export=delete_image, outcome="failed", says=f"image {IMAGE} no longer exists"
    ),
    "timeout": Scenario({"export_seconds": 3600}, timeout=4, outcome="failed", says="AirflowSensorTimeout"),
}


@pytest.fixture
def emulators() -> Iterator[dict[str, Emulator]]:
    started: dict[str, Emulator] = {}
    yield started
    for emulator in started.values():
        emulator.stop()


def watch(emulators: dict[str, Emulator], action: Callable[[Emulator], None], stop: threading.Event) -> None:
    """Apply ``action`` to each emulator as soon as its export has started."""
    pending = dict(emulators)
    while pending and not stop.wait(0.05):
        for mode, emulator in list(pending.items()):
            if emulator.state()["exports"]:
                action(emulator)
                del pending[mode]


def without_times(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Exported objects without ``last_modified``: each mode's emulator wrote them at its own moment."""
    return [{k: v for k, v in obj.items() if k != "last_modified"} for obj in objects]


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_mode_ends_the_same_way(
    run_dag: Callable[..., DagRun], emulators: dict[str, Emulator], scenario: str
) -> None:
    case = SCENARIOS[scenario]
    env = {
        "AIRFLOW__CORE__DAGS_FOLDER": str(TEST_DAGS),
        "CVM_PARITY_TIMEOUT": str(case.timeout),
        "CVM_PARITY_MAX_OUTAGE": str(case.max_outage),
    }
    conn = {"conn_type": "tencentcloud", "login": SECRET_ID, "password": SECRET_KEY}
    for mode in MODES:
        settings = {"export_seconds": 1.5, **case.emulator}
        emulator = emulators[mode] = Emulator(secret_id=SECRET_ID, secret_key=SECRET_KEY, **settings).start()
        env[f"AIRFLOW_CONN_TC_{mode.upper()}"] = json.dumps(
            {**conn, "extra": {"region": REGION, "endpoint": emulator.url}}
        )
    stop = threading.Event()
    if case.on_export:
        threading.Thread(target=watch, args=(emulators, case.on_export, stop), daemon=True).start()
    try:
        run = run_dag("cvm_export_parity", emulators["poke"], env=env, clock_offset=case.clock_offset)
    finally:
        stop.set()
    expected = case.outcome

    log = run.output[-8000:]
    states = {mode: run.states(WAITS[mode]) for mode in MODES}
    assert states == {mode: [expected] for mode in MODES}, log
    assert {mode: run.tries(WAITS[mode]) for mode in MODES} == dict.fromkeys(MODES, case.tries), log
    if case.says:
        assert run.output.count(case.says) >= len(MODES), log
    for mode, emulator in emulators.items():
        assert len(emulator.state()["exports"]) == 1, f"{mode}: an export was started twice"
    if expected == "failed":
        assert all(run.xcoms(WAITS[mode]) == [] for mode in MODES)
        return

    # The sensor returns the CosPaths; the one-task operator the record, whose cos_paths they are.
    handed_on = {mode: run.xcoms(WAITS[mode]) for mode in MODES if mode != "one_task"}
    handed_on["one_task"] = [record["cos_paths"] for record in run.xcoms("one_task")]
    objects = {mode: [without_times(o) for o in run.xcoms(WAITS[mode], "objects")] for mode in MODES}
    ((cos_paths,),) = {tuple(map(tuple, value)) for value in handed_on.values()}  # the same in every mode
    assert list(cos_paths) == emulators["poke"].state()["exports"][0]["CosPaths"]
    assert all(value == objects["poke"] for value in objects.values()), objects
    records = {mode: run.xcoms(STARTS[mode]) for mode in STARTS} | {"one_task": run.xcoms("one_task")}
    assert records["one_task"] == run.xcoms("one_task", "export")
    shapes = {mode: sorted(record) for mode, (record,) in records.items()}
    assert all(shape == shapes["poke"] for shape in shapes.values()), shapes
    if case.clock_offset is not None:
        assert "re-signing with the server's time" in run.output
