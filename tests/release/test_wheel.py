"""The release as users get it: ``scripts/dist.py`` (``make dist``) builds the sdist and the wheel and
twine checks them; the wheel, installed (not editable) into a fresh venv with constraints.txt and
nothing else (and pytest), runs the emulator CLI, shows its provider metadata, runs the nightly DAG
and its pytest plugin's fixtures.

One venv for the module, installed from the pip cache the project's own venv filled.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import airflow_cvm_export
from tests.credentials import SECRET_ID, SECRET_KEY

pytestmark = pytest.mark.release

PROJECT = Path(__file__).resolve().parents[2]
VERSION = airflow_cvm_export.__version__


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{command}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist and the wheel, built and twine-checked by the script ``make dist`` runs."""
    out = tmp_path_factory.mktemp("dist")
    printed = run([sys.executable, str(PROJECT / "scripts" / "dist.py"), str(out)], cwd=PROJECT).stdout.split()
    sdist, wheel = (Path(line) for line in printed[-2:])
    return {"sdist": sdist, "wheel": wheel}


@pytest.fixture(scope="module")
def venv(dists: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the wheel and its dependencies, pinned by constraints.txt; its bin folder."""
    root = tmp_path_factory.mktemp("venv")
    # Without a pip of its own: this venv's pip installs into it (--python), which saves seconds.
    run([sys.executable, "-m", "venv", "--without-pip", str(root)])
    pip = [sys.executable, "-m", "pip", "--python", str(root / "bin" / "python"), "--disable-pip-version-check"]
    constraints = str(PROJECT / "constraints.txt")
    # pytest too, to run the wheel's pytest plugin (pytest11 entry point) as a DAG author would.
    run([*pip, "install", "-q", "--no-compile", "-c", constraints, str(dists["wheel"]), "pytest"])
    run([*pip, "check"])
    return root / "bin"


@pytest.fixture(scope="module")
def env(venv: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An Airflow home of its own whose DAG folder holds a copy of the nightly DAG (no project on the path)."""
    home = tmp_path_factory.mktemp("home")
    dags = home / "dags"
    dags.mkdir()
    shutil.copy(PROJECT / "dags" / "cvm_export_nightly.py", dags)
    environ = {
        "PATH": f"{venv}:/usr/bin:/bin",
        "HOME": str(home),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    run([str(venv / "airflow"), "db", "migrate"], env=environ, cwd=home)
    return environ


@pytest.fixture(scope="module")
def emulator_url(venv: Path, env: dict[str, str]) -> Iterator[str]:
    """The wheel's ``cvm-export-emulator`` console script, serving on a free port."""
    command = [str(venv / "cvm-export-emulator"), "--port", "0", "--secret-id", SECRET_ID, "--secret-key", SECRET_KEY]
    command += ["--export-seconds", "1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=env["HOME"])
    try:
        url = process.stdout.readline().strip()  # type: ignore[union-attr]
        assert url.startswith("http://127.0.0.1:"), url
        yield url
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0


def test_sdist_and_wheel_carry_the_package_and_its_metadata(dists: dict[str, Path]) -> None:
    assert dists["wheel"].name == f"airflow_cvm_export-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(dists["wheel"]) as wheel:
        names = set(wheel.namelist())
        entry_points = wheel.read(f"airflow_cvm_export-{VERSION}.dist-info/entry_points.txt").decode()
    assert {
        "airflow_cvm_export/py.typed",
        "airflow_cvm_export/emulator/__main__.py",
        "airflow_cvm_export/emulator/pytest_plugin.py",
    } <= names
    assert not any(name.startswith(("tests/", "dags/", "bench/", "scripts/")) for name in names)
    assert "[apache_airflow_provider]\nprovider_info = airflow_cvm_export:get_provider_info" in entry_points
    assert "cvm-export-emulator = airflow_cvm_export.emulator.__main__:main" in entry_points
    assert "[pytest11]\ntencentcloud_emulator = airflow_cvm_export.emulator.pytest_plugin" in entry_points


def test_changelog_has_an_entry_for_the_release() -> None:
    headings = [line for line in (PROJECT / "CHANGELOG.md").read_text().splitlines() if line.startswith("## ")]
    assert any(line.startswith(f"## {VERSION} - ") for line in headings), headings


def test_installed_wheel_is_the_package_airflow_loads(venv: Path, env: dict[str, str]) -> None:
    where = run(
        [str(venv / "python"), "-c", "import airflow_cvm_export as p, pathlib; print(pathlib.Path(p.__file__).parent)"],
        env=env,
        cwd=env["HOME"],
    ).stdout.strip()
    assert where.startswith(str(venv.parent / "lib")), where  # site-packages, not the source tree
    assert (Path(where) / "py.typed").is_file()

    shown = run(
        [str(venv / "airflow"), "providers", "get", "airflow-cvm-export", "--full", "-o", "json"], env=env
    ).stdout
    (info,) = json.loads(shown[shown.index("[") :])
    assert info["package-name"] == "airflow-cvm-export"
    assert info["versions"] == [VERSION]
    assert info["connection-types"][0]["connection-type"] == "tencentcloud"
    assert info["connection-types"][0]["hook-class-name"] == "airflow_cvm_export.hooks.cvm.CvmHook"
    assert {"airflow_cvm_export.links.cvm.CosBucketLink", "airflow_cvm_export.links.cvm.CosObjectsLink"} <= set(
        info["extra-links"]
    )


def test_nightly_dag_runs_from_the_installed_wheel(venv: Path, env: dict[str, str], emulator_url: str) -> None:
    connection = {
        "conn_type": "tencentcloud",
        "login": SECRET_ID,
        "password": SECRET_KEY,
        "extra": {"region": "ap-guangzhou", "endpoint": emulator_url},
    }
    variable = {
        "image_ids": ["img-centos01", "img-ubuntu01"],
        "bucket_name": "exports-1250000000",
        "poke_interval": 1,
        "timeout": 120,
        "mode": "poke",
    }
    dag_env = {
        **env,
        "AIRFLOW_CONN_TENCENTCLOUD_DEFAULT": json.dumps(connection),
        "AIRFLOW_VAR_CVM_EXPORT_CONFIG": json.dumps(variable),
    }
    done = run([str(venv / "airflow"), "dags", "test", "cvm_export_nightly"], env=dag_env, cwd=env["HOME"])
    assert "state=success" in done.stdout + done.stderr
    with urllib.request.urlopen(f"{emulator_url}/_emulator/state", timeout=10) as response:
        exports = json.load(response)["exports"]
    assert sorted(image for export in exports for image in export["ImageIds"]) == variable["image_ids"]


def test_pytest_plugin_runs_from_the_installed_wheel(venv: Path, env: dict[str, str]) -> None:
    test_file = Path(env["HOME"]) / "test_my_dag.py"
    test_file.write_text(
        "from airflow_cvm_export.hooks.cvm import CvmHook\n\n\n"
        "def test_the_plugin_emulator_answers(tencentcloud_emulator, tencentcloud_connection):\n"
        "    assert CvmHook(tencentcloud_connection).call('DescribeRegions', {})['TotalCount'] > 0\n"
    )
    done = run(
        [str(venv / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)], env=env, cwd=env["HOME"]
    )
    assert "1 passed" in done.stdout
