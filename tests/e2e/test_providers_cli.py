"""The provider registers with Airflow, as the ``airflow providers`` commands show it: package, connection
type and connection form (a fresh Airflow process each, so in this tier; tests/hooks/test_registration.py
reads the same registrations in-process)."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest

from airflow_cvm_export import get_provider_info
from airflow_cvm_export.utils.connection import EXTRA_KEYS
from airflow_cvm_export.version_compat import AIRFLOW_V_3_2_PLUS
from tests.e2e.conftest import AIRFLOW

EXTRAS = sorted(EXTRA_KEYS)
CONN_FIELDS_SINCE = "Airflow reads the provider info's conn-fields from 3.2 on (3.1: get_connection_form_widgets)"


@pytest.fixture(scope="module")
def airflow_cli(tmp_path_factory: pytest.TempPathFactory):
    """Run ``airflow providers <command> --output json`` in a fresh AIRFLOW_HOME."""
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path_factory.mktemp("airflow_home"))}

    def run(*command: str) -> Any:
        done = subprocess.run(
            [AIRFLOW, "providers", *command, "--output", "json"], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout)

    return run


def test_providers_list_shows_the_package(airflow_cli: Any):
    (entry,) = [p for p in airflow_cli("list") if p["package_name"] == "airflow-cvm-export"]
    assert entry["version"] == get_provider_info()["versions"][0]


def test_providers_hooks_registers_the_connection_type(airflow_cli: Any):
    (hook,) = [h for h in airflow_cli("hooks") if h["connection_type"] == "tencentcloud"]
    assert hook["class"] == "airflow_cvm_export.hooks.cvm.CvmHook"
    assert hook["conn_id_attribute_name"] == "tencentcloud_conn_id"
    assert hook["package_name"] == "airflow-cvm-export"


@pytest.mark.skipif(not AIRFLOW_V_3_2_PLUS, reason=CONN_FIELDS_SINCE)
def test_connection_form_has_the_extras(airflow_cli: Any):
    widgets = [
        w for w in airflow_cli("widgets") if w.get("connection_parameter_name", "").startswith("extra__tencentcloud__")
    ]
    names = sorted(w["connection_parameter_name"].removeprefix("extra__tencentcloud__") for w in widgets)
    assert names == EXTRAS
