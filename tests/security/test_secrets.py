"""The secrets scan: a real ``airflow dags test`` at DEBUG log level, with a good connection (export,
deferred wait) and five malformed ones. Neither its output, its log files nor any table of the metadata
DB may hold the SecretKey, the token, a password written into a URL or any TC3 or COS signature the
emulator received (but for the one line Airflow itself prints, see :func:`airflow_prints_it`)."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_cvm_export.emulator import Emulator
from tests.credentials import ROLE_ARN, tke_environment, web_identity_token
from tests.e2e.conftest import DagRun
from tests.security.dags.cvm_export_secrets import BAD_CONNECTIONS

pytestmark = [pytest.mark.e2e, pytest.mark.reliability]

DAGS = Path(__file__).parent / "dags"
SECRET_ID = "AKIDSECRETSCAN"
SECRET_KEY = "SECRETSCAN-KEY-3c9e51b7"
TOKEN = "SECRETSCAN-TOKEN-8d2f40aa"
URL_PASSWORD = "SECRETSCAN-URLPW-61be07"


def bad_connections(url: str) -> dict[str, dict[str, Any]]:
    """One malformed connection per task of the DAG, each carrying a secret."""
    good = {"conn_type": "tencentcloud", "login": SECRET_ID, "password": SECRET_KEY}
    extra = {"region": "ap-guangzhou", "endpoint": url, "token": TOKEN}
    host = url.removeprefix("http://")
    connections = {
        "tc_bad_newline": {**good, "password": SECRET_KEY + "\n", "extra": extra},
        "tc_bad_url_password": {**good, "extra": {**extra, "endpoint": f"http://ops:{URL_PASSWORD}@{host}"}},
        "tc_bad_token": {**good, "extra": {**extra, "token": TOKEN + "-ö"}},
        "tc_bad_extra": {**good, "extra": {**extra, "secret_key": SECRET_KEY}},
        "tc_bad_backslash": {**good, "extra": {**extra, "endpoint": f"http://{URL_PASSWORD}\\@{host}"}},
    }
    assert set(connections) == set(BAD_CONNECTIONS)
    return connections


EXPECTED_ERRORS = (
    "must have no whitespace or line break at its start or end",
    "must not contain a user name or password",
    "extra token must be printable ASCII",
    "'secret_key' is not a setting of this provider",
)


@pytest.mark.every_line  # Airflow's logging and masking differ between the lines
def test_no_secret_or_signature_at_debug_level(run_dag: Callable[..., DagRun], airflow_home: Path) -> None:
    # Exports of 4 s: the wait's check before deferring finds it running, so it defers.
    emulator = Emulator(secret_id=SECRET_ID, secret_key=SECRET_KEY, token=TOKEN, export_seconds=4)
    authorizations: list[str] = []
    answer = emulator.handle

    def recording(request: Any) -> Any:
        authorizations.append(request.headers.get("authorization", ""))
        return answer(request)

    emulator.handle = recording  # type: ignore[method-assign]
    with emulator:
        env = {
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "DEBUG",
            **{
                f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn)
                for conn_id, conn in bad_connections(emulator.url).items()
            },
        }
        connection = {
            "login": SECRET_ID,
            "password": SECRET_KEY,
            "extra": {"region": "ap-guangzhou", "endpoint": emulator.url, "token": TOKEN},
        }
        run = run_dag("cvm_export_secrets", emulator, connection=connection, env=env)
    output = run.output
    assert run.returncode != 0  # the malformed connections' tasks failed...
    assert run.xcoms("wait")  # ...and the good export was started and waited for in the triggerer
    for expected in EXPECTED_ERRORS:
        assert expected in output, expected
    signatures = {
        match
        for header in authorizations
        for match in re.findall(r"(?:Signature|q-signature)=([0-9a-f]{40,64})", header)
    }
    assert len(signatures) >= 3  # TC3 (DescribeImages, ExportImages) and COS (HEAD) signatures were made
    assert found_in(run, airflow_home, {SECRET_KEY, TOKEN, URL_PASSWORD, *signatures}) == []


def found_in(run: DagRun, airflow_home: Path, forbidden: set[str]) -> list[tuple[str, str]]:
    """Where any of ``forbidden`` shows: the run's output, its log files, any table of the metadata DB (but
    for the line Airflow itself prints, see :func:`airflow_prints_it`)."""
    places = {"output of airflow dags test": run.output}
    places.update(
        {
            f"log file {path}": path.read_text(errors="replace")
            for path in (airflow_home / "logs").rglob("*")
            if path.is_file()
        }
    )
    with sqlite3.connect(run.db) as db:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            rows = db.execute(f'SELECT * FROM "{table}"').fetchall()  # noqa: S608 - names from sqlite_master
            places[f"table {table}"] = "\n".join(repr(row) for row in rows)
    leaks = sorted(
        {
            (where, line[:400])
            for where, text in places.items()
            for line in text.splitlines()
            for word in forbidden
            if word in line
        }
    )
    return [(where, line) for where, line in leaks if not airflow_prints_it(line)]


EXTERNAL_ID = "SECRETSCAN-EXTID-5a1f"
POLICY = {"version": "2.0", "statement": [{"effect": "allow", "action": ["name/cvm:*"], "resource": ["*"]}]}


@pytest.mark.every_line
def test_no_temporary_secret_at_debug_level(run_dag: Callable[..., DagRun], airflow_home: Path, tmp_path: Path) -> None:
    """Temporary credentials (a TKE pod's OIDC identity assuming a role, renewed every few seconds): no
    web identity token, temporary SecretKey, token, ExternalId or session policy anywhere."""

    web_identity = web_identity_token()
    emulator = Emulator(secret_id=SECRET_ID, secret_key=SECRET_KEY, export_seconds=8, credential_lifetime=4)
    with emulator:
        env = {
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "DEBUG",
            **tke_environment(tmp_path, web_identity),
            **{
                f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn)
                for conn_id, conn in bad_connections(emulator.url).items()
            },
        }
        extra = {
            "region": "ap-guangzhou",
            "endpoint": emulator.url,
            "sts_endpoint": emulator.url,
            "credential_source": "oidc",
            "role_arn": ROLE_ARN,
            "external_id": EXTERNAL_ID,
            "policy": POLICY,
        }
        connection = {"login": None, "password": None, "extra": extra}
        run = run_dag("cvm_export_secrets", emulator, connection=connection, env=env)
        issued = list(emulator.credentials.keys._temporary.values())
        requests = emulator.state()["requests"]
    assert run.xcoms("wait")  # the good export was started and waited for in the triggerer
    assert requests["AssumeRoleWithWebIdentity"]["ok"] >= 2 and requests["AssumeRole"]["ok"] >= 2  # renewed
    forbidden = {web_identity, EXTERNAL_ID, json.dumps(POLICY, separators=(",", ":"))}
    forbidden |= {credential.secret_key for credential in issued} | {
        credential.token for credential in issued if credential.token
    }
    assert found_in(run, airflow_home, forbidden) == []


def airflow_prints_it(line: str) -> bool:
    """The one known leak, by Airflow: ``airflow dags test`` logs each secret registered with the masker.

    ``InProcessSupervisorComms.send`` (apache-airflow-task-sdk 1.3.2, Airflow 3.3.2,
    ``airflow/sdk/execution_time/supervisor.py`` line 2055) logs every message at DEBUG, including
    ``MaskSecret(value=<the secret>)``: Airflow's own masking of the connection's password and extra,
    and the provider's. The real supervisor omits that body; see docs/security.md.
    """
    return "[debug" in line and "Sending request" in line and "loc=supervisor.py" in line and "msg=MaskSecret(" in line
