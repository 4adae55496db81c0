"""The pytest plugin's fixtures, used here as a DAG author would (the plugin loads by its entry point)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points

import pytest
import requests

from airflow_cvm_export.emulator.catalog import WRITABLE_BUCKETS

EXPORT = {"ImageIds": ["img-centos01"], "BucketName": WRITABLE_BUCKETS[0]}


def test_registered_as_pytest11_entry_point():
    [plugin] = [ep for ep in entry_points(group="pytest11") if ep.name == "tencentcloud_emulator"]
    assert plugin.value == "airflow_cvm_export.emulator.pytest_plugin"


def test_loading_the_plugin_imports_no_emulator_and_no_airflow():
    """Every pytest session of an environment with the provider loads the plugin: it must cost nothing."""
    code = (
        "import sys, pytest; before = set(sys.modules); import airflow_cvm_export.emulator.pytest_plugin; "
        "print(sorted(set(sys.modules) - before))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert loaded.strip() == str(
        ["airflow_cvm_export", "airflow_cvm_export.emulator", "airflow_cvm_export.emulator.pytest_plugin"]
    )


def test_a_test_leaves_state_behind(tencentcloud_emulator):
    tencentcloud_emulator.add_fault("throttle", service="cos")
    tencentcloud_emulator.delete_image("img-ubuntu02")
    tencentcloud_emulator.progression = "manual"
    tencentcloud_emulator.put_object(WRITABLE_BUCKETS[0], "left-over.raw", b"x")


def test_the_next_test_starts_fresh(tencentcloud_emulator):
    state = tencentcloud_emulator.state()
    assert (state["exports"], state["faults"], state["deleted_images"], state["progression"]) == (
        [],
        [],
        [],
        "immediate",
    )
    assert tencentcloud_emulator.objects.objects(WRITABLE_BUCKETS[0]) == {}


@pytest.mark.tencentcloud_emulator(
    progression="manual", max_running_exports=1, fail_rate=1.0, credential_lifetime=60, cam_role="AirflowWorker"
)
def test_marker_adjusts_the_emulator(tencentcloud_emulator):
    assert tencentcloud_emulator.progression == "manual"
    assert (tencentcloud_emulator.exports.max_running_exports, tencentcloud_emulator.exports.fail_rate) == (1, 1.0)
    assert (tencentcloud_emulator.credential_lifetime, tencentcloud_emulator.cam_role) == (60, "AirflowWorker")


def test_marker_settings_are_restored(tencentcloud_emulator):
    assert (tencentcloud_emulator.exports.max_running_exports, tencentcloud_emulator.exports.fail_rate) == (10, 0.0)
    assert (tencentcloud_emulator.credential_lifetime, tencentcloud_emulator.cam_role) == (7200, "CVM_QcsRole")


def test_connection_points_at_the_emulator(tencentcloud_connection, tencentcloud_emulator):
    assert tencentcloud_connection == "tencentcloud_default"
    connection = json.loads(os.environ["AIRFLOW_CONN_TENCENTCLOUD_DEFAULT"])
    assert connection["extra"] == {"region": "ap-guangzhou", "endpoint": tencentcloud_emulator.url}
    assert requests.get(tencentcloud_emulator.url + "/_emulator/state", timeout=10).status_code == 200
