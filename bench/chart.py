"""Draw docs/performance.png: API calls and memory against concurrent exports, poke vs deferrable.

Deferrable figures are measured: ``bench/triggers.py`` is run for each N (one event loop, the
emulator in its own process). Poke figures are derived from measurements, not run at this scale:
each poking sensor holds a worker process (RSS measured by ``bench/triggers.py``) and sends one
DescribeImages per poke. Not part of ``make bench`` (it takes several minutes).

Usage: python bench/chart.py [--n 100 300 1000] [--poll-interval 5]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATTERNS = {
    "describe_per_cycle": r"DescribeImages calls per cycle: max (\d+)",
    "peak_rss_mb": r"peak RSS: (\d+) MB",
    "runner_mb": r"\((\d+) MB per task process",
}


def measure(n: int, poll_interval: float) -> dict[str, float]:
    """Run bench/triggers.py for N waits and pick the figures the chart needs from its report."""
    command = [sys.executable, "bench/triggers.py", "--n", str(n), "--poll-interval", str(poll_interval)]
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT).stdout
    print(out, flush=True)
    return {name: float(re.search(pattern, out).group(1)) for name, pattern in PATTERNS.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--poll-interval", type=float, default=5.0)
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(n, measure(n, args.poll_interval)) for n in args.n]
    ns = [n for n, _ in rows]
    fig, (calls, memory) = plt.subplots(1, 2, figsize=(11, 4.2))
    calls.plot(ns, ns, "o--", label="poke / reschedule (1 per sensor, derived)")
    calls.plot(ns, [r["describe_per_cycle"] for _, r in rows], "o-", label="deferrable (coalesced, measured)")
    calls.set(xlabel="concurrent exports", ylabel="DescribeImages calls per poll cycle", yscale="log")
    calls.legend()
    memory.plot(ns, [n * r["runner_mb"] / 1024 for n, r in rows], "o--", label="poke (a worker process each, derived)")
    memory.plot(ns, [r["peak_rss_mb"] / 1024 for _, r in rows], "o-", label="deferrable (one triggerer, measured)")
    memory.set(xlabel="concurrent exports", ylabel="memory (GB)", yscale="log")
    memory.legend()
    fig.suptitle(f"Waiting on exports: poke vs deferrable (poll interval {args.poll_interval:g} s)")
    fig.tight_layout()
    target = ROOT / "docs" / "performance.png"
    fig.savefig(target, dpi=110)
    print(f"wrote {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
