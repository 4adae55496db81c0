"""``make demo``: run the nightly export DAG end to end against the emulator, on this machine only.

Migrates the SQLite Airflow home (``AIRFLOW_HOME``, ``.airflow`` under the project by default),
starts the emulator on a free port, points ``tencentcloud_default`` at it and sets the Variable
``cvm_export_config`` (both through ``AIRFLOW_CONN_*``/``AIRFLOW_VAR_*`` for the run only), runs
``airflow dags test cvm_export_nightly`` and prints the CosPaths the downstream ``write_manifest``
task received, checked against the exports the emulator recorded. Exits non-zero on any failure.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_HOME = Path(os.environ.get("AIRFLOW_HOME", ROOT / ".airflow"))
DAGS_FOLDER = os.environ.get("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
DAG_ID = "cvm_export_nightly"
SECRET_ID = "AKIDDEMO"
SECRET_KEY = "demo-secret-key"
REGION = "ap-guangzhou"
BATCH_SIZE = 3  # five catalog images: two mapped batches


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def airflow_env() -> dict[str, str]:
    return {
        **os.environ,
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": DAGS_FOLDER,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }


def start_emulator() -> tuple[subprocess.Popen[str], str]:
    """The emulator CLI on a free port; returns the process and its base URL (its first stdout line)."""
    command = [sys.executable, "-m", "airflow_cvm_export.emulator", "--host", "127.0.0.1", "--port", "0"]
    command += ["--secret-id", SECRET_ID, "--secret-key", SECRET_KEY, "--export-seconds", "3", "--region", REGION]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    url = process.stdout.readline().strip() if process.stdout else ""
    if not url.startswith("http://"):
        process.kill()
        raise RuntimeError(f"the emulator did not start (exit code {process.poll()})")
    return process, url


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.load(answer)


def demo_config(catalog: dict[str, Any]) -> dict[str, Any]:
    """The Variable: every exportable image and the first writable bucket of the emulator's catalog."""
    images = [i["ImageId"] for i in catalog["images"] if i["triggers"] == "exportable" and i["Region"] == REGION]
    bucket = next(b["BucketName"] for b in catalog["buckets"] if b["triggers"] == "writable")
    return {
        "image_ids": images,
        "bucket_name": bucket,
        "region": REGION,
        "poke_interval": 2,
        "timeout": 300,
        "batch_size": BATCH_SIZE,
    }


def manifest_xcom() -> dict[str, Any]:
    """The return value of the latest run's ``write_manifest`` task, from the metadata DB."""
    with sqlite3.connect(AIRFLOW_HOME / "airflow.db") as conn:
        row = conn.execute(
            "SELECT value FROM xcom WHERE dag_id = ? AND task_id = 'write_manifest' AND key = 'return_value' "
            "AND run_id = (SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1)",
            (DAG_ID, DAG_ID),
        ).fetchone()
    if row is None:
        raise RuntimeError("write_manifest left no XCom")
    return json.loads(row[0])


def main() -> int:
    began = time.monotonic()
    AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)
    step(f"Migrating the Airflow metadata DB in {AIRFLOW_HOME}")
    subprocess.run([AIRFLOW, "db", "migrate"], env=airflow_env(), check=True, capture_output=True)

    step("Starting the emulator")
    emulator, url = start_emulator()
    try:
        print(f"    {url}")
        config = demo_config(get_json(f"{url}/_emulator/catalog"))
        connection = {
            "conn_type": "tencentcloud",
            "login": SECRET_ID,
            "password": SECRET_KEY,
            "extra": {"region": REGION, "endpoint": url},
        }
        env = {
            **airflow_env(),
            "AIRFLOW_CONN_TENCENTCLOUD_DEFAULT": json.dumps(connection),
            "AIRFLOW_VAR_CVM_EXPORT_CONFIG": json.dumps(config),
        }
        step(f"airflow dags test {DAG_ID}: {len(config['image_ids'])} images to {config['bucket_name']}")
        log = AIRFLOW_HOME / "demo.log"
        with log.open("w") as out:
            run = subprocess.run([AIRFLOW, "dags", "test", DAG_ID], env=env, stdout=out, stderr=subprocess.STDOUT)
        if run.returncode != 0:
            print(log.read_text()[-4000:])
            print(f"FAILED: airflow dags test exited with {run.returncode}; full log in {log}")
            return 1

        received = manifest_xcom()["cos_paths"]
        exported = [path for export in get_json(f"{url}/_emulator/state")["exports"] for path in export["CosPaths"]]
        step(f"CosPaths received by write_manifest ({len(received)} files):")
        for path in received:
            print(f"    {path}")
        if sorted(received) != sorted(exported):
            print(f"FAILED: the emulator exported {exported}")
            return 1
        print(f"OK: they match the emulator's exports ({time.monotonic() - began:.0f} s; log in {log})")
        return 0
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
