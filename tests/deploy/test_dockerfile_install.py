"""The Dockerfile's install step, run as written in a fresh venv (no image can be built here).

No registry is reachable, so ``FROM apache/airflow:<tag>`` cannot be pulled and ``docker build``
cannot run. What the build would do after the pull is done here instead: the ``COPY`` lines copy
the same files into a throw-away directory standing for ``/tmp/airflow-cvm-export``, and the one
``RUN`` line (the constraints check, ``pip install`` of Airflow and ``.[celery]`` with
``constraints.txt``, ``pip check``, the version assertion, the clean-up) runs verbatim in ``bash``
with that directory's path put in for ``/tmp/airflow-cvm-export``, ``AIRFLOW_VERSION`` set from the
``FROM`` tag as the base image sets it, and a fresh venv of this Python (the tag's) first on ``PATH``.
What it cannot show: the base image's own packages (its preinstalled providers) beside these pins,
the image's pip version, and its ``airflow`` user.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.test_compose import ROOT, constraint, dockerfile_instructions

pytestmark = pytest.mark.release

BUILD_DIR = "/tmp/airflow-cvm-export"


def test_the_dockerfile_install_step_passes_pip_check_in_a_fresh_venv(tmp_path: Path) -> None:
    instructions = dockerfile_instructions()
    (base,) = [args for instr, args in instructions if instr == "FROM"]
    pinned = re.fullmatch(r"apache/airflow:(\S+)-python(\d+\.\d+)", base)
    assert pinned, f"the Dockerfile's FROM is not apache/airflow:<version>-python<X.Y>: {base}"
    version, python = pinned.groups()
    assert python == f"{sys.version_info.major}.{sys.version_info.minor}", f"the image runs Python {python}"
    assert version == constraint("apache-airflow")

    context = tmp_path / "airflow-cvm-export"
    for args in [args for instr, args in instructions if instr == "COPY"]:
        *sources, target = [word for word in shlex.split(args) if not word.startswith("--")]
        assert target.startswith(BUILD_DIR), target
        target_path = Path(target.replace(BUILD_DIR, str(context), 1))
        for source in sources:
            where = target_path / source if target.endswith("/") else target_path
            where.parent.mkdir(parents=True, exist_ok=True)
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, where, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            else:
                shutil.copy(ROOT / source, where)
    (run,) = [args for instr, args in instructions if instr == "RUN" and "pip install" in args]

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "VIRTUAL_ENV"))}
    env.update(AIRFLOW_VERSION=version, PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    done = subprocess.run(
        ["bash", "-c", run.replace(BUILD_DIR, str(context))],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert f"airflow {version} airflow-cvm-export " in done.stdout, done.stdout[-2000:]
    assert not context.exists()  # the step's own clean-up ran

    frozen = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "freeze"], capture_output=True, text=True, check=True
    ).stdout
    installed = dict(line.split("==", 1) for line in frozen.splitlines() if "==" in line)
    for name in ("apache-airflow-providers-celery", "redis", "psycopg", "psycopg2-binary", "asyncpg"):
        assert installed.get(name) == constraint(name), (name, installed.get(name))
    # Everything setup.cfg's metadata names was copied: the license file is in the installed metadata.
    (dist_info,) = venv.glob("lib/python*/site-packages/airflow_cvm_export-*.dist-info")
    assert [path.name for path in dist_info.rglob("LICENSE")] == ["LICENSE"], sorted(dist_info.rglob("*"))


def test_the_wrong_base_image_stops_the_build(tmp_path: Path) -> None:
    """The step's first check, run as written with another AIRFLOW_VERSION, fails before pip runs."""
    (run,) = [args for instr, args in dockerfile_instructions() if instr == "RUN" and "pip install" in args]
    check = run.split("&& pip install", 1)[0].replace(BUILD_DIR, str(ROOT))
    done = subprocess.run(
        ["bash", "-c", check], env={**os.environ, "AIRFLOW_VERSION": "2.0.0"}, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert "does not pin apache-airflow==2.0.0 (the base image's Airflow)" in done.stderr


def test_the_guide_shows_the_same_pip_call() -> None:
    """docs/deployment.md, "The image": its excerpt of the step installs what the Dockerfile installs."""
    guide = (ROOT / "docs" / "deployment.md").read_text()
    excerpt = guide.split("```dockerfile\n", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    (run,) = [args for instr, args in dockerfile_instructions() if instr == "RUN" and "pip install" in args]

    def pip_call(text: str) -> list[str]:
        return shlex.split(text.split("pip install", 1)[1].split("&&", 1)[0])

    assert pip_call(excerpt) == pip_call(run)
    assert "&& pip check" in excerpt
