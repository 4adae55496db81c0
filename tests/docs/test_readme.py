"""The README is a landing page that runs as written.

Its first DAG, saved where it says, and its shell commands, run verbatim in a fresh folder (a fresh
``AIRFLOW_HOME``, the emulator started by the README's own command; only the emulator's port is a
free one instead of 9000): the run succeeds and the deferrable sensor hands the CosPaths on within
seconds, not one ``poke_interval`` (60 s) later.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
TEXT = README.read_text()


def section(title: str) -> str:
    start = TEXT.index(f"\n## {title}\n")
    end = TEXT.find("\n## ", start + 1)
    return TEXT[start : end if end != -1 else None]


def block(text: str, language: str) -> str:
    (found,) = re.findall(rf"```{language}\n(.*?)```", text, re.S)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_is_a_landing_page_without_relative_links() -> None:
    assert len(TEXT.splitlines()) < 150
    # The README is the package's long description on PyPI, where relative links break.
    links = re.findall(r"\]\(([^)]+)\)", TEXT)
    assert [link for link in links if not link.startswith("https://")] == []


@pytest.mark.e2e
def test_first_dag_runs_with_the_readmes_commands(tmp_path: Path) -> None:
    first_dag = section("A first DAG")
    named = re.search(r"Save this as `(dags/\w+\.py)`", first_dag)
    assert named is not None, "the README's first DAG says where to save it"
    dag_file = named[1]
    (tmp_path / dag_file).parent.mkdir(parents=True)
    (tmp_path / dag_file).write_text(block(first_dag, "python"))
    commands = block(first_dag, "bash")
    assert "airflow db migrate" in commands and "airflow dags test export_my_images" in commands
    assert commands.count("9000") == 2  # the emulator's --port and the connection's endpoint
    script = tmp_path / "readme.sh"
    script.write_text("set -e\n" + commands.replace("9000", str(free_port())))

    bin_dir = str(Path(sys.executable).parent)  # python and airflow of the environment under test
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "TENCENTCLOUD_", "PYTEST"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    process = subprocess.Popen(
        ["bash", str(script)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=900)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        try:
            os.killpg(process.pid, signal.SIGTERM)  # the emulator, if the script stopped before `kill %1`
        except ProcessLookupError:
            pass
    assert process.returncode == 0, output[-5000:]

    with sqlite3.connect(tmp_path / "airflow-home" / "airflow.db") as db:
        ((state, start, end, next_method),) = db.execute(
            "SELECT state, start_date, end_date, next_method FROM task_instance WHERE task_id = 'wait_for_export'"
        ).fetchall()
        ((value,),) = db.execute(
            "SELECT value FROM xcom WHERE task_id = 'wait_for_export' AND key = 'return_value'"
        ).fetchall()
    assert state == "success"
    assert next_method is None  # handed on by the check before deferring: no trigger ran
    seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    assert seconds < 20, seconds  # not one poke_interval (60 s)
    cos_paths = json.loads(value)
    assert len(cos_paths) == 2
    assert all(re.match(r"^/nightly-\d{8}_img-(centos01|ubuntu02)_system_", path) for path in cos_paths), cos_paths
