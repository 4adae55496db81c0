"""Every Airflow name that moved between the supported lines (3.1, 3.2, 3.3), in one place.

The package, its example DAGs and its tests import these names from here; nothing else branches on
the Airflow version (as in the official providers' ``version_compat.py``). A feature that only a
newer line has degrades here to its documented fallback: docs/development.md, "Airflow versions".
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any


def get_base_airflow_version_tuple() -> tuple[int, int, int]:
    """The installed Airflow's ``(major, minor, micro)``, pre-release and local parts dropped."""
    from airflow import __version__
    from packaging.version import Version

    version = Version(__version__)
    return version.major, version.minor, version.micro


AIRFLOW_V_3_2_PLUS = get_base_airflow_version_tuple() >= (3, 2, 0)
AIRFLOW_V_3_3_PLUS = get_base_airflow_version_tuple() >= (3, 3, 0)

# Type checkers read the newest line's names (the package is type-checked against Airflow 3.3).
if TYPE_CHECKING or AIRFLOW_V_3_2_PLUS:
    from airflow.sdk import conf
    from airflow.sdk.exceptions import (
        AirflowFailException,
        AirflowNotFoundException,
        AirflowSensorTimeout,
        AirflowSkipException,
        ParamValidationError,
        TaskDeferred,
    )
else:  # 3.1: the Task SDK re-exports neither the configuration nor these exceptions yet
    from airflow.configuration import conf
    from airflow.exceptions import (
        AirflowFailException,
        AirflowNotFoundException,
        AirflowSensorTimeout,
        AirflowSkipException,
        ParamValidationError,
        TaskDeferred,
    )

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context

# Tells "durable left at its default" from an explicit durable=..., which warns below 3.3 (as the
# official providers do): only an explicit value can have been meant to work.
_DURABLE_UNSET: Any = object()


class ResumableJobStandIn:
    """``ResumableJobMixin`` before Airflow 3.3 (no task state store): every try runs ``submit_job``,
    which detects a running export; an explicit ``durable`` warns once and is ignored."""

    external_id_key = "remote_job_id"

    def __init__(self, *, durable: bool = _DURABLE_UNSET, **kwargs: Any) -> None:
        if durable is not _DURABLE_UNSET:
            warnings.warn(
                "`durable` has no effect on Airflow versions below 3.3 (there is no task state store)",
                UserWarning,
                stacklevel=3,
            )
        super().__init__(**kwargs)
        self.durable = False

    def execute_resumable(self, context: Context) -> Any:
        """Submit, wait and return the result, as ``ResumableJobMixin`` does without a task state store."""
        external_id = self.submit_job(context)  # type: ignore[attr-defined]  # the operator's method
        self.poll_until_complete(external_id, context)  # type: ignore[attr-defined]  # the operator's method
        return self.get_job_result(external_id, context)  # type: ignore[attr-defined]  # the operator's method


if TYPE_CHECKING or AIRFLOW_V_3_3_PLUS:
    from airflow.sdk import ResumableJobMixin
else:  # before 3.3: no task state store
    ResumableJobMixin = ResumableJobStandIn


# Scheduler-side classes, imported on first use (a task never needs them): DagBag, which the pytest
# plugin's tencentcloud_run_dag reads DAG files with. name -> (module from Airflow 3.2 on, on 3.1).
_SERVER_SIDE = {"DagBag": ("airflow.dag_processing.dagbag", "airflow.models.dagbag")}


def __getattr__(name: str) -> Any:
    if name not in _SERVER_SIDE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    new, old = _SERVER_SIDE[name]
    return getattr(importlib.import_module(new if AIRFLOW_V_3_2_PLUS else old), name)


__all__ = [
    "AIRFLOW_V_3_2_PLUS",
    "AIRFLOW_V_3_3_PLUS",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "ParamValidationError",
    "ResumableJobMixin",
    "TaskDeferred",
    "conf",
]
