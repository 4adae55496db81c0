"""DAG integrity: every file in dags/ imports cleanly, with no network, DB or Variable access at parse time."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG, AssetAlias

from airflow_cvm_export.operators.cvm import ExportImagesOperator
from airflow_cvm_export.sensors.cvm import DEFAULT_ASSET_ALIAS, ExportImagesSensor
from airflow_cvm_export.version_compat import DagBag, ParamValidationError

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(str(path) for path in DAGS_FOLDER.glob("*.py"))

# Parses the dags folder with sockets refused and a metadata DB that cannot be opened.
PROBE = r"""
import json, socket, sys

def refuse(*args, **kwargs):
    raise RuntimeError("network access while parsing DAGs")

socket.socket.connect = refuse
socket.create_connection = refuse

from airflow_cvm_export.version_compat import DagBag

# What only a running task needs: a DAG file that imports the operator or sensor must not load it.
RUNTIME_ONLY = ("airflow_cvm_export.emulator", "airflow_cvm_export.hooks.", "airflow_cvm_export.triggers",
                "airflow_cvm_export.utils.connection", "airflow_cvm_export.utils.completion",
                "airflow_cvm_export.utils.waiting")
bag = DagBag(sys.argv[1])
print(json.dumps({
    "errors": bag.import_errors,
    "files": sorted({dag.fileloc for dag in bag.dags.values()}),
    "loaded": [name for name in sys.modules if name == "requests" or name.startswith(RUNTIME_ONLY)],
}))
"""


def test_every_dag_file_imports_without_network_db_or_heavy_modules(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/missing/dir/airflow.db",
    }
    env.pop("AIRFLOW_VAR_CVM_EXPORT_CONFIG", None)  # a parse-time Variable read would fail without it
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, str(DAGS_FOLDER)], env=env, capture_output=True, text=True, timeout=120
    )
    assert probe.returncode == 0, probe.stderr
    result = json.loads(probe.stdout.strip().splitlines()[-1])
    assert result["errors"] == {}
    assert result["files"] == DAG_FILES
    assert result["loaded"] == []


@pytest.fixture(scope="module")
def dags() -> dict[str, Any]:
    bag = DagBag(str(DAGS_FOLDER))
    assert bag.import_errors == {}
    return bag.dags


@pytest.mark.parametrize("dag_id", ["cvm_export_nightly", "cvm_export_adhoc"])
def test_export_then_wait_mapped_over_batches(dags: dict[str, DAG], dag_id: str) -> None:
    dag = dags[dag_id]
    start, wait = dag.get_task("start_export"), dag.get_task("wait_for_export")
    assert start.operator_class is ExportImagesOperator
    assert wait.operator_class is ExportImagesSensor
    assert "start_export" in wait.upstream_task_ids
    assert "plan" in start.upstream_task_ids
    assert wait.outlets == [AssetAlias(DEFAULT_ASSET_ALIAS)]  # in the serialized DAG, for the scheduler


def test_consumer_scheduled_on_the_exports_asset_alias(dags: dict[str, DAG]) -> None:
    dag = dags["cvm_export_consumer"]
    assert dag.schedule == [AssetAlias(DEFAULT_ASSET_ALIAS)]
    assert dag.catchup is False
    assert list(dag.task_dict) == ["list_exported_objects"]


def test_nightly_schedule(dags: dict[str, DAG]) -> None:
    dag = dags["cvm_export_nightly"]
    assert dag.catchup is False
    assert dag.schedule == "0 2 * * *"
    assert dag.start_date is not None and dag.start_date.tzinfo is not None and dag.timezone.name == "Asia/Shanghai"
    assert dag.get_task("write_manifest").upstream_task_ids == {"wait_for_export"}


def form(dag: DAG, conf: dict[str, Any]) -> dict[str, Any]:
    """The trigger form's check of ``conf`` against the DAG's Params."""
    params = copy.deepcopy(dag.params)
    params.update(conf)
    return params.validate()


def test_adhoc_form(dags: dict[str, DAG]) -> None:
    dag = dags["cvm_export_adhoc"]
    assert dag.schedule is None
    assert {"image_ids", "bucket_name", "export_format", "file_name_prefixes", "region"} <= set(dag.params)
    resolved = form(dag, {"image_ids": ["img-centos01"], "bucket_name": "exports-1250000000"})
    assert resolved["export_format"] == "RAW"
    assert resolved["poke_interval"] == 60


@pytest.mark.parametrize(
    "conf",
    [
        {"image_ids": ["img-centos01"], "bucket_name": "exports"},
        {"image_ids": ["IMG-1"], "bucket_name": "exports-1250000000"},
        {"image_ids": [], "bucket_name": "exports-1250000000"},
        {"image_ids": ["img-centos01", "img-centos01"], "bucket_name": "exports-1250000000"},
        {"image_ids": ["img-centos01"], "bucket_name": "exports-1250000000", "export_format": "ISO"},
        {"image_ids": ["img-centos01"], "bucket_name": "exports-1250000000", "region": "Guangzhou"},
        {"image_ids": ["img-centos01"], "bucket_name": "exports-1250000000", "mode": "deferred"},
        {"bucket_name": "exports-1250000000"},
    ],
)
def test_adhoc_form_rejects_bad_values(dags: dict[str, DAG], conf: dict[str, Any]) -> None:
    with pytest.raises(ParamValidationError):
        form(dags["cvm_export_adhoc"], conf)
