"""Run a module as ``__main__`` with the hooks' retry back-off scaled down, for the end-to-end tests.

``python -m tests.e2e.quick_backoff <scale> <module> <arguments...>`` (``airflow``,
``tests.e2e.skewed_clock``, ``tests.reliability.rerun_dag``): every retry the sync and async hooks
make still happens, in the same order and number, but each back-off is ``scale`` times the
shipped one (``wait_exponential_jitter`` of ``airflow_cvm_export.hooks.client``). The back-off
schedule itself is unit-tested in tests/hooks; the end-to-end runs prove what the retries achieve.
"""

from __future__ import annotations

import runpy
import sys
from typing import Any

from airflow_cvm_export.hooks import client


def scaled(scale: float) -> Any:
    """``wait_exponential_jitter`` with its ``initial``, ``max`` and ``jitter`` times ``scale``."""
    shipped = client.wait_exponential_jitter

    def wait(*, initial: float, max: float, jitter: float) -> Any:  # noqa: A002 - tenacity's names
        return shipped(initial=initial * scale, max=max * scale, jitter=jitter * scale)

    return wait


if __name__ == "__main__":
    # The hooks build their back-off from this name at call time: a scaled stand-in for tenacity's class.
    client.wait_exponential_jitter = scaled(float(sys.argv[1]))  # type: ignore[misc]
    module = sys.argv[2]
    sys.argv = [module, *sys.argv[3:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
