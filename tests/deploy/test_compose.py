"""Structure of docker-compose.yaml, Dockerfile and .dockerignore (no Docker daemon needed).

The emulator service's command and health check are also run for real, outside Docker: the
command as a subprocess, the health check against it, and one signed DescribeImages call with the
connection's credentials for the Variable's images.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import yaml

from airflow_cvm_export.emulator.__main__ import parse_args
from airflow_cvm_export.emulator.catalog import EXPORTABLE_IMAGE_IDS, WRITABLE_BUCKETS
from airflow_cvm_export.emulator.cvm.models import EXPORT_FORMATS
from airflow_cvm_export.utils.signing import sign_tc3

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"

EMULATOR = "cvm-emulator"
# Long-running Airflow components, as in the official compose file.
AIRFLOW_COMPONENTS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery worker",
}
REQUIRED_SERVICES = {"postgres", "redis", "airflow-init", EMULATOR, *AIRFLOW_COMPONENTS}
# Services that run once or only on demand; everything else must report its health.
NO_HEALTHCHECK = {"airflow-init", "airflow-cli"}
# Services whose code calls Tencent Cloud: tasks on the worker, deferred sensors on the triggerer.
CALLS_THE_API = {"airflow-worker", "airflow-triggerer"}
CONN_VAR = "AIRFLOW_CONN_TENCENTCLOUD_DEFAULT"
CONFIG_VAR = "AIRFLOW_VAR_CVM_EXPORT_CONFIG"
CONFIG_KEYS = {"image_ids", "bucket_name", "export_format", "file_name_prefixes", "region", "poke_interval"}
# Also understood by the nightly DAG (airflow_cvm_export.examples.planning.plan_exports).
OPTIONAL_CONFIG_KEYS = {"mode", "timeout", "batch_size"}
VALID_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


# -- loading -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def airflow_services(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every service built on the x-airflow-common anchor (it carries the common environment)."""
    common_env = compose["x-airflow-common"]["environment"]
    found = {
        name: svc
        for name, svc in services.items()
        if isinstance(svc.get("environment"), dict)
        and svc["environment"].get("AIRFLOW__CORE__EXECUTOR") == common_env["AIRFLOW__CORE__EXECUTOR"]
    }
    assert set(AIRFLOW_COMPONENTS) | {"airflow-init"} <= set(found), sorted(found)
    return found


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE form
        env = dict(item.split("=", 1) for item in env)
    return env


def connection(service: dict[str, Any]) -> dict[str, Any]:
    raw = env_of(service)[CONN_VAR]
    try:
        return json.loads(raw)
    except ValueError as exc:
        pytest.fail(f"{CONN_VAR} is not valid JSON ({exc}): {raw!r}")


def emulator_args(services: dict[str, dict[str, Any]]):
    command = services[EMULATOR]["command"]
    argv = shlex.split(command) if isinstance(command, str) else [str(arg) for arg in command]
    assert argv[:3] == ["python", "-m", "airflow_cvm_export.emulator"], argv
    return argv[3:], parse_args(argv[3:])


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):  # short form: no condition at all
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


# -- services, health checks, dependencies -------------------------------------------------------


def test_every_service_is_defined(services: dict[str, dict[str, Any]]) -> None:
    missing = REQUIRED_SERVICES - set(services)
    assert not missing, f"docker-compose.yaml lacks {sorted(missing)}"
    for name, command in AIRFLOW_COMPONENTS.items():
        assert services[name]["command"] == command, name


