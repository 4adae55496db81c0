#!/usr/bin/env bash
# make test-python3.13: pytest with Debian 13's Python 3.13, in a trixie chroot (needs root and debootstrap).
#
#   scripts/python3.13.sh ROOT [pytest arguments...]
#
# ROOT is made once by debootstrap (its .debootstrapped stamp lists the packages) and kept between runs;
# its venv (/opt/venv, from constraints.txt with the test and openlineage extras, an editable install of
# the checkout) is rebuilt when constraints.txt, setup.cfg or pyproject.toml change, after checking that
# every pin of constraints.txt resolves on 3.13. The checkout is bind-mounted at /src in a private mount
# namespace (unshare), so nothing stays mounted when the run ends, however it ends.
set -euo pipefail
root=$1
shift
repo=$(cd "$(dirname "$0")/.." && pwd)
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# gcc and the headers: crcmod (cos-python-sdk-v5's) has no wheel and builds from its sdist.
packages=python3,python3-venv,python3-dev,gcc,libc6-dev,ca-certificates
uv_version=0.13.8 # the uv that scripts/airflow_constraints.sh pins for the older lines' venvs

if [ "$(cat "$root/.debootstrapped" 2>/dev/null)" != "$packages" ]; then
    rm -rf "$root.partial"
    mkdir -p "$(dirname "$root")"
    debootstrap --variant=minbase --include="$packages" trixie "$root.partial" "$mirror"
    rm -rf "$root"
    mv "$root.partial" "$root"
    echo "$packages" >"$root/.debootstrapped"
fi
# The host's resolver and CA bundle (the same as Debian's, or one with a TLS-inspecting proxy's CA).
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
mkdir -p "$root/src"
venv_key=$(cat "$repo/constraints.txt" "$repo/setup.cfg" "$repo/pyproject.toml" | sha256sum | cut -c1-16)

# Inside: make the venv if its key changed, then run pytest from /src.
inside='
set -euo pipefail
cd /src
if [ "$(cat /opt/venv/.installed 2>/dev/null)" != "$VENV_KEY" ]; then
    rm -rf /opt/venv
    python3 -m venv /opt/venv
    /opt/venv/bin/pip install -q "uv==$UV_VERSION"
    /opt/venv/bin/uv pip install -q --dry-run --python /opt/venv/bin/python -r constraints.txt
    /opt/venv/bin/uv pip install -q --compile-bytecode --python /opt/venv/bin/python -c constraints.txt \
        -e ".[test,openlineage]"
    /opt/venv/bin/python -m pip check
    echo "$VENV_KEY" >/opt/venv/.installed
fi
/opt/venv/bin/python --version
exec /opt/venv/bin/python -m pytest -q -p no:cacheprovider "$@"
'
exec unshare --mount --propagation private -- bash -c '
set -euo pipefail
root=$1 repo=$2 inside=$3
shift 3
mount --bind "$repo" "$root/src"
mount -t proc proc "$root/proc"
mount -t tmpfs tmpfs "$root/dev/shm"
exec chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 VENV_KEY="'"$venv_key"'" UV_VERSION="'"$uv_version"'" \
    AIRFLOW_HOME=/src/.airflow-3.13 AIRFLOW__CORE__DAGS_FOLDER=/src/dags AIRFLOW__CORE__LOAD_EXAMPLES=False \
    bash -c "$inside" python3.13 "$@"
' unshare "$root" "$repo" "$inside" "$@"
