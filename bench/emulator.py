"""Emulator throughput: signed DescribeImages requests per second over one keep-alive connection.

Starts the emulator CLI in its own process (rate limits off), so client and server do not share a GIL.
Usage: python bench/emulator.py [--quick] [--requests N]
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import time

from airflow_cvm_export.emulator.catalog import EXPORTABLE_IMAGE_IDS, REGION
from airflow_cvm_export.utils.signing import sign_tc3

TARGET = 4000.0
SECRET_ID, SECRET_KEY = "AKIDEMULATOR", "emulator-secret-key"


def run(requests: int) -> float:
    """Send ``requests`` signed DescribeImages calls; return requests/second."""
    server = subprocess.Popen(
        [sys.executable, "-m", "airflow_cvm_export.emulator", "--port", "0", "--no-rate-limits"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = server.stdout.readline().strip()
        host = url.removeprefix("http://")
        conn = http.client.HTTPConnection(host)
        payload = json.dumps({"ImageIds": list(EXPORTABLE_IMAGE_IDS[:2])}).encode()
        started = time.perf_counter()
        for _ in range(requests):
            headers = sign_tc3(
                secret_id=SECRET_ID,
                secret_key=SECRET_KEY,
                service="cvm",
                host=host,
                action="DescribeImages",
                version="2017-03-12",
                payload=payload,
                timestamp=int(time.time()),
                region=REGION,
            )
            conn.request("POST", "/", body=payload, headers=headers)
            answer = json.loads(conn.getresponse().read())["Response"]
            if "Error" in answer:
                raise SystemExit(f"emulator answered an error: {answer['Error']}")
        elapsed = time.perf_counter() - started
        conn.close()
        return requests / elapsed
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    parser.add_argument("--requests", type=int, default=None)
    args = parser.parse_args()
    count = args.requests or (1000 if args.quick else 10000)
    rate = run(count)
    print(f"emulator: {rate:.0f} req/s (target {TARGET:.0f}, ratio {rate / TARGET:.2f}) over {count} DescribeImages")


if __name__ == "__main__":
    main()
