"""Scheduler-side Airflow classes the tests use that moved between the supported lines (the package
needs none of them: see airflow_cvm_export.version_compat for what it needs)."""

from __future__ import annotations

from airflow_cvm_export.version_compat import AIRFLOW_V_3_2_PLUS

if AIRFLOW_V_3_2_PLUS:
    from airflow.serialization.definitions.dag import SerializedDAG
else:  # 3.1
    from airflow.serialization.serialized_objects import SerializedDAG

__all__ = ["SerializedDAG"]
