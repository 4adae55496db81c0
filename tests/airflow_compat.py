"""Airflow classes the tests use that moved between the supported lines (the package needs none of
them at run time: see airflow_cvm_export.version_compat for what it needs).

Type checkers read the newest line's (the tests are type-checked against Airflow 3.3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_cvm_export.version_compat import AIRFLOW_V_3_2_PLUS, AIRFLOW_V_3_3_PLUS

if TYPE_CHECKING or AIRFLOW_V_3_2_PLUS:
    from airflow.serialization.definitions.dag import SerializedDAG
else:  # 3.1
    from airflow.serialization.serialized_objects import SerializedDAG

if TYPE_CHECKING or AIRFLOW_V_3_3_PLUS:
    from airflow.sdk.types import TaskInstanceKey
else:  # 3.1, 3.2: what the UI hands to a link's get_link
    from airflow.models.taskinstancekey import TaskInstanceKey

__all__ = ["SerializedDAG", "TaskInstanceKey"]
