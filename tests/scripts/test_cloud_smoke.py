"""``make cloud-smoke`` (scripts/cloud_smoke.py): skipped without credentials; against the emulator with
credentials, every call passes with its RequestId and no export starts (read back from /_emulator/state)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_cvm_export.emulator import Emulator
from airflow_cvm_export.utils.errors import TencentCloudConfigError
from tests.credentials import SECRET_ID, SECRET_KEY

PROJECT = Path(__file__).resolve().parents[2]
SCRIPT = PROJECT / "scripts" / "cloud_smoke.py"
BUCKET = "exports-1250000000"


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(secret_id=SECRET_ID, secret_key=SECRET_KEY) as emu:
        yield emu


def smoke(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the script as ``make cloud-smoke`` does, with only ``env`` of the Tencent/smoke variables."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TENCENTCLOUD_", "CVM_SMOKE_", "AIRFLOW_CONN"))}
    return subprocess.run(
        [sys.executable, str(SCRIPT)], env={**base, **env}, capture_output=True, text=True, timeout=120, cwd=PROJECT
    )


def credentials(emulator: Emulator, **more: str) -> dict[str, str]:
    return {
        "TENCENTCLOUD_SECRET_ID": SECRET_ID,
        "TENCENTCLOUD_SECRET_KEY": SECRET_KEY,
        "CVM_SMOKE_ENDPOINT": emulator.url,
        **more,
    }


def state(emulator: Emulator) -> dict:
    with urllib.request.urlopen(f"{emulator.url}/_emulator/state", timeout=10) as response:
        return json.load(response)


def test_without_credentials_it_skips_and_exits_0() -> None:
    done = smoke({"CVM_SMOKE_BUCKET": BUCKET})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "cloud-smoke skipped: set TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY to run it"
    )


def test_every_read_only_call_passes_with_its_request_id_and_nothing_is_exported(emulator: Emulator) -> None:
    done = smoke(credentials(emulator, CVM_SMOKE_BUCKET=BUCKET))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith(("PASS", "FAIL", "SKIP"))]
    names = ["DescribeRegions", "DescribeImages", "ExportImages DryRun", "COS HEAD bucket"]
    assert [line.split(":")[0] for line in lines] == [f"PASS {name}" for name in names], done.stdout
    assert all("(RequestId -)" not in line and "(RequestId " in line for line in lines), lines
    assert SECRET_KEY not in done.stdout + done.stderr

    after = state(emulator)
    assert after["exports"] == []
    assert after["requests"]["ExportImages"] == {"DryRunOperation": 1}
    assert set(after["requests"]) == {"DescribeRegions", "DescribeImages", "ExportImages", "COS HEAD"}


def test_a_refused_dry_run_fails_with_the_code_and_exit_1(emulator: Emulator) -> None:
    windows = next(i["ImageId"] for i in emulator.catalog()["images"] if "Windows" in i["triggers"])
    done = smoke(credentials(emulator, CVM_SMOKE_BUCKET=BUCKET, CVM_SMOKE_IMAGE_ID=windows))
    assert done.returncode == 1
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("FAIL")]
    assert line.startswith("FAIL ExportImages DryRun: [UnsupportedOperation.WindowsImageExportUnsupported]")
    assert "(RequestId -)" not in line
    assert state(emulator)["exports"] == []


def test_without_a_bucket_the_bucket_calls_are_skipped(emulator: Emulator) -> None:
    done = smoke(credentials(emulator))
    assert done.returncode == 0
    assert "SKIP ExportImages DryRun" in done.stdout and "SKIP COS HEAD bucket" in done.stdout
    assert "ExportImages" not in state(emulator)["requests"]


def test_the_hook_refuses_anything_but_reads_and_dry_runs_before_sending(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.spec_from_file_location("cloud_smoke", SCRIPT)
    assert spec is not None and spec.loader is not None
    cloud_smoke = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cloud_smoke)
    env = credentials(emulator)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AIRFLOW_CONN_CVM_CLOUD_SMOKE", "")  # make_hook sets it; undone after the test

    hook = cloud_smoke.make_hook(env)
    for dry_run in (None, False):
        with pytest.raises(TencentCloudConfigError, match="ExportImages without DryRun is refused"):
            hook.export_images(image_ids=["img-centos01"], bucket_name=BUCKET, dry_run=dry_run)
    with pytest.raises(TencentCloudConfigError, match="CreateImage without DryRun is refused"):
        hook.call("CreateImage", {"InstanceId": "ins-12345678"})
    assert hook.call("DescribeRegions", {})["TotalCount"] > 0
    assert state(emulator)["requests"].keys() == {"DescribeRegions"}


def test_a_missing_bucket_fails_the_dry_run_and_the_head(emulator: Emulator) -> None:
    done = smoke(credentials(emulator, CVM_SMOKE_BUCKET="missing-1250000000"))
    assert done.returncode == 1
    failed = [line.split(":")[0] for line in done.stdout.splitlines() if line.startswith("FAIL")]
    assert failed == ["FAIL ExportImages DryRun", "FAIL COS HEAD bucket"], done.stdout
    assert "cos://missing-1250000000/ does not exist" in done.stdout
