"""Testing a DAG against the offline emulator: the complete example of docs/emulator.md.

Run with the DAGs folder and a scratch Airflow home set, e.g.
``AIRFLOW_HOME=/tmp/airflow-test AIRFLOW__CORE__DAGS_FOLDER=dags pytest test_my_dag.py``.
The fixtures come from the pytest plugin installed with airflow-cvm-export.
"""

import pytest

from airflow_cvm_export.emulator.catalog import WRITABLE_BUCKETS

DAG_ID = "nightly_image_export"  # dags/nightly_image_export.py


def test_export_succeeds(tencentcloud_emulator, tencentcloud_run_dag):
    run = tencentcloud_run_dag(DAG_ID)
    assert run.state == "success"
    [export] = tencentcloud_emulator.state()["exports"]  # exactly one export started
    assert export["status"] == "succeeded"
    assert export["ImageIds"] == ["img-centos01"] and export["BucketName"] == WRITABLE_BUCKETS[0]
    assert all(path.startswith("/nightly-") for path in export["CosPaths"])


def test_throttled_start_is_retried_without_a_duplicate(tencentcloud_emulator, tencentcloud_run_dag):
    tencentcloud_emulator.inject("ExportImages", "throttle")  # the first ExportImages is refused
    assert tencentcloud_run_dag(DAG_ID).state == "success"
    assert len(tencentcloud_emulator.state()["exports"]) == 1
    assert tencentcloud_emulator.state()["requests"]["ExportImages"] == {"fault:throttle": 1, "ok": 1}


@pytest.mark.tencentcloud_emulator(fail_rate=1.0)
def test_failed_export_fails_the_run(tencentcloud_emulator, tencentcloud_run_dag):
    assert tencentcloud_run_dag(DAG_ID).state == "failed"
    assert [e["status"] for e in tencentcloud_emulator.state()["exports"]] == ["failed"]
