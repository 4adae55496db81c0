"""Raw, malformed and hostile HTTP to the emulator: every request it can read gets an HTTP status and a
body in the real service's error format (API 3.0 JSON for ``/``, COS XML for ``/<bucket>/...``), the
server stays up for everyone else, idle connections are closed and cannot starve a real client."""

from __future__ import annotations

import json
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from airflow_cvm_export.emulator import Emulator
from airflow_cvm_export.emulator.httpserver import MAX_BODY
from airflow_cvm_export.utils.signing import sign_tc3

pytestmark = pytest.mark.reliability

SECRET_ID, SECRET_KEY = "AKIDEMULATOR", "emulator-secret-key"
BUCKET_PATH = "/exports-1250000000/img-centos01.raw"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(secret_id=SECRET_ID, secret_key=SECRET_KEY, idle_timeout=5, rate_limits={}) as emulator:
        yield emulator


def exchange(emulator: Emulator, data: bytes, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes on a new connection; return the (first) response's status, headers and body."""
    with socket.create_connection((emulator.host, emulator.port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except OSError:  # the server may answer (and close) before a large request is sent
            pass
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed without an answer, after {received[:200]!r}"
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
        length = 0 if data.startswith(b"HEAD") else int(headers["content-length"])
        while len(body) < length:
            chunk = sock.recv(65536)
            assert chunk, "connection closed in the middle of the answer"
            body += chunk
    return int(lines[0].split()[1]), headers, body[:length]


def cvm_code(body: bytes) -> str:
    response = json.loads(body)["Response"]
    assert response["RequestId"] and response["Error"]["Message"]
    return response["Error"]["Code"]


def cos_code(body: bytes) -> str:
    root = ET.fromstring(body)
    assert root.tag == "Error" and root.findtext("RequestId") and root.findtext("Message") is not None
    return root.findtext("Code") or ""


def assert_still_serving(emulator: Emulator) -> None:
    answer = requests.get(emulator.url + "/_emulator/catalog", timeout=5)
    assert answer.status_code == 200 and answer.json()["images"]


def post(headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = ["POST / HTTP/1.1", *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join([*lines, f"Content-Length: {len(body)}", "", ""])).encode("latin-1") + body


def signed(emulator: Emulator, action: str, body: bytes) -> bytes:
    host = f"{emulator.host}:{emulator.port}"
    headers = sign_tc3(
        secret_id=SECRET_ID,
        secret_key=SECRET_KEY,
        service="cvm",
        host=host,
        action=action,
        version="2017-03-12",
        payload=body,
        timestamp=int(time.time()),
        region="ap-guangzhou",
    )
    return post(headers, body)


H = b"Host: x\r\n"
# (request bytes, expected status, "cvm"/"cos", expected error code)
TRANSPORT_CASES: list[tuple[bytes, int, str, str]] = [
    (b"GARBAGE\r\n\r\n", 400, "cvm", "InvalidParameter"),
    (b"GET /\r\n\r\n", 400, "cvm", "InvalidParameter"),
    (b"GET / HTTP/1.1 extra\r\n\r\n", 400, "cvm", "InvalidParameter"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, "cvm", "InvalidParameter"),  # TLS hello
    (b"GET / HTTP/2.0\r\n\r\n", 505, "cvm", "UnsupportedProtocol"),
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "cvm", "UnsupportedProtocol"),
    (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414, "cvm", "RequestSizeLimitExceeded"),
    (b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n", 431, "cvm", "RequestSizeLimitExceeded"),
    (b"GET / HTTP/1.1\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n", 431, "cvm", "RequestSizeLimitExceeded"),
    (b"POST / HTTP/1.1\r\n" + H + b"no colon here\r\n\r\n", 400, "cvm", "InvalidParameter"),
    (b"POST / HTTP/1.1\r\n" + H + b": empty name\r\n\r\n", 400, "cvm", "InvalidParameter"),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400, "cvm", "InvalidParameter"),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -99999999\r\n\r\n", 400, "cvm", "InvalidParameter"),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nhello", 400, "cvm", "InvalidParameter"),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x10\r\n\r\n", 400, "cvm", "InvalidParameter"),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: abc\r\n\r\n", 400, "cvm", "InvalidParameter"),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1e3\r\n\r\n", 400, "cvm", "InvalidParameter"),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length:\r\n\r\n", 400, "cvm", "InvalidParameter"),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        400,
        "cvm",
        "InvalidParameter",
    ),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999999999999\r\n\r\n", 400, "cvm", "InvalidParameter"),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1099511627776\r\n\r\n", 413, "cvm", "RequestSizeLimitExceeded"),
    (
        b"POST / HTTP/1.1\r\n" + H + f"Content-Length: {MAX_BODY + 1}\r\n\r\n".encode(),
        413,
        "cvm",
        "RequestSizeLimitExceeded",
    ),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        411,
        "cvm",
        "UnsupportedProtocol",
    ),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello",
        411,
        "cvm",
        "UnsupportedProtocol",
    ),
    (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n", 411, "cvm", "UnsupportedProtocol"),
    (b"GET /exports-1250000000/x HTTP/1.1\r\n" + H + b"Content-Length: -5\r\n\r\n", 400, "cos", "InvalidRequest"),
    (
        b"GET " + BUCKET_PATH.encode() + b" HTTP/1.1\r\nContent-Length: 1099511627776\r\n\r\n",
        413,
        "cos",
        "EntityTooLarge",
    ),
    (
        b"GET " + BUCKET_PATH.encode() + b" HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        411,
        "cos",
        "MissingContentLength",
    ),
    (b"GET /exports-1250000000/" + b"k" * 70_000 + b" HTTP/1.1\r\n\r\n", 414, "cvm", "RequestSizeLimitExceeded"),
    (b"GET " + BUCKET_PATH.encode() + b" HTTP/1.1\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n", 431, "cos", "InvalidRequest"),
    (b"GET " + BUCKET_PATH.encode() + b" HTTP/3\r\n\r\n", 505, "cos", "InvalidRequest"),
    (b"GET " + BUCKET_PATH.encode() + b" HTTP/1.1\r\nbroken header\r\n\r\n", 400, "cos", "InvalidRequest"),
]


