"""Every snippet in the README and docs/ runs, or says why it cannot.

- Python is never pasted into a page: the pages include it (``literalinclude``) from the example
  DAGs, docs/examples or docs/snippets, and the tests below run those files. (The README, which
  cannot include files on PyPI, has one Python block: tests/docs/test_readme.py runs it.)
- A shell block a user types carries ``<!-- run by: <test> -->`` (that test reads the page) or
  ``<!-- not run: <reason> -->`` on the line before it. The blocks marked ``run by`` this file run
  here as written, page by page, against the emulator (its port a free one instead of 9000) in a
  fresh Airflow home.
- docs/deployment.md is checked by section: its native install is run by
  tests/system/test_deployment_guide.py; its Docker lines need a daemon and pulled images.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_cvm_export.emulator import Emulator

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
SHELL = {"bash", "sh", "shell", "console", ""}
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```$", re.M | re.S)
MARK = re.compile(r"<!-- (run by: (?P<test>\S+)|not run: (?P<reason>.+?)) -->\s*$")
HERE = "tests/docs/test_snippets.py"
# docs/deployment.md (its sections, by heading) is marked here, not in the page.
DEPLOYMENT = {
    "Native install with Celery": "run by tests/system/test_deployment_guide.py",
    "*": "not run: needs a Docker daemon and the pulled images; tests/deploy runs `docker compose config`",
}
SNIPPET_DAGS = DOCS / "snippets" / "dags"


def blocks(page: Path) -> Iterator[tuple[str, str, str, str]]:
    """(language, body, the line before the fence, the ``##`` section) of every fenced block of the page."""
    text = page.read_text()
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        headings = re.findall(r"^## (.+)$", text[: match.start()], re.M)
        yield match["lang"].strip(), match["body"], before, headings[-1] if headings else ""


def run_here(page: Path) -> list[str]:
    """The shell blocks of the page marked to be run by this file, in page order."""
    return [body for lang, body, before, _ in blocks(page) if lang in SHELL and f"run by: {HERE}" in before]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_no_pasted_python_and_every_shell_block_is_run_or_says_why_not(page: Path) -> None:
    for lang, body, before, section in blocks(page):
        if lang == "python":
            assert page.name == "README.md" and "run by: tests/docs/test_readme.py" in before, body[:200]
        if lang not in SHELL:
            continue  # directives ({literalinclude}...), data and output (json, text, yaml, xml...)
        if page.name == "deployment.md":
            assert DEPLOYMENT.get(section, DEPLOYMENT["*"])
            continue
        mark = MARK.search(before)
        assert mark, f"{page.name}, {section}: a shell block without <!-- run by/not run --> before it:\n{body}"
        if mark["test"]:
            test = ROOT / mark["test"]
            assert test.is_file(), mark["test"]
            assert page.name in test.read_text() or test.name == Path(HERE).name, (page.name, mark["test"])


def test_includes_name_existing_files_and_markers() -> None:
    include = re.compile(r"```\{literalinclude\} (\S+)\n(.*?)```", re.S)
    found = 0
    for page in PAGES:
        for path, options in include.findall(page.read_text()):
            source = (page.parent / path).read_text()
            for marker in re.findall(r':(?:start-after|end-before): "(.+?)"', options):
                assert marker in source, (page.name, path, marker)
            found += 1
    assert found >= 10


# -- running them --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """The emulator the pages' commands talk to (their 9000 replaced by its port), exports finished at once."""
    with Emulator(port=free_port(), progression="immediate") as emu:
        yield emu


@pytest.fixture(scope="module")
def shell_env(tmp_path_factory: pytest.TempPathFactory, emulator: Emulator) -> dict[str, str]:
    """A fresh, migrated Airflow home with the project's DAGs; the venv's commands first on PATH."""
    home = tmp_path_factory.mktemp("airflow-home")
    user_home = tmp_path_factory.mktemp("home")  # a new user's: no tccli profile or cache of another tccli version
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "TENCENTCLOUD_", "PYTEST"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        HOME=str(user_home),
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW_CONN_TENCENTCLOUD_DEFAULT=(
            '{"conn_type": "tencentcloud", "login": "AKIDEMULATOR", "password": "emulator-secret-key", '
            f'"extra": {{"region": "ap-guangzhou", "endpoint": "{emulator.url}"}}}}'
        ),
        EMU=emulator.url,
    )
    migrate = subprocess.run(["airflow", "db", "migrate"], env=env, capture_output=True, text=True, timeout=600)
    assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
    return env


def run_bash(script: str, env: dict[str, str], emulator: Emulator, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = "set -euo pipefail\n" + script.replace("127.0.0.1:9000", f"127.0.0.1:{emulator.port}")
    return subprocess.run(["bash", "-c", script], env=env, cwd=cwd, capture_output=True, text=True, timeout=900)


@pytest.mark.e2e
@pytest.mark.parametrize("page", ["connection.md", "selection.md", "emulator.md"])
def test_shell_blocks_run_as_written(page: str, shell_env: dict[str, str], emulator: Emulator, tmp_path: Path) -> None:
    script = "\n".join(run_here(DOCS / page))
    assert script
    done = run_bash(script, shell_env, emulator, tmp_path)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    if page == "connection.md":
        assert "Connection success!" in done.stdout
    if page == "selection.md":
        assert done.stdout.count("state=success") + done.stderr.count("state=success") >= 2


def test_every_page_marked_run_here_is_run_here() -> None:
    marked = sorted(page.name for page in PAGES if run_here(page))
    assert marked == ["connection.md", "emulator.md", "selection.md"]


@pytest.mark.e2e
@pytest.mark.parametrize("snippet", sorted(path.name for path in (DOCS / "snippets").glob("*.py")))
def test_python_snippets_run(snippet: str, emulator: Emulator) -> None:
    emulator.put_object("exports-1250000000", "img-centos01_system_snap-a90ff55d.raw", b"exported")
    code = (DOCS / "snippets" / snippet).read_text()
    code = code.replace("127.0.0.1:9000", f"127.0.0.1:{emulator.port}").replace("Port=9000", f"Port={emulator.port}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN", "TENCENTCLOUD_"))}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.e2e
@pytest.mark.parametrize("dag_id", ["howto_export_images", "howto_export_one_task", "howto_check_only"])
def test_how_to_dags_run(dag_id: str, shell_env: dict[str, str], emulator: Emulator, tmp_path: Path) -> None:
    env = {**shell_env, "AIRFLOW__CORE__DAGS_FOLDER": str(SNIPPET_DAGS)}
    done = run_bash(f"airflow dags test {dag_id}", env, emulator, tmp_path)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "state=success" in done.stdout + done.stderr
