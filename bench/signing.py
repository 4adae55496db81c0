"""TC3 signatures per second: ``sign_tc3`` vs the official SDK's signer, on the same inputs.

The SDK side is its own signing code path on a ready request: the canonical request and
StringToSign (``AbstractClient._get_tc3_signature``), ``Sign.sign_tc3`` and the Authorization
header, with the UTC date computed as the SDK does. Ours returns every header of the request; it is
also shown with its per-day signing-key cache cleared before every signature.
Both take turns on the same bodies, timestamps and keys. Target: ratio >= 1.0.

Usage: python bench/signing.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from datetime import datetime

from tencentcloud.common.abstract_client import AbstractClient
from tencentcloud.common.http.request import RequestInternal

from airflow_cvm_export.utils.signing import _tc3_signing_key, sign_tc3

TARGET = 1.0
HOST = "cvm.tencentcloudapi.com"
SECRET_ID, SECRET_KEY = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE", "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE"


def inputs(count: int) -> list[tuple[str, int]]:
    """(JSON body, timestamp) pairs: ExportImages/DescribeImages bodies over two UTC days."""
    rng = random.Random(7)
    start = 1_767_225_600 - 3_600
    bodies = []
    for _ in range(count):
        ids = [f"img-{rng.randrange(16**8):08x}" for _ in range(rng.randint(1, 20))]
        params = rng.choice(({"ImageIds": ids, "Limit": len(ids)}, {"ImageIds": ids, "BucketName": "exports-125"}))
        bodies.append((json.dumps(params), start + rng.randrange(7_200)))
    return bodies


def ours(cases: list[tuple[str, int]], *, key_cache: bool = True) -> Callable[[], None]:
    prepared = [(body.encode(), timestamp) for body, timestamp in cases]
    forget = (lambda: None) if key_cache else _tc3_signing_key.cache_clear

    def run() -> None:
        for payload, timestamp in prepared:
            forget()
            sign_tc3(
                secret_id=SECRET_ID,
                secret_key=SECRET_KEY,
                service="cvm",
                host=HOST,
                action="DescribeImages",
                version="2017-03-12",
                payload=payload,
                timestamp=timestamp,
                region="ap-guangzhou",
            )

    return run


def sdk(cases: list[tuple[str, int]]) -> Callable[[], None]:
    client = AbstractClient.__new__(AbstractClient)  # the signer needs no client state
    requests = [
        RequestInternal(
            HOST, "POST", "/", {"Content-Type": "application/json", "Host": HOST, "X-TC-Timestamp": str(ts)}, body
        )
        for body, ts in cases
    ]

    def run() -> None:
        for request in requests:
            timestamp = int(request.header["X-TC-Timestamp"])
            date = datetime.utcfromtimestamp(timestamp).strftime("%Y-%m-%d")
            signature = client._get_tc3_signature({}, request, date, "cvm", SECRET_KEY)
            request.header["Authorization"] = (
                f"TC3-HMAC-SHA256 Credential={SECRET_ID}/{date}/cvm/tc3_request, "
                f"SignedHeaders=content-type;host, Signature={signature}"
            )

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (CI)")
    args = parser.parse_args()
    cases = inputs(500)
    rounds = 6 if args.quick else 30
    runners = {"ours": ours(cases), "sdk": sdk(cases), "uncached": ours(cases, key_cache=False)}
    spent = dict.fromkeys(runners, 0.0)
    for number in range(rounds):
        for name in sorted(runners, reverse=number % 2 == 1):  # alternate the order
            started = time.perf_counter()
            runners[name]()
            spent[name] += time.perf_counter() - started
    rates = {name: rounds * len(cases) / seconds for name, seconds in spent.items()}
    ratio = rates["ours"] / rates["sdk"]
    verdict = "OK" if ratio >= TARGET else "BELOW TARGET"
    print(
        f"signing: sign_tc3 {rates['ours']:,.0f} signatures/s, SDK signer {rates['sdk']:,.0f} signatures/s; "
        f"sign_tc3 without its daily signing-key cache {rates['uncached']:,.0f}/s "
        f"({rates['uncached'] / rates['sdk']:.2f}x)"
    )
    print(f"ratio signing: sign_tc3/SDK {ratio:.2f}x (target >= {TARGET}) {verdict}")
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
