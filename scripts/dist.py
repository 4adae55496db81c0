"""``make dist``: build the sdist, then the wheel from that sdist, and check both with twine.

``python scripts/dist.py [OUTDIR]`` (default ``dist/``). The build runs without build isolation,
with the setuptools and wheel pinned in constraints.txt (the ``release`` extra), so a release is
built by the same tools every time. Building the wheel from the sdist means a file the sdist
leaves out breaks the wheel too. Exits non-zero when a step fails; prints the two file names.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build(outdir: Path) -> list[Path]:
    """Build and check the distributions into an emptied ``outdir``; return their paths (sdist, wheel)."""
    shutil.rmtree(outdir, ignore_errors=True)
    shutil.rmtree(ROOT / "build", ignore_errors=True)  # stale setuptools output would leak into the wheel
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(outdir), str(ROOT)], check=True)
    dists = sorted(outdir.glob("*.tar.gz")) + sorted(outdir.glob("*.whl"))
    if len(dists) != 2:
        raise SystemExit(f"expected one sdist and one wheel in {outdir}, found {[d.name for d in dists]}")
    subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *map(str, dists)], check=True)
    return dists


def main(argv: list[str]) -> int:
    """Build into ``argv[0]`` (default ``dist``)."""
    for dist in build(Path(argv[0] if argv else ROOT / "dist").resolve()):
        print(dist)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
