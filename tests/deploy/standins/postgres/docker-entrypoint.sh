#!/usr/bin/env bash
# Entrypoint of the postgres stand-in: as root, own the data directory and drop to "postgres"; on an
# empty PGDATA, initdb (UTF8) with POSTGRES_USER as superuser (password POSTGRES_PASSWORD, required) and
# create POSTGRES_DB; then `postgres` listening on every address, password auth from the network.
set -euo pipefail

if [[ ${1:-} != postgres ]]; then
    exec "$@"
fi
if [[ $(id -u) == 0 ]]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [[ ! -s $PGDATA/PG_VERSION ]]; then
    : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set (the stand-in, like postgres:16, refuses an empty one)}"
    user=${POSTGRES_USER:-postgres}
    db=${POSTGRES_DB:-$user}
    # UTF8, as postgres:16 (LANG=en_US.utf8) gives: in the C locale initdb would pick SQL_ASCII, where
    # psycopg 3 (the Celery result backend's db+postgresql://) returns bytes for text and the workers fail.
    initdb --username="$user" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 -D "$PGDATA" >/dev/null
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    if [[ $db != postgres ]]; then
        echo "CREATE DATABASE \"$db\";" | postgres --single -D "$PGDATA" -j postgres >/dev/null
    fi
    echo "PostgreSQL init process complete; database ${db} owned by ${user}."
fi
shift
exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
