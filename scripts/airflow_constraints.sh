#!/usr/bin/env bash
# Writes constraints-airflow-X.Y.txt: a pinned working set (Python 3.11) for one Airflow release,
# resolved from setup.cfg's install_requires and test/bench extras with only the versions PyPI had
# on DATE (the day after that release: Airflow's own constraints files are not reachable here).
# Usage: scripts/airflow_constraints.sh 3.2.2 2026-05-30
set -euo pipefail
version=$1
date=$2
cd "$(dirname "$0")/.."
out="constraints-airflow-${version%.*}.txt"
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
python3.11 -m venv "$tools"
"$tools/bin/python" -m pip install -q uv==0.13.8
echo "apache-airflow==$version" >"$tools/airflow.in"
{
    echo "# Airflow $version on Python 3.11: make test-matrix builds .venv-${version%.*} from this file."
    echo "# Written by: scripts/airflow_constraints.sh $version $date"
    SSL_CERT_FILE=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt} "$tools/bin/uv" pip compile --quiet \
        --python-version 3.11 --exclude-newer "${date}T00:00:00Z" --no-header --no-annotate \
        --extra test --extra bench setup.cfg "$tools/airflow.in"
} >"$tools/constraints.txt"
mv "$tools/constraints.txt" "$out"
echo "wrote $out"
