"""docs/deployment.md's native Celery install is what ``make system-test`` runs.

Every ``airflow`` command of the section is one tests/system/stack.py runs verbatim, and the other
way round; the environment it exports is the one the stack sets; the REST call's body is a run
without a logical date whose conf the ad-hoc DAG's form accepts; the extra it installs exists.
(tests/system/test_deployment_guide.py runs the whole section as written.)
"""

from __future__ import annotations

import configparser
import copy
import json
import re
import shlex
from pathlib import Path

import pytest

from airflow_cvm_export.version_compat import DagBag
from tests.system.stack import COMMANDS, GUIDE_ENV

ROOT = Path(__file__).resolve().parents[2]
GUIDE = (ROOT / "docs" / "deployment.md").read_text()


def section(title: str) -> str:
    start = GUIDE.index(f"## {title}\n")
    end = GUIDE.find("\n## ", start + 1)
    return GUIDE[start : end if end != -1 else None]


NATIVE = section("Native install with Celery")
BLOCKS = [block for block in re.findall(r"```bash\n(.*?)```", NATIVE, re.S)]
LINES = [line.strip() for block in BLOCKS for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def strip_assignments(line: str) -> tuple[dict[str, str], str]:
    """``A=1 B=2 airflow ...`` -> ({A, B}, ``airflow ...``), comments dropped."""
    words = shlex.split(line, comments=True)
    env = {}
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    return env, shlex.join(words)


def test_every_airflow_command_is_run_by_the_system_test_and_back() -> None:
    documented = [strip_assignments(line)[1] for line in LINES if strip_assignments(line)[1].startswith("airflow ")]
    assert documented == COMMANDS


def test_the_environment_is_the_one_the_stack_sets() -> None:
    """The Airflow settings airflow.env exports and the inline ones (tests/system runs the guide with them)."""
    exported = {line.split()[1].split("=", 1)[0] for line in LINES if line.startswith("export ")}
    inline = {name for line in LINES for name in strip_assignments(line)[0]}
    assert {name for name in exported | inline if name.startswith("AIRFLOW")} == GUIDE_ENV


def test_the_rest_call_starts_a_run_without_a_logical_date_the_form_accepts() -> None:
    (curl,) = [line for line in LINES if line.startswith("curl ")]
    words = shlex.split(curl)
    assert words[words.index("-X") + 1] == "POST"
    assert words[words.index("-X") + 2].endswith("/api/v2/dags/cvm_export_adhoc/dagRuns")
    body = json.loads(words[words.index("-d") + 1])
    assert body["logical_date"] is None
    dag = DagBag(str(ROOT / "dags")).dags["cvm_export_adhoc"]
    params = copy.deepcopy(dag.params)
    params.update(body["conf"])
    assert params.validate()["mode"] == "deferrable"


def test_the_install_line_names_the_celery_extra() -> None:
    (install,) = [line for line in LINES if line.startswith("pip install")]
    assert install == 'pip install ".[celery]" -c constraints.txt'  # from the checkout, as the Dockerfile
    assert 'pip install "airflow-cvm-export[celery]" -c constraints.txt' in NATIVE  # and from a release
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    extra = setup.get("options.extras_require", "celery").split()
    # The provider's floor: before 3.19.0 a worker started with --celery-hostname never runs its tasks.
    celery = "apache-airflow-providers-celery>=3.19.0"
    assert {celery, "redis", "psycopg[binary]", "psycopg2-binary", "asyncpg"} == set(extra)
    assert "celery" in (ROOT / "Makefile").read_text().split("pip install", 1)[1].splitlines()[0]


@pytest.mark.parametrize("variable", ["AIRFLOW_CONN_TENCENTCLOUD_DEFAULT", "AIRFLOW_VAR_CVM_EXPORT_CONFIG"])
def test_exported_json_values_parse(variable: str) -> None:
    (line,) = [line for line in LINES if line.startswith(f"export {variable}=")]
    json.loads(shlex.split(line)[1].split("=", 1)[1])
