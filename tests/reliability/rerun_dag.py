"""``python -m tests.reliability.rerun_dag DAG_ID LOGICAL_DATE``: ``airflow dags test`` that resumes a DAG run.

``airflow dags test`` deletes an existing run of the same logical date (and its task state store)
before starting afresh. This resumes it instead, as a scheduler would after a worker died: task
instances left ``running`` by a killed process are put ``up_for_retry`` (what the scheduler does
when a task stops heartbeating) and a cleared (queued) run is set running, then ``dag.test``'s loop
runs the rest of the run, retries included.
Without an existing run it is plain ``dag.test`` at that logical date.
"""

from __future__ import annotations

import sys
from typing import Any
from unittest.mock import patch

from airflow.models.dagrun import DagRun
from airflow.sdk import timezone
from airflow.utils.cli import get_bagged_dag
from airflow.utils.session import create_session
from airflow.utils.state import DagRunState, TaskInstanceState
from sqlalchemy import select

from tests.airflow_compat import SerializedDAG


def _find_run(dag_id: str, logical_date: object, session: Any) -> DagRun | None:
    return session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.logical_date == logical_date))


def _resume(**kwargs: Any) -> DagRun:
    """Stand-in for ``get_or_create_dagrun``: the existing run, not a new one."""
    run = _find_run(kwargs["dag"].dag_id, kwargs["logical_date"], kwargs["session"])
    assert run is not None, "no DAG run of that date to rerun"
    run.dag = kwargs["dag"]
    return run


def main(dag_id: str, logical_date: str) -> int:
    when = timezone.parse(logical_date)
    dag = get_bagged_dag(bundle_names=None, dag_id=dag_id)
    with create_session() as session:
        existing = _find_run(dag_id, when, session)
        for ti in existing.get_task_instances(state=[TaskInstanceState.RUNNING], session=session) if existing else []:
            print(f"Task {ti.task_id} try {ti.try_number} was left running by a dead process: up_for_retry")
            ti.state = TaskInstanceState.UP_FOR_RETRY
            ti.end_date = timezone.utcnow()
        if existing is not None and existing.state == DagRunState.QUEUED:
            print("The DAG run was cleared (queued): running it")  # what the scheduler does with a queued run
            existing.state = DagRunState.RUNNING
    if existing is None:
        dag_run = dag.test(run_after=when, logical_date=when)
    else:
        with (
            patch("airflow.models.dagrun.get_or_create_dagrun", _resume),
            patch.object(SerializedDAG, "clear_dags", lambda *args, **kwargs: 0),
        ):
            dag_run = dag.test(run_after=when, logical_date=when)
    print(f"DagRun Finished: dag_id={dag_id}, run_id={dag_run.run_id}, state={dag_run.state}")
    return 0 if dag_run.state == DagRunState.SUCCESS else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
