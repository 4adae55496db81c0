"""Build the local stand-ins for the three images docker-compose.yaml names, with no image registry.

``python scripts/compose_standins.py`` (``make compose-test`` does it first) leaves these tags in the
local Docker daemon, each built from tests/deploy/standins/<name>/:

- ``airflow-cvm-export-standin/debian:bookworm``: ``debootstrap --variant=minbase bookworm`` imported
  with ``docker import`` (Debian's mirror is the only source; containers reach it over the bridge);
- ``postgres:16``, ``redis:7.2-bookworm``: Debian's PostgreSQL and Redis on that base;
- ``apache/airflow:3.3.2-python3.11``: Debian's Python 3.11 with Airflow from a wheelhouse that pip
  downloads here on the host (``pip download -c constraints.txt`` for CPython 3.11 on manylinux
  x86_64) and the build installs offline.

Each image carries the hash of its inputs (the files of its directory, the base image, and for Airflow
the constraints) in the label ``LABEL``; an image whose label matches is kept, so a warm run builds
nothing. The wheelhouse is kept under ``$COMPOSE_TEST_CACHE`` (default ``~/.cache/airflow-cvm-export``),
keyed by the hash of what it holds.
"""

from __future__ import annotations

import configparser
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STANDINS = ROOT / "tests" / "deploy" / "standins"
LABEL = "org.airflow-cvm-export.standin-inputs"
BASE = "airflow-cvm-export-standin/debian:bookworm"
DEBOOTSTRAP = ["debootstrap", "--variant=minbase", "bookworm"]
MIRROR = "http://deb.debian.org/debian"
# Tag (exactly as docker-compose.yaml names it) -> directory under tests/deploy/standins.
IMAGES = {"redis:7.2-bookworm": "redis", "postgres:16": "postgres", "apache/airflow:3.3.2-python3.11": "airflow"}
AIRFLOW_INPUTS = (ROOT / "constraints.txt", ROOT / "setup.cfg", ROOT / "pyproject.toml")
# The wheels' platform: the stand-in's CPython, Debian bookworm's 3.11.2 (markers such as redis's
# python_full_version < "3.11.3" need the full version), glibc 2.36, x86_64.
PYTHON_VERSION = "3.11.2"
# pip download evaluates environment markers with the host's Python, not --python-version: what the
# stand-in's 3.11.2 needs that a newer host skips (redis: async-timeout; python_full_version < "3.11.3").
HOST_MARKERS = ["async-timeout"]
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(36, 4, -1)] + [
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
]


def cache_dir() -> Path:
    return Path(os.environ.get("COMPOSE_TEST_CACHE") or Path.home() / ".cache" / "airflow-cvm-export")


def digest(*parts: bytes | str | Path) -> str:
    """sha256 over strings, bytes and files (a directory: each file by relative path and content)."""
    sha = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            files = sorted(p for p in part.rglob("*") if p.is_file()) if part.is_dir() else [part]
            for path in files:
                sha.update(str(path.relative_to(part if part.is_dir() else part.parent)).encode())
                sha.update(oct(path.stat().st_mode & 0o111).encode())
                sha.update(path.read_bytes())
        else:
            sha.update(part.encode() if isinstance(part, str) else part)
    return sha.hexdigest()[:16]


def built_with(tag: str) -> str | None:
    """The inputs hash a local image was built with, or None when there is no such image."""
    done = subprocess.run(
        ["docker", "image", "inspect", "--format", f'{{{{index .Config.Labels "{LABEL}"}}}}', tag],
        capture_output=True,
        text=True,
    )
    return done.stdout.strip() if done.returncode == 0 else None


def image_id(tag: str) -> str:
    return subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", tag], capture_output=True, text=True, check=True
    ).stdout.strip()


