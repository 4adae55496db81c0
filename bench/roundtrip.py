"""Sequential signed ExportImages + DescribeImages round trips per second: CvmHook vs the official SDK.

Three clients take turns in the same run, each on its own keep-alive connection:
- ours: ``CvmHook`` with its rate limiter switched off through the ``rate_limits`` extra;
- sdk: the official ``CvmClient`` with its endpoint pointed at the same server over http;
- bare: a ``requests.Session`` posting the same bodies with headers signed once (the ceiling of
  any requests-based client).
Servers, each in its own process so they do not share the client's GIL: a canned-answer server
answering in a single write (isolates client cost), then the emulator when it is installed.
Targets: ours >= 1.5x the SDK and >= 120% of the bare session.

Usage: python bench/roundtrip.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import socketserver
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path

SECRET_ID, SECRET_KEY = "AKIDEMULATOR", "emulator-secret-key"  # the emulator's default credentials
REGION = "ap-guangzhou"
BUCKET = "exports-1250000000"
IMAGE_ID = "img-canned01"
SDK_TARGET, BARE_TARGET = 1.5, 1.2
CONN_ID = "bench_roundtrip"


CANNED = {
    b"ExportImages": {"TaskId": 1, "CosPaths": [f"/{IMAGE_ID}_system_snap-1.raw"]},
    b"DescribeImages": {"ImageSet": [{"ImageId": IMAGE_ID, "ImageState": "NORMAL"}], "TotalCount": 1},
}


def http_answer(fields: dict[str, object]) -> bytes:
    """A complete HTTP/1.1 answer carrying an API 3.0 success response."""
    body = json.dumps({"Response": {**fields, "RequestId": "canned"}}).encode()
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


class CannedHandler(socketserver.StreamRequestHandler):
    """Answers every request on a keep-alive connection with a ready-made response, in one write."""

    answers = {action: http_answer(fields) for action, fields in CANNED.items()}

    def handle(self) -> None:
        while True:
            head = []
            while (line := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                head.append(line)
            if not head:
                return
            length = next((int(h.split(b":", 1)[1]) for h in head if h.lower().startswith(b"content-length")), 0)
            self.rfile.read(length)
            action = b"ExportImages" if any(b"ExportImages" in h for h in head) else b"DescribeImages"
            self.wfile.write(self.answers[action])


def serve_canned() -> None:
    """Run the canned server until killed; print its URL first."""
    socketserver.ThreadingTCPServer.daemon_threads = True
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), CannedHandler) as server:
        print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
        server.serve_forever()


def start(command: list[str]) -> tuple[subprocess.Popen, str]:
    """Start a server process that prints its URL on the first line of stdout."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def ours(url: str, image_id: str) -> Callable[[], object]:
    from airflow_cvm_export.hooks.cvm import CvmHook

    extra = {"endpoint": url, "region": REGION, "rate_limits": {"ExportImages": 0, "DescribeImages": 0}}
    conn = {"conn_type": "tencentcloud", "login": SECRET_ID, "password": SECRET_KEY, "extra": extra}
    os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(conn)
    hook = CvmHook(CONN_ID)

    def round_trip() -> object:
        hook.export_images(image_ids=[image_id], bucket_name=BUCKET)
        return hook.describe_images([image_id])

    return round_trip


def sdk(url: str, image_id: str) -> Callable[[], object]:
    from tencentcloud.common.credential import Credential
    from tencentcloud.common.profile.client_profile import ClientProfile
    from tencentcloud.common.profile.http_profile import HttpProfile
    from tencentcloud.cvm.v20170312 import cvm_client, models

    profile = ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=url.removeprefix("http://")))
    profile.httpProfile.keepAlive = True
    client = cvm_client.CvmClient(Credential(SECRET_ID, SECRET_KEY), REGION, profile)

    def round_trip() -> object:
        export = models.ExportImagesRequest()
        export.ImageIds, export.BucketName = [image_id], BUCKET
        client.ExportImages(export)
        describe = models.DescribeImagesRequest()
        describe.ImageIds, describe.Limit = [image_id], 1
        return client.DescribeImages(describe).ImageSet

    return round_trip


