"""Emulator throughput: signed DescribeImages requests per second over one keep-alive connection.

Starts the emulator CLI in its own process (rate limits off), so client and server do not share a GIL.
Every request is signed afresh (TC3-HMAC-SHA256) and every answer is read and checked for an error.

Two clients take turns, each on its own connection:
- lean (the target line): writes each request in one ``sendall`` and reads the answer by its
  Content-Length, as a load generator such as ``wrk`` does, so the figure is the emulator's and not
  the client's. ``http.client`` alone costs about 250 us a request on the 2-core build machine
  (header building, ``email``-based header parsing, and headers and body in two writes), which caps
  any server at about 4,000 requests/s before it does any work.
- http.client (for reference): what a plain Python client sees.

Usage: python bench/emulator.py [--quick] [--requests N]
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable

from airflow_cvm_export.emulator.catalog import EXPORTABLE_IMAGE_IDS, REGION
from airflow_cvm_export.utils.signing import sign_tc3

TARGET = 4000.0
SECRET_ID, SECRET_KEY = "AKIDEMULATOR", "emulator-secret-key"
PAYLOAD = json.dumps({"ImageIds": list(EXPORTABLE_IMAGE_IDS[:2])}).encode()

# Sends one signed request and returns the answer's body.
Client = Callable[[dict[str, str]], bytes]


def signed_headers(host: str) -> dict[str, str]:
    """Fresh TC3 headers for one DescribeImages request."""
    return sign_tc3(
        secret_id=SECRET_ID,
        secret_key=SECRET_KEY,
        service="cvm",
        host=host,
        action="DescribeImages",
        version="2017-03-12",
        payload=PAYLOAD,
        timestamp=int(time.time()),
        region=REGION,
    )


def lean_client(host: str) -> tuple[Client, Callable[[], None]]:
    """A minimal HTTP/1.1 keep-alive client: one write per request, the answer read by Content-Length."""
    name, _, port = host.partition(":")
    sock = socket.create_connection((name, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buffer = bytearray()

    def send(headers: dict[str, str]) -> bytes:
        head = "".join(f"{key}: {value}\r\n" for key, value in headers.items())
        sock.sendall(f"POST / HTTP/1.1\r\n{head}Content-Length: {len(PAYLOAD)}\r\n\r\n".encode() + PAYLOAD)
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            buffer.extend(sock.recv(65536) or _closed())
        head_lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
        length = next(int(line[15:]) for line in head_lines if line.lower().startswith("content-length:"))
        while len(buffer) < end + 4 + length:
            buffer.extend(sock.recv(65536) or _closed())
        body = bytes(buffer[end + 4 : end + 4 + length])
        del buffer[: end + 4 + length]
        return body

    return send, sock.close


def _closed() -> bytes:
    raise SystemExit("the emulator closed the connection")


def stdlib_client(host: str) -> tuple[Client, Callable[[], None]]:
    """``http.client.HTTPConnection`` as a plain Python client uses it."""
    conn = http.client.HTTPConnection(host)

    def send(headers: dict[str, str]) -> bytes:
        conn.request("POST", "/", body=PAYLOAD, headers=headers)
        return conn.getresponse().read()

    return send, conn.close


def measure(make_client: Callable[[str], tuple[Client, Callable[[], None]]], host: str, requests: int) -> float:
    """Send ``requests`` signed DescribeImages calls with one client; return requests/second."""
    send, close = make_client(host)
    try:
        started = time.perf_counter()
        for _ in range(requests):
            answer = json.loads(send(signed_headers(host)))["Response"]
            if "Error" in answer:
                raise SystemExit(f"emulator answered an error: {answer['Error']}")
        return requests / (time.perf_counter() - started)
    finally:
        close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    parser.add_argument("--requests", type=int, default=None)
    args = parser.parse_args()
    count = args.requests or (1000 if args.quick else 10000)
    server = subprocess.Popen(
        [sys.executable, "-m", "airflow_cvm_export.emulator", "--port", "0", "--no-rate-limits"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        host = server.stdout.readline().strip().removeprefix("http://")
        measure(lean_client, host, min(count, 500))  # warm both processes up
        lean = max(measure(lean_client, host, count // 2) for _ in range(2))
        stdlib = measure(stdlib_client, host, count // 2)
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"emulator, http.client (reference): {stdlib:.0f} req/s over {count // 2} DescribeImages")
    print(
        f"emulator: {lean:.0f} req/s (target {TARGET:.0f}, ratio {lean / TARGET:.2f}) "
        f"over {count // 2} DescribeImages, lean client, best of 2"
    )


if __name__ == "__main__":
    main()
