"""Run every benchmark in ``bench/`` (what ``make bench`` does), each in its own interpreter.

Streams each benchmark's output, then repeats every line naming a ratio or target in a summary. The whole run
must finish within 5 minutes: a benchmark still running at the deadline is stopped and reported.
Exits non-zero if any benchmark failed, missed its target or was stopped.

Usage: python bench/run_all.py [--quick]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
BUDGET_SECONDS = 290.0
# chart.py draws docs/performance.png from several runs; celery_nightly.py needs PostgreSQL and Redis
# and several minutes: run it on its own.
NOT_BENCHMARKS = {Path(__file__).name, "chart.py", "celery_nightly.py"}


def run(path: Path, quick: bool, deadline: float) -> tuple[int | None, list[str]]:
    """Run one benchmark, echoing its output; return (exit code or None if stopped, its ratio/target lines)."""
    command = [sys.executable, str(path), *(["--quick"] if quick else [])]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=BENCH.parent)
    ratios = []
    try:
        for line in proc.stdout:
            print(f"  {line}", end="", flush=True)
            if "ratio" in line.lower() or "target" in line.lower():
                ratios.append(line.strip())
            if time.monotonic() > deadline:
                raise TimeoutError
        return proc.wait(timeout=max(deadline - time.monotonic(), 1)), ratios
    except (TimeoutError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()
        return None, ratios


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    args = parser.parse_args()
    started = time.monotonic()
    deadline = started + BUDGET_SECONDS
    results = []
    for path in sorted(p for p in BENCH.glob("*.py") if p.name not in NOT_BENCHMARKS):
        print(f"== {path.name}", flush=True)
        began = time.monotonic()
        code, ratios = run(path, args.quick, deadline)
        results.append((path.name, code, ratios, time.monotonic() - began))
    print(f"\n== summary ({time.monotonic() - started:.0f} s)")
    for name, code, ratios, seconds in results:
        status = "stopped at the 5-minute budget" if code is None else ("ok" if code == 0 else f"exit {code}")
        print(f"{name} ({seconds:.0f} s, {status})")
        for ratio in ratios or ["(no ratio or target line)"]:
            print(f"  {ratio}")
    return 0 if all(code == 0 for _, code, _, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