def bare(url: str, image_id: str) -> Callable[[], object]:
    import requests

    from airflow_cvm_export.utils.signing import sign_tc3

    session = requests.Session()
    posts = []
    for action, params in (
        ("ExportImages", {"BucketName": BUCKET, "ImageIds": [image_id]}),
        ("DescribeImages", {"ImageIds": [image_id], "Limit": 1}),
    ):
        body = json.dumps(params, separators=(",", ":")).encode()
        headers = sign_tc3(
            secret_id=SECRET_ID,
            secret_key=SECRET_KEY,
            service="cvm",
            host=url.removeprefix("http://"),
            action=action,
            version="2017-03-12",
            payload=body,
            timestamp=int(time.time()),
            region=REGION,
        )
        posts.append((body, headers))

    def round_trip() -> object:
        for body, headers in posts:
            session.post(url + "/", data=body, headers=headers).content  # noqa: B018
        return None

    return round_trip


CLIENTS = {"ours": ours, "sdk": sdk, "bare": bare}


def measure(url: str, image_id: str, rounds: int, batch: int) -> dict[str, float]:
    """Round trips per second of each client, taking turns in rotating order."""
    clients = {name: make(url, image_id) for name, make in CLIENTS.items()}
    for client in clients.values():
        for _ in range(20):
            client()  # warm up: connection, imports, caches
    spent = dict.fromkeys(clients, 0.0)
    names = list(clients)
    for number in range(rounds):
        for name in names[number % 3 :] + names[: number % 3]:
            client = clients[name]
            started = time.perf_counter()
            for _ in range(batch):
                client()
            spent[name] += time.perf_counter() - started
    return {name: rounds * batch / seconds for name, seconds in spent.items()}


def report(label: str, rates: dict[str, float]) -> bool:
    vs_sdk, vs_bare = rates["ours"] / rates["sdk"], rates["ours"] / rates["bare"]
    print(
        f"roundtrip[{label}]: ours {rates['ours']:.0f} rt/s, sdk {rates['sdk']:.0f} rt/s, "
        f"bare session {rates['bare']:.0f} rt/s (bare/sdk {rates['bare'] / rates['sdk']:.2f}x)"
    )
    ok = vs_sdk >= SDK_TARGET and vs_bare >= BARE_TARGET
    print(
        f"ratio roundtrip[{label}]: ours/sdk {vs_sdk:.2f}x (target >= {SDK_TARGET}), "
        f"ours/bare {vs_bare:.0%} (target >= {BARE_TARGET:.0%}) {'OK' if ok else 'BELOW TARGET'}"
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (CI)")
    parser.add_argument("--canned-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.canned_server:
        serve_canned()
        return 0
    rounds, batch = (6, 50) if args.quick else (15, 200)
    targets = [("canned", [sys.executable, str(Path(__file__).resolve()), "--canned-server"], IMAGE_ID)]
    if find_spec("airflow_cvm_export.emulator") is not None:
        from airflow_cvm_export.emulator.catalog import EXPORTABLE_IMAGE_IDS

        emulator = [
            sys.executable,
            "-m",
            "airflow_cvm_export.emulator",
            "--port",
            "0",
            "--no-rate-limits",
            "--export-seconds",
            "0",
            "--secret-id",
            SECRET_ID,
            "--secret-key",
            SECRET_KEY,
        ]
        targets.append(("emulator", emulator, EXPORTABLE_IMAGE_IDS[0]))
    else:
        print("roundtrip[emulator]: skipped, airflow_cvm_export.emulator is not available")
    ok = True
    for label, command, image_id in targets:
        proc, url = start(command)
        try:
            ok &= report(label, measure(url, image_id, rounds, batch))
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