def test_every_long_running_service_has_a_health_check(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        if name in NO_HEALTHCHECK:
            continue
        check = svc.get("healthcheck")
        assert check and not check.get("disable"), f"{name} has no health check"
        test = check["test"]
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, (name, test)
        assert check.get("retries", 0) >= 1 and "interval" in check, name
        assert svc.get("restart") == "always", f"{name} is not restarted"


def test_dependencies_use_conditions_on_defined_services(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        for dep, condition in depends_on(svc).items():
            assert dep in services, f"{name} depends on undefined service {dep}"
            assert condition in VALID_CONDITIONS, (name, dep, condition)
            assert condition != "service_started", f"{name} -> {dep}: wait for health or completion, not start"
            if condition == "service_healthy":
                assert services[dep].get("healthcheck"), f"{name} waits for {dep} to be healthy; it has no check"


def test_dependency_graph_has_no_cycle(services: dict[str, dict[str, Any]]) -> None:
    state: dict[str, str] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == "done":
            return
        assert state.get(name) != "active", f"depends_on cycle: {' -> '.join((*path, name))}"
        state[name] = "active"
        for dep in depends_on(services[name]):
            visit(dep, (*path, name))
        state[name] = "done"

    for name in services:
        visit(name, ())


def test_airflow_components_wait_for_database_broker_and_init(services: dict[str, dict[str, Any]]) -> None:
    for name in AIRFLOW_COMPONENTS:
        deps = depends_on(services[name])
        assert deps.get("postgres") == "service_healthy", name
        assert deps.get("redis") == "service_healthy", name
        assert deps.get("airflow-init") == "service_completed_successfully", name
    assert depends_on(services["airflow-worker"]).get("airflow-apiserver") == "service_healthy"
    init = depends_on(services["airflow-init"])
    assert init == {"postgres": "service_healthy", "redis": "service_healthy"}, init


def test_api_callers_wait_for_a_healthy_emulator(services: dict[str, dict[str, Any]]) -> None:
    for name in CALLS_THE_API:
        assert depends_on(services[name]).get(EMULATOR) == "service_healthy", name
    assert not depends_on(services[EMULATOR]), "the emulator must not wait for Airflow"


# -- image ---------------------------------------------------------------------------------------


def test_every_airflow_service_runs_the_package_image(
    compose: dict[str, Any], services: dict[str, dict[str, Any]], airflow_services: dict[str, dict[str, Any]]
) -> None:
    common = compose["x-airflow-common"]
    assert common["build"] in (".", {"context": "."}), common["build"]
    assert (ROOT / "Dockerfile").is_file()
    image = common["image"]
    assert not image.startswith("apache/airflow"), "the common image must be the one built from ./Dockerfile"
    for name, svc in {**airflow_services, EMULATOR: services[EMULATOR]}.items():
        assert svc.get("image") == image, f"{name} runs {svc.get('image')!r}, not {image!r}"
        assert svc.get("build") == common["build"], f"{name} is not built from ./Dockerfile"
    others = {name: svc.get("image") for name, svc in services.items() if name not in airflow_services}
    assert others == {"postgres": "postgres:16", "redis": "redis:7.2-bookworm", EMULATOR: image}, others


def test_package_is_not_installed_at_container_start(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        assert "_PIP_ADDITIONAL_REQUIREMENTS" not in env_of(svc), f"{name}: the package belongs in the image"


def test_celery_executor_with_redis_and_postgres(airflow_services: dict[str, dict[str, Any]]) -> None:
    for name, svc in airflow_services.items():
        env = env_of(svc)
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert urlsplit(env["AIRFLOW__CELERY__BROKER_URL"]).hostname == "redis", name
        assert env["AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"] == "true", f"{name}: sensors should use the triggerer"
        assert urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).hostname == "postgres", name
        api = urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
        assert (api.hostname, api.port) == ("airflow-apiserver", 8080), name


def test_dags_are_mounted(airflow_services: dict[str, dict[str, Any]]) -> None:
    assert (ROOT / "dags").is_dir()
    for name, svc in airflow_services.items():
        mounts = {v.split(":")[-1]: v.rsplit(":", 1)[0] for v in svc.get("volumes", []) if isinstance(v, str)}
        assert "/opt/airflow/dags" in mounts, f"{name} does not mount ./dags"
        assert mounts["/opt/airflow/dags"].endswith("/dags"), mounts["/opt/airflow/dags"]


# -- connection and Variable ---------------------------------------------------------------------


def test_connection_points_at_the_emulator_service(
    services: dict[str, dict[str, Any]], airflow_services: dict[str, dict[str, Any]]
) -> None:
    _, args = emulator_args(services)
    for name, svc in airflow_services.items():
        conn = connection(svc)
        assert conn["conn_type"] == "tencentcloud", name
        extra = conn["extra"]
        assert isinstance(extra, dict), "extra must be a JSON object, not a string"
        endpoint = urlsplit(extra["endpoint"])
        assert endpoint.scheme == "http" and endpoint.path in ("", "/"), extra["endpoint"]
        assert endpoint.hostname == EMULATOR, f"{name}: endpoint host is {endpoint.hostname}, not the service name"
        assert endpoint.port == args.port, f"{name}: endpoint port {endpoint.port}, emulator listens on {args.port}"
        assert extra["allow_http"] is True, f"{name}: allow_http must be JSON true for plain http to {EMULATOR}"
        assert extra["region"] == args.region == "ap-guangzhou", name
        assert (conn["login"], conn["password"]) == (args.secret_id, args.secret_key), (
            f"{name}: the connection's SecretId/SecretKey are not the emulator's"
        )


def test_real_cloud_setup_is_shown_commented_out() -> None:
    lines = [line.strip()[1:].strip() for line in COMPOSE_FILE.read_text().splitlines() if line.strip().startswith("#")]
    conn_lines = [line for line in lines if line.startswith(f"{CONN_VAR}:")]
    assert conn_lines, f"no commented-out real-cloud {CONN_VAR}"
    conn = json.loads(yaml.safe_load(conn_lines[0])[CONN_VAR])
    assert conn["conn_type"] == "tencentcloud"
    assert not {"endpoint", "cos_endpoint", "allow_http"} & set(conn["extra"]), "the real cloud is https, default"
    assert "login" not in conn and "password" not in conn, "no secrets in the compose file"
    assert any(line.startswith("TENCENTCLOUD_SECRET_ID:") for line in lines)
    assert any(line.startswith("TENCENTCLOUD_SECRET_KEY:") for line in lines)
    assert any(line.startswith("AIRFLOW__SECRETS__BACKEND:") for line in lines)


def test_nightly_config_variable_fits_the_emulator_catalog(
    services: dict[str, dict[str, Any]], airflow_services: dict[str, dict[str, Any]]
) -> None:
    _, args = emulator_args(services)
    for name, svc in airflow_services.items():
        config = json.loads(env_of(svc)[CONFIG_VAR])
        assert CONFIG_KEYS <= set(config) <= CONFIG_KEYS | OPTIONAL_CONFIG_KEYS, (name, sorted(config))
        assert config["image_ids"] and set(config["image_ids"]) <= set(EXPORTABLE_IMAGE_IDS), config["image_ids"]
        assert config["bucket_name"] in WRITABLE_BUCKETS, config["bucket_name"]
        assert config["export_format"] in EXPORT_FORMATS, config["export_format"]
        assert len(config["file_name_prefixes"]) == len(config["image_ids"]), "one prefix per image"
        assert config["region"] == args.region == connection(svc)["extra"]["region"]
        poke = config["poke_interval"]
        assert isinstance(poke, int | float) and not isinstance(poke, bool) and poke > 0, poke


# -- the emulator service, run for real ----------------------------------------------------------


@pytest.fixture(scope="module")
def running_emulator(services: dict[str, dict[str, Any]]) -> Iterator[str]:
    """The compose command, on a free loopback port; yields its URL (the first line it prints)."""
    argv, _ = emulator_args(services)
    argv = [*argv, "--host", "127.0.0.1", "--port", "0"]  # argparse: the last value wins
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow_cvm_export.emulator", *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None  # both piped
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://"), f"emulator did not start: {url!r} {proc.stderr.read() if not url else ''}"
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_emulator_command_listens_on_all_interfaces(services: dict[str, dict[str, Any]]) -> None:
    _, args = emulator_args(services)
    assert args.host == "0.0.0.0", "other containers cannot reach an emulator bound to loopback"
    exposed = {str(p) for p in services[EMULATOR].get("expose", [])} | {
        str(p).split(":")[-1] for p in services[EMULATOR].get("ports", [])
    }
    assert str(args.port) in exposed, f"port {args.port} is not exposed"


def test_emulator_health_check_succeeds_against_a_running_emulator(
    services: dict[str, dict[str, Any]], running_emulator: str
) -> None:
    _, args = emulator_args(services)
    test = services[EMULATOR]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], "check with the image's python (no curl needed)"
    code = test[3]
    assert "urllib.request" in code and f"localhost:{args.port}/_emulator/state" in code, code
    code = code.replace(f"http://localhost:{args.port}", running_emulator)
    assert subprocess.run([sys.executable, "-c", code], timeout=20).returncode == 0
    # ... and it must fail when nothing answers, or it would prove nothing.
    dead = test[3].replace(f"localhost:{args.port}", "127.0.0.1:1")
    assert subprocess.run([sys.executable, "-c", dead], capture_output=True, timeout=20).returncode != 0


def test_connection_credentials_open_the_variable_images(
    airflow_services: dict[str, dict[str, Any]], running_emulator: str
) -> None:
    svc = airflow_services["airflow-worker"]
    conn, config = connection(svc), json.loads(env_of(svc)[CONFIG_VAR])
    body = json.dumps({"ImageIds": config["image_ids"]}).encode()
    headers = sign_tc3(
        secret_id=conn["login"],
        secret_key=conn["password"],
        service="cvm",
        host=urlsplit(running_emulator).netloc,
        action="DescribeImages",
        version="2017-03-12",
        payload=body,
        timestamp=int(time.time()),
        region=conn["extra"]["region"],
    )
    answer = requests.post(running_emulator + "/", data=body, headers=headers, timeout=10).json()["Response"]
    assert "Error" not in answer, answer.get("Error")
    assert sorted(i["ImageId"] for i in answer["ImageSet"]) == sorted(config["image_ids"])
    assert {i["ImageState"] for i in answer["ImageSet"]} == {"NORMAL"}


# -- Dockerfile and .dockerignore ----------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", "", "\n".join(ln for ln in DOCKERFILE.read_text().splitlines() if not ln.startswith("#")))
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in text.splitlines() if ln.strip()]


