"""``python -m tests.e2e.asset_triggered_run DAG_ID``: what the scheduler does with queued asset events, then run it.

The scheduler's own run creation (``SchedulerJobRunner._create_dagruns_for_dags``) turns the
queued asset events (``asset_dag_run_queue``) of asset-scheduled DAGs into asset-triggered DAG
runs that consume those events. Then ``dag.test`` runs DAG_ID's new run in-process instead of a
fresh manual one, so its tasks see the events in ``triggering_asset_events``. Prints the run id;
exits 0 when the run succeeded, 2 when the scheduler created no run for DAG_ID.
"""

from __future__ import annotations

import sys
from typing import Any
from unittest.mock import patch

from airflow.jobs.job import Job
from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
from airflow.models.dagrun import DagRun
from airflow.utils.cli import get_bagged_dag
from airflow.utils.session import create_session
from airflow.utils.sqlalchemy import prohibit_commit
from airflow.utils.state import DagRunState
from airflow.utils.types import DagRunType
from sqlalchemy import select

from tests.airflow_compat import SerializedDAG


def main(dag_id: str) -> int:
    # Never started, so no executor is needed: a placeholder fills the list.
    runner = SchedulerJobRunner(job=Job(), executors=[object()])  # type: ignore[list-item]
    with create_session() as session, prohibit_commit(session) as guard:
        runner._create_dagruns_for_dags(guard, session)
    with create_session() as session:
        run = session.scalar(
            select(DagRun)
            .where(DagRun.dag_id == dag_id, DagRun.run_type == DagRunType.ASSET_TRIGGERED)
            .order_by(DagRun.id.desc())
        )
        if run is None:
            print(f"The scheduler created no asset-triggered run of {dag_id}")
            return 2
        run.state = DagRunState.RUNNING
        run_id = run.run_id
    print(f"Asset-triggered run: {run_id}")

    def existing_run(**kwargs: Any) -> DagRun:
        found = kwargs["session"].scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        found.dag = kwargs["dag"]
        return found

    dag = get_bagged_dag(bundle_names=None, dag_id=dag_id)
    with (
        patch("airflow.models.dagrun.get_or_create_dagrun", existing_run),
        patch.object(SerializedDAG, "clear_dags", lambda *args, **kwargs: 0),
    ):
        dag_run = dag.test(logical_date=None)
    print(f"DagRun Finished: dag_id={dag_id}, run_id={dag_run.run_id}, state={dag_run.state}")
    return 0 if dag_run.state == DagRunState.SUCCESS else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
