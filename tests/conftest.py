"""Shared fixtures: a clean credential environment and Airflow connections from ``AIRFLOW_CONN_*``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.credentials import SECRET_ID, SECRET_KEY


@pytest.fixture(autouse=True)
def _no_ambient_tencent_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up the developer's own Tencent Cloud credentials."""
    for name in ("TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY", "TENCENTCLOUD_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def tencentcloud_conn(monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """Define a ``tencentcloud`` connection through ``AIRFLOW_CONN_<ID>`` and return its id.

    ``tencentcloud_conn(conn_id="tc_test", login=..., password=..., **extra)``; pass
    ``login=None``/``password=None`` for a connection without credentials.
    """

    def make(
        conn_id: str = "tc_test", *, login: str | None = SECRET_ID, password: str | None = SECRET_KEY, **extra: Any
    ) -> str:
        conn = {"conn_type": "tencentcloud", "login": login, "password": password, "extra": extra}
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return conn_id

    return make