@pytest.mark.parametrize(("data", "status", "service", "code"), TRANSPORT_CASES)
def test_malformed_http_gets_an_answer_in_the_service_format(
    emu: Emulator, data: bytes, status: int, service: str, code: str
) -> None:
    answer_status, headers, body = exchange(emu, data)
    assert answer_status == status
    assert headers["connection"] == "close"  # the rest of the stream cannot be trusted
    if service == "cvm":
        assert headers["content-type"] == "application/json" and cvm_code(body) == code
    else:
        assert headers["content-type"] == "application/xml" and cos_code(body) == code
    assert_still_serving(emu)


def test_head_with_a_huge_content_length_gets_headers_only(emu: Emulator) -> None:
    status, headers, _ = exchange(
        emu, b"HEAD " + BUCKET_PATH.encode() + b" HTTP/1.1\r\nContent-Length: 1099511627776\r\n\r\n"
    )
    assert status == 413 and headers["content-type"] == "application/xml"
    assert_still_serving(emu)


def deep(depth: int) -> bytes:
    return b'{"ImageIds": ' + b"[" * depth + b"]" * depth + b"}"


# Signed API 3.0 requests with hostile bodies: answered like the real API (HTTP 200, Response.Error).
SIGNED_CASES: list[tuple[str, bytes, str]] = [
    ("DescribeImages", deep(5000), "InvalidParameter"),
    ("DescribeImages", deep(100), "InvalidParameter"),
    ("ExportImages", b'{"BucketName": "b", "ImageIds": ' + b"[" * 100_000 + b"}", "InvalidParameter"),
    ("DescribeImages", b'{"Filters": [{"Name": ["image-id"], "Values": ["img-centos01"]}]}', "InvalidParameter"),
    ("DescribeImages", b'{"Filters": [{"Name": {"a": 1}, "Values": ["img-centos01"]}]}', "InvalidParameter"),
    ("DescribeImages", b'{"Filters": [{"Name": "image-id", "Values": "img-centos01"}]}', "InvalidParameter"),
    ("DescribeImages", b'{"Filters": [{"Name": "no-such-filter", "Values": ["x"]}]}', "InvalidFilter"),
    ("DescribeImages", b'{"Filters": [["image-id"]]}', "InvalidParameter"),
    ("DescribeImages", b'{"Filters": "image-id"}', "InvalidParameter"),
    ("DescribeImages", b'{"ImageIds": [["img-centos01"]]}', "InvalidParameter"),
    ("DescribeImages", b'{"ImageIds": "img-centos01"}', "InvalidParameter"),
    ("DescribeImages", b'{"Limit": "10"}', "InvalidParameter"),
    ("DescribeImages", b'{"Offset": 1e400}', "InvalidParameter"),
    ("DescribeImages", b'{"Limit": 100000000000000000000000}', "InvalidParameterValue"),
    ("DescribeImages", b"[1, 2]", "InvalidParameter"),
    ("DescribeImages", b'"text"', "InvalidParameter"),
    ("DescribeImages", b"{not json", "InvalidParameter"),
    ("DescribeImages", b"\xff\xfe\x00{", "InvalidParameter"),
    ("DescribeImages", b'{"ImageIds": ["img-centos01"]} trailing', "InvalidParameter"),
    ("DescribeRegions", b'{"x": ' + b"[" * 5000 + b"]" * 5000 + b"}", "InvalidParameter"),
]