def constraint(name: str) -> str:
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.lower().startswith(f"{name}=="):
            return line.split("==", 1)[1].strip()
    pytest.fail(f"constraints.txt does not pin {name}")


def test_dockerfile_base_image_matches_constraints() -> None:
    froms = [args for instr, args in dockerfile_instructions() if instr == "FROM"]
    assert len(froms) == 1, froms
    match = re.fullmatch(r"apache/airflow:(\d+\.\d+\.\d+)-python(\d+\.\d+)", froms[0].strip())
    assert match, f"FROM must pin apache/airflow:<version>-python<version>, got {froms[0]!r}"
    airflow_version, python_version = match.groups()
    assert airflow_version == constraint("apache-airflow"), "Dockerfile and constraints.txt pin different Airflows"
    assert airflow_version == constraint("apache-airflow-core")
    setup_cfg = (ROOT / "setup.cfg").read_text()
    assert f"Programming Language :: Python :: {python_version}" in setup_cfg, python_version
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'target-version = "py{python_version.replace(".", "")}"' in pyproject, python_version


def test_dockerfile_installs_the_package_with_airflow_pinned_in_the_same_pip_call() -> None:
    runs = [args for instr, args in dockerfile_instructions() if instr == "RUN"]
    installs = [call for run in runs for call in re.split(r"&&|\|\||;", run) if re.search(r"\bpip install\b", call)]
    assert len(installs) == 1, installs
    words = shlex.split(installs[0])
    assert "apache-airflow==${AIRFLOW_VERSION}" in words or f"apache-airflow=={constraint('apache-airflow')}" in words
    copied = {Path(w).name for instr, args in dockerfile_instructions() if instr == "COPY" for w in args.split()}
    package_args = [w for w in words if w.startswith((".", "/")) and not w.endswith(".txt")]
    assert package_args, f"the package itself is not in the pip call: {words}"
    constraints_at = words.index("-c") if "-c" in words else words.index("--constraint")
    assert words[constraints_at + 1].endswith("constraints.txt")
    assert "constraints.txt" in copied
    users = [args.strip() for instr, args in dockerfile_instructions() if instr == "USER"]
    assert users in ([], ["airflow"]), "pip must run as the image's airflow user"


