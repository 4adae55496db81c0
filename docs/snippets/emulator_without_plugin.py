"""docs/emulator.md, "Testing your own DAGs with it": the emulator without the pytest plugin.

tests/docs/test_snippets.py runs this file.
"""

# [START howto_emulator_without_plugin]
import json
import os

from airflow_cvm_export.emulator import Emulator

with Emulator(progression="immediate") as emu:
    os.environ["AIRFLOW_CONN_TENCENTCLOUD_DEFAULT"] = json.dumps(
        {
            "conn_type": "tencentcloud",
            "login": "AKIDEMULATOR",
            "password": "emulator-secret-key",
            "extra": {"region": "ap-guangzhou", "endpoint": emu.url},
        }
    )
    ...  # run the DAG, then check emu.state()
# [END howto_emulator_without_plugin]
