"""``python -m airflow_cvm_export.emulator``: run the emulator until SIGTERM or SIGINT.

Prints the base URL as the first line of stdout.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from airflow_cvm_export.emulator.catalog import REGION
from airflow_cvm_export.emulator.cvm.models import PROGRESSIONS
from airflow_cvm_export.emulator.faults import FAULT_KINDS
from airflow_cvm_export.emulator.httpserver import IDLE_TIMEOUT, MAX_CONNECTIONS
from airflow_cvm_export.emulator.server import DEFAULT_MAX_RUNNING_EXPORTS, Emulator
from airflow_cvm_export.emulator.sts.models import DEFAULT_CAM_ROLE, DEFAULT_CREDENTIAL_LIFETIME


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line's options, each named after an :class:`Emulator` argument (but two)."""
    parser = argparse.ArgumentParser(prog="cvm-export-emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000, help="0 picks a free port")
    parser.add_argument("--secret-id", default="AKIDEMULATOR")
    parser.add_argument("--secret-key", default="emulator-secret-key")
    parser.add_argument("--token", default=None, help="require this X-TC-Token / x-cos-security-token")
    parser.add_argument("--export-seconds", type=float, default=2.0)
    parser.add_argument("--fail-rate", type=float, default=0.0, help="share of exports that fail")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of requests given a fault")
    parser.add_argument("--fault-kinds", default=",".join(FAULT_KINDS), help="comma-separated fault kinds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-running-exports", type=int, default=DEFAULT_MAX_RUNNING_EXPORTS)
    parser.add_argument("--extra-images", type=int, default=0, help="more exportable images, for scale tests")
    parser.add_argument("--region", default=REGION)
    parser.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT, help="seconds of silence before closing")
    parser.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS, help="open connections at most")
    parser.add_argument("--no-rate-limits", action="store_true", help="switch off the 20/s and 40/s limits")
    parser.add_argument(
        "--cos-clock-offset", type=float, default=0.0, help="seconds COS's clock is ahead of the true time"
    )
    parser.add_argument(
        "--credential-lifetime",
        type=float,
        default=DEFAULT_CREDENTIAL_LIFETIME,
        help="seconds every temporary credential (STS, metadata service) lives at most",
    )
    parser.add_argument("--cam-role", default=DEFAULT_CAM_ROLE, help="the CAM role the metadata service serves")
    parser.add_argument(
        "--progression", choices=PROGRESSIONS, default="time", help="how exports move on (see docs/emulator.md)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT; return the exit status."""
    args = parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    options = vars(args)  # every other option is named after an Emulator argument
    no_rate_limits = options.pop("no_rate_limits")
    fault_kinds = [kind for kind in options.pop("fault_kinds").split(",") if kind]
    emulator = Emulator(**options, rate_limits={} if no_rate_limits else None, fault_kinds=fault_kinds)
    with emulator:
        print(emulator.url, flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
