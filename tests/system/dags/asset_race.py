"""Two tasks that emit one asset event for the same asset through an alias at the same moment.

For ``tests/system/test_celery.py``: the conf gives the asset's URI and a directory; each map index
writes its file there and waits (1 ms polls) until both are there, so the two Celery workers send
their success, with the alias event, to the api-server within a millisecond or so of each other.
``retries=2``: shows whether Airflow retries a task the api-server fails on registering the event.
"""

from __future__ import annotations

import time
from pathlib import Path

import pendulum
from airflow.sdk import DAG, Asset, AssetAlias, get_current_context, task

ALIAS = AssetAlias("cvm_export_race")

with DAG(dag_id="asset_race", schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False):

    @task(outlets=[ALIAS], retries=2)
    def emit(side: int) -> None:
        context = get_current_context()
        conf = context["dag_run"].conf or {}  # the test passes barrier and uri
        barrier = Path(conf["barrier"])
        (barrier / str(side)).touch()
        deadline = time.monotonic() + 60
        while len(list(barrier.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        context["outlet_events"][ALIAS].add(Asset(uri=conf["uri"]), extra={"side": side})

    emit.expand(side=[0, 1])
