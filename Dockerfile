# The image every Airflow service of docker-compose.yaml runs (and the cvm-emulator service too):
# the official Airflow image with airflow-cvm-export installed.
#
#   docker compose build          # or: docker build -t airflow-cvm-export:dev .
#
# The base tag pins both Airflow and Python. Keep it equal to apache-airflow in constraints.txt
# (the build fails if they differ; tests/deploy/test_compose.py checks it too). To move to a new
# Airflow: regenerate constraints.txt, then change the tag here, in one commit.
FROM apache/airflow:3.3.2-python3.11

# Build the package from a throw-away directory, not /opt/airflow: a source tree in the working
# directory would shadow the installed package for `python -m ...`.
COPY --chown=airflow:0 setup.cfg pyproject.toml README.md LICENSE constraints.txt /tmp/airflow-cvm-export/
COPY --chown=airflow:0 airflow_cvm_export /tmp/airflow-cvm-export/airflow_cvm_export

# Install as the image's own "airflow" user, as the official image documents, and pin Airflow in
# the same pip call (AIRFLOW_VERSION is set by the base image) so pip can never up- or downgrade
# Airflow to satisfy a dependency. The [celery] extra is what docker-compose.yaml runs (Celery
# provider, redis, psycopg 3 for the db+postgresql:// result backend, psycopg2 and asyncpg for the
# metadata DB); constraints.txt pins it and everything else to the versions the test suite ran
# against (tests/system runs the same extra natively). The first check stops a build whose base
# image and constraints disagree; pip check stops one whose pins break a package of the base image
# (python-dateutil is pinned below 3 for Flask-AppBuilder, which FabAuthManager needs).
RUN grep -qxF "apache-airflow==${AIRFLOW_VERSION}" /tmp/airflow-cvm-export/constraints.txt \
        || { echo "constraints.txt does not pin apache-airflow==${AIRFLOW_VERSION} (the base image's Airflow)" >&2; \
             exit 1; } \
    && pip install --no-cache-dir \
        "apache-airflow==${AIRFLOW_VERSION}" \
        "/tmp/airflow-cvm-export[celery]" \
        -c /tmp/airflow-cvm-export/constraints.txt \
    && pip check \
    && python -c "import airflow, airflow_cvm_export; \
assert airflow.__version__ == '${AIRFLOW_VERSION}', airflow.__version__; \
print('airflow', airflow.__version__, 'airflow-cvm-export', airflow_cvm_export.__version__)" \
    && rm -rf /tmp/airflow-cvm-export