def build_base() -> None:
    """debootstrap a minimal bookworm and ``docker import`` it as BASE."""
    inputs = digest(" ".join([*DEBOOTSTRAP, MIRROR]))
    if built_with(BASE) == inputs:
        return
    with tempfile.TemporaryDirectory(prefix="standin-rootfs-") as scratch:
        rootfs = Path(scratch) / "rootfs"
        subprocess.run(["nice", *DEBOOTSTRAP, str(rootfs), MIRROR], check=True, stdout=subprocess.DEVNULL)
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (rootfs / cache).glob("*"):
                if path.is_file():
                    path.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(
            ["docker", "import", "--change", f"LABEL {LABEL}={inputs}", "-", BASE],
            stdin=tar.stdout,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        if tar.wait() != 0:
            raise RuntimeError("tar of the debootstrapped root failed")


def wheel_requirements() -> list[str]:
    """What the wheelhouse must hold: the stand-in's packages, the [celery] extra and the build backend."""
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    celery = [line for line in setup["options.extras_require"]["celery"].splitlines() if line.strip()]
    requirements = (STANDINS / "airflow" / "requirements.txt").read_text().splitlines()
    standin = [line for line in requirements if line.strip() and not line.startswith("#")]
    pin = next(
        line for line in (ROOT / "constraints.txt").read_text().splitlines() if line.startswith("apache-airflow==")
    )
    return [pin, *standin, *celery, "setuptools", "wheel", *HOST_MARKERS]


def wheelhouse() -> Path:
    """The host-side wheelhouse (kept in the cache), downloaded by pip for the stand-in's platform."""
    constraints = [ROOT / "constraints.txt", STANDINS / "airflow" / "standin-constraints.txt"]
    requirements = wheel_requirements()
    target = cache_dir() / f"wheelhouse-{digest(*constraints, ' '.join(requirements), PYTHON_VERSION, *PLATFORMS)}"
    if (target / ".complete").exists():
        return target
    for old in cache_dir().glob("wheelhouse-*"):  # one wheelhouse kept: the current inputs'
        shutil.rmtree(old, ignore_errors=True)
    target.mkdir(parents=True)
    platforms = [flag for platform in PLATFORMS for flag in ("--platform", platform)]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "-d", str(target), "--only-binary=:all:", *platforms]
        + ["--python-version", PYTHON_VERSION, "--implementation", "cp", "--abi", "cp311"]
        + [arg for path in constraints for arg in ("-c", str(path))]
        + requirements,
        check=True,
    )
    (target / ".complete").touch()
    return target


def build_image(tag: str, directory: str) -> bool:
    """Build one stand-in unless the local image carries the same inputs hash; True when it built."""
    source = STANDINS / directory
    extra = AIRFLOW_INPUTS if directory == "airflow" else ()
    inputs = digest(image_id(BASE), source, *extra)
    if built_with(tag) == inputs:
        return False
    with tempfile.TemporaryDirectory(prefix=f"standin-{directory}-") as scratch:
        context = Path(scratch) / "context"
        shutil.copytree(source, context)
        if directory == "airflow":
            shutil.copytree(wheelhouse(), context / "wheelhouse", ignore=shutil.ignore_patterns(".complete"))
            shutil.copy(ROOT / "constraints.txt", context / "constraints.txt")
        subprocess.run(
            ["nice", "docker", "build", "-q", "--label", f"{LABEL}={inputs}", "-t", tag, str(context)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return True


def build_all() -> dict[str, float]:
    """Build (or keep) the base and every stand-in; seconds spent on each."""
    spent: dict[str, float] = {}
    start = time.monotonic()
    build_base()
    spent[BASE] = time.monotonic() - start
    for tag, directory in IMAGES.items():
        start = time.monotonic()
        build_image(tag, directory)
        spent[tag] = time.monotonic() - start
    return spent


def main() -> None:
    for tag, seconds in build_all().items():
        print(f"{tag}: {seconds:.1f} s")


if __name__ == "__main__":
    main()
