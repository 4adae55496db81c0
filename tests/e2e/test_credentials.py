"""The example DAG with every credential source, by ``airflow dags test`` against the emulator's STS and
metadata service; and short-lived credentials renewed across a long wait in poke, reschedule and
deferrable mode, never refused for expiry."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_cvm_export.emulator import Emulator
from tests.credentials import ROLE_ARN, SECRET_ID, SECRET_KEY, tke_environment
from tests.e2e.conftest import REGION, DagRun
from tests.e2e.test_dags import BUCKET, IMAGES, MODE_MARKS

pytestmark = pytest.mark.e2e


def source_setup(source: str, emulator: Emulator, tmp_path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The connection and the environment of one credential source pointed at the emulator."""
    extra: dict[str, Any] = {
        "region": REGION,
        "endpoint": emulator.url,
        "sts_endpoint": emulator.url,
        "metadata_endpoint": emulator.url,
    }
    connection: dict[str, Any] = {"login": None, "password": None, "extra": extra}
    env: dict[str, str] = {}
    name, _, role = source.partition("+")
    if name == "connection":
        connection.update(login=SECRET_ID, password=SECRET_KEY)
    elif name == "environment":
        env.update(TENCENTCLOUD_SECRET_ID=SECRET_ID, TENCENTCLOUD_SECRET_KEY=SECRET_KEY)
    elif name == "profile":
        home = tmp_path / "home"
        (home / ".tccli").mkdir(parents=True)
        document = {"type": "default", "secretId": SECRET_ID, "secretKey": SECRET_KEY}
        (home / ".tccli" / "exports.credential").write_text(json.dumps(document))
        env["HOME"] = str(home)
        extra["profile_name"] = "exports"
    elif name == "oidc":
        env.update(tke_environment(tmp_path))
    extra["credential_source"] = "default" if name == "default" else name
    if role:
        extra["role_arn"] = ROLE_ARN
    return connection, env


def run_with(run_dag: Any, emulator: Emulator, source: str, tmp_path: Path, **config: Any) -> DagRun:
    connection, env = source_setup(source, emulator, tmp_path)
    settings = {"image_ids": IMAGES[:1], "bucket_name": BUCKET, "poke_interval": 1, **config}
    env["AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"] = "True"
    return run_dag("cvm_export_adhoc", emulator, conf=settings, env=env, connection=connection)


def refused_for_expiry(emulator: Emulator) -> int:
    return sum(outcomes.get("AuthFailure.TokenFailure", 0) for outcomes in emulator.state()["requests"].values())


@pytest.mark.parametrize(
    ("source", "sts_action"),
    [
        ("connection+role", "AssumeRole"),
        ("environment", None),
        ("profile", None),
        ("cvm_role", None),
        ("cvm_role+role", "AssumeRole"),
        ("oidc", "AssumeRoleWithWebIdentity"),
        ("default", None),  # nothing in the environment or home: the instance's CAM role answers
    ],
)
def test_each_source_exports_and_hands_on_the_cos_paths(
    run_dag: Any, start_emulator: Any, tmp_path: Path, source: str, sts_action: str | None
) -> None:
    emulator = start_emulator(progression="immediate")
    run = run_with(run_dag, emulator, source, tmp_path, mode="poke")
    assert run.returncode == 0, run.output[-5000:]
    (export,) = emulator.state()["exports"]
    assert run.xcoms("wait_for_export") == [export["CosPaths"]]
    requests = emulator.state()["requests"]
    assert requests["ExportImages"] == {"ok": 1}
    if sts_action is not None:
        assert requests[sts_action].get("ok", 0) >= 1
    if source.startswith(("cvm_role", "default")):
        assert requests["Metadata Credentials"].get("ok", 0) >= 1
    assert refused_for_expiry(emulator) == 0


# Seconds: renewed 4 s after issue (a third of the lifetime left). The figure (60 s credentials
# over a 5-minute export) is the same ratio: CVM_CREDENTIAL_LIFETIME=60 CVM_CREDENTIAL_EXPORT_SECONDS=300.
LIFETIME = float(os.environ.get("CVM_CREDENTIAL_LIFETIME", "6"))
EXPORT_SECONDS = float(os.environ.get("CVM_CREDENTIAL_EXPORT_SECONDS", "30"))


@pytest.mark.parametrize("mode", list(MODE_MARKS))
def test_short_lived_credentials_last_a_long_wait(run_dag: Any, start_emulator: Any, tmp_path: Path, mode: str) -> None:
    """A 30-second export on 6-second credentials (a CVM role assuming a role): renewed several times,
    never refused for expiry, at most two STS calls per lifetime."""
    emulator = start_emulator(credential_lifetime=LIFETIME, export_seconds=EXPORT_SECONDS)
    began = time.monotonic()
    run = run_with(run_dag, emulator, "cvm_role+role", tmp_path, mode=mode)
    seconds = time.monotonic() - began
    assert run.returncode == 0, run.output[-5000:]
    assert MODE_MARKS[mode] in run.output
    requests = emulator.state()["requests"]
    assert refused_for_expiry(emulator) == 0, requests
    assume_role = requests["AssumeRole"]["ok"]
    assert assume_role >= EXPORT_SECONDS / LIFETIME, requests  # renewed all along the wait
    # Each process renews at most twice per lifetime (the task processes of a reschedule run are several).
    processes = 1 + (run.output.count("up_for_reschedule") if mode == "reschedule" else 0)
    assert assume_role <= 2 * (seconds / LIFETIME + processes), (assume_role, seconds, requests)
    print(f"{mode}: {assume_role} AssumeRole in {seconds:.0f} s on {LIFETIME:g} s credentials, {processes} process(es)")
