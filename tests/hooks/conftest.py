"""Fixtures for the hook tests: a scripted loopback server and hooks pointed at it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_cvm_export.hooks.cvm import CvmHook
from tests.credentials import SECRET_ID, SECRET_KEY
from tests.hooks.scripted_server import ScriptedServer

NO_LIMITS = {"ExportImages": 0, "DescribeImages": 0}


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as srv:
        yield srv


@pytest.fixture
def make_hook(tencentcloud_conn: Callable[..., str], server: ScriptedServer) -> Iterator[Callable[..., CvmHook]]:
    """``make_hook(**extra)``: a hook on the scripted server, tiny retry delay, limiter off by default."""
    hooks: list[CvmHook] = []

    def make(*, retry_limit: int = 4, login: str | None = SECRET_ID, **extra: Any) -> CvmHook:
        extra = {"endpoint": server.url, "region": "ap-guangzhou", "rate_limits": NO_LIMITS, **extra}
        conn_id = tencentcloud_conn("tc_hook", login=login, password=SECRET_KEY if login else None, **extra)
        hook = CvmHook(conn_id, retry_limit=retry_limit, retry_delay=0.01)
        hooks.append(hook)
        return hook

    yield make
    for hook in hooks:
        hook.close()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> Callable[[], str]:
    """Everything logged so far at DEBUG and up: stdlib records, and structlog lines Airflow writes to stdout."""
    caplog.set_level(logging.DEBUG)

    def text() -> str:
        captured = capsys.readouterr()
        return caplog.text + captured.out + captured.err

    return text