@pytest.mark.parametrize(("action", "body", "code"), SIGNED_CASES)
def test_hostile_signed_bodies_get_an_api_error(emu: Emulator, action: str, body: bytes, code: str) -> None:
    status, headers, answer = exchange(emu, signed(emu, action, body))
    assert status == 200 and headers["content-type"] == "application/json"
    assert cvm_code(answer) == code
    assert_still_serving(emu)


def test_a_failure_inside_the_emulator_is_a_500_in_the_service_format(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(request: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(emu.cvm, "handle", broken)
    monkeypatch.setattr(emu.cos, "handle", broken)
    status, _, body = exchange(emu, signed(emu, "DescribeRegions", b"{}"))
    assert status == 500 and cvm_code(body) == "InternalError"
    status, _, body = exchange(emu, f"GET {BUCKET_PATH} HTTP/1.1\r\n\r\n".encode())
    assert status == 500 and cos_code(body) == "InternalError"
    monkeypatch.undo()
    assert_still_serving(emu)


def test_a_client_that_goes_away_mid_request_leaves_the_server_up(emu: Emulator) -> None:
    for partial in (b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc", b"GET / HTTP/1.1\r\nHost: x", b"GE"):
        with socket.create_connection((emu.host, emu.port)) as sock:
            sock.sendall(partial)
    assert_still_serving(emu)


def test_idle_and_slow_connections_are_closed_after_the_idle_timeout() -> None:
    with Emulator(idle_timeout=0.5) as emulator:
        idle = socket.create_connection((emulator.host, emulator.port), timeout=5)
        slow = socket.create_connection((emulator.host, emulator.port), timeout=5)
        slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        started = time.monotonic()
        assert idle.recv(1) == b"" and slow.recv(1) == b""
        assert time.monotonic() - started < 3
        idle.close()
        slow.close()
        assert_still_serving(emulator)


def _threads() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name.startswith("Thread-"))


def test_300_idle_connections_do_not_starve_a_real_client() -> None:
    with Emulator(secret_id=SECRET_ID, secret_key=SECRET_KEY, max_connections=64, rate_limits={}) as emulator:
        before = _threads()
        idle = [socket.create_connection((emulator.host, emulator.port), timeout=5) for _ in range(300)]
        try:
            started = time.monotonic()
            for _ in range(20):  # a real client, each request on a fresh connection
                status, _, body = exchange(emulator, signed(emulator, "DescribeRegions", b"{}"), timeout=5)
                assert status == 200 and json.loads(body)["Response"]["TotalCount"] > 0
            assert time.monotonic() - started < 10
            assert _threads() - before <= 64 + 8  # one thread per open connection: the cap, and a few closing
        finally:
            for sock in idle:
                sock.close()
        assert_still_serving(emulator)


def test_a_new_connection_is_refused_in_the_service_format_when_every_connection_is_busy() -> None:
    with Emulator(secret_id=SECRET_ID, secret_key=SECRET_KEY, max_connections=2, rate_limits={}) as emulator:
        emulator.inject("DescribeRegions", "slow", "slow")
        results: list[int] = []
        busy = [
            threading.Thread(
                target=lambda: results.append(exchange(emulator, signed(emulator, "DescribeRegions", b"{}"))[0])
            )
            for _ in range(2)
        ]
        for thread in busy:
            thread.start()
        time.sleep(0.5)  # both are in the middle of their (slow) answer
        status, _, body = exchange(emulator, signed(emulator, "DescribeRegions", b"{}"))
        assert status == 503 and cvm_code(body) == "RequestLimitExceeded"
        for thread in busy:
            thread.join()
        assert results == [200, 200]
        assert_still_serving(emulator)