def test_dockerfile_installs_the_celery_extra_and_runs_pip_check() -> None:
    """The image gets the pins tests/system ran with, and a build whose pins break the base image fails."""
    (run,) = [args for instr, args in dockerfile_instructions() if instr == "RUN" and "pip install" in args]
    calls = [call.strip() for call in re.split(r"&&|\|\||;", run)]
    install = next(i for i, call in enumerate(calls) if re.search(r"\bpip install\b", call))
    assert any(word.endswith("airflow-cvm-export[celery]") for word in shlex.split(calls[install])), calls[install]
    assert "pip check" in calls[install + 1 :], calls
    # Flask-AppBuilder (FabAuthManager, the compose file's auth manager, in the base image) wants < 3.
    assert int(constraint("python-dateutil").split(".")[0]) < 3
    for name in ("apache-airflow-providers-celery", "redis", "psycopg", "psycopg-binary", "psycopg2-binary", "asyncpg"):
        constraint(name)


def test_dockerignore_keeps_what_the_dockerfile_copies() -> None:
    rules = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    rules = [ln for ln in rules if ln and not ln.startswith("#")]

    def ignored(path: str) -> bool:
        result = False
        for rule in rules:
            negate = rule.startswith("!")
            pattern = rule.lstrip("!").rstrip("/")
            if fnmatch(path, pattern) or fnmatch(path.split("/")[0], pattern):
                result = not negate
        return result

    sources = []
    for instr, args in dockerfile_instructions():
        if instr == "COPY":
            words = [w for w in args.split() if not w.startswith("--")]
            sources += words[:-1]
    assert sources, "the Dockerfile copies nothing"
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not ignored(source), f".dockerignore excludes {source}, which the Dockerfile copies"
    for heavy in (".venv", ".git", "logs", "dags", "tests"):
        assert ignored(heavy), f"{heavy} should stay out of the build context"
