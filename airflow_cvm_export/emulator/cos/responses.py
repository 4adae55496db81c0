"""COS requests: find bucket and key (virtual-hosted or path-style), check the signature, call the
backend, answer in COS XML. Nothing here holds state."""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from urllib.parse import parse_qsl, quote
from xml.sax.saxutils import escape

from airflow_cvm_export.emulator.auth import KeyRing, verify_cos
from airflow_cvm_export.emulator.catalog import APPID
from airflow_cvm_export.emulator.cos.models import MAX_KEYS, CosBackend, CosObject, Listing
from airflow_cvm_export.emulator.errors import CosError
from airflow_cvm_export.emulator.httpserver import Request, Response

XML_HEADER = "<?xml version='1.0' encoding='utf-8' ?>\n"
# What cos-python-sdk-v5 sends when given IP and Port: the bucket's own host name, e.g.
# exports-1250000000.cos.ap-guangzhou.myqcloud.com (a port may follow when the client adds it).
VIRTUAL_HOST_RE = re.compile(r"^(?P<bucket>[a-z0-9][a-z0-9-]*)\.cos\.(?P<region>[a-z0-9-]+)\.myqcloud\.com(?::\d+)?$")
FAULT_ERRORS = {
    "throttle": (503, "SlowDown", "Please reduce your request rate."),
    "internal": (500, "InternalError", "We encountered an internal error. Please try again."),
}
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
_QUOTE = {'"': "&quot;"}


@dataclass(frozen=True)
class CosAddress:
    """Where a COS request points: bucket, key (None for the bucket itself) and the path the client signed."""

    bucket: str
    key: str | None
    signed_path: str
    region: str | None  # from a virtual host; None path-style
    resource: str


def is_virtual_hosted(request: Request) -> bool:
    """True when the Host header names a bucket (``<bucket>.cos.<region>.myqcloud.com``)."""
    host = request.headers.get("host", "")
    return ".cos." in host and VIRTUAL_HOST_RE.match(host) is not None


def address(request: Request) -> CosAddress:
    """Bucket and key from the Host header (virtual-hosted), else from the path (``/<bucket>/<key>``)."""
    host = request.headers.get("host", "")
    match = VIRTUAL_HOST_RE.match(host)
    if match is not None:
        path = request.path or "/"
        return CosAddress(match["bucket"], path[1:] or None, path, match["region"], host.partition(":")[0] + path)
    bucket, _, key = request.path.lstrip("/").partition("/")
    return CosAddress(bucket, key or None, request.path, None, request.path)


def _headers(request_id: str, extra: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    return [("Server", "tencent-cos"), ("x-cos-request-id", request_id), *(extra or [])]


def _request_id() -> str:
    return base64.b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def error_response(error: CosError, resource: str, head: bool = False) -> Response:
    """A COS XML error with ``RequestId`` and ``TraceId`` (also as ``x-cos-request-id``/``x-cos-trace-id``);
    no body for HEAD."""
    request_id, trace_id = _request_id(), base64.b64encode(uuid.uuid4().bytes * 2).decode()
    body = (
        f"{XML_HEADER}<Error><Code>{error.code}</Code><Message>{escape(error.message)}</Message>"
        f"<Resource>{escape(resource)}</Resource><RequestId>{request_id}</RequestId>"
        f"<TraceId>{trace_id}</TraceId></Error>"
    ).encode()
    headers = _headers(request_id, [("x-cos-trace-id", trace_id), ("Content-Type", "application/xml"), *error.headers])
    return Response(error.status, b"" if head else body, headers, content_length=0 if head else None)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte of a ``Range: bytes=...`` header; None to send the whole object.

    A header that is not one ``bytes=first-last`` range is ignored, as HTTP allows; a range that
    starts past the end raises ``InvalidRange`` (416).
    """
    unsatisfiable = CosError(
        416, "InvalidRange", "The requested range is not satisfiable.", [("Content-Range", f"bytes */{size}")]
    )
    match = _RANGE_RE.match((header or "").strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":
        suffix = int(last)
        if suffix == 0:
            raise unsatisfiable
        return max(size - suffix, 0), size - 1
    start, end = int(first), int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        raise unsatisfiable
    return start, min(end, size - 1)


class CosResponse:
    """Answers COS requests; returns (outcome, response), outcome ``ok`` or the error code.

    :param credentials: the key pairs (and tokens) requests may be signed with.
    :param backend: the buckets and objects.
    """

    def __init__(self, credentials: KeyRing, backend: CosBackend) -> None:
        self.credentials = credentials
        self.backend = backend

    @staticmethod
    def action_name(request: Request) -> str:
        """``COS HEAD``, ``COS GET`` or ``COS DELETE`` (object), ``COS LIST`` (bucket), or ``COS <METHOD>``."""
        if request.method == "GET" and address(request).key is None:
            return "COS LIST"
        return f"COS {request.method}"

    @staticmethod
    def fault_response(kind: str, request: Request) -> Response:
        """The COS answer of an injected ``throttle`` or ``internal`` fault."""
        return error_response(CosError(*FAULT_ERRORS[kind]), address(request).resource, request.method == "HEAD")

    def handle(self, request: Request) -> tuple[str, Response]:
        """Check the method and signature, then serve the object or bucket addressed."""
        where = address(request)
        head = request.method == "HEAD"
        request_id = _request_id()
        try:
            if request.method not in ("GET", "HEAD", "DELETE"):
                raise CosError(405, "MethodNotAllowed", "The emulator serves GET, HEAD and DELETE only.")
            verify_cos(
                self.credentials, request.method, where.signed_path, request.query, request.headers, self.backend.now()
            )
            bucket = self.backend.bucket(where.bucket, where.region).name
            if where.key is None:
                response = self._bucket(request, bucket, request_id)
            else:
                response = self._object(request, bucket, where.key, request_id)
        except CosError as error:
            return error.outcome, error_response(error, where.resource, head)
        return "ok", response

    def _object(self, request: Request, bucket: str, key: str, request_id: str) -> Response:
        if request.method == "DELETE":
            self.backend.delete_object(bucket, key)
            return Response(204, b"", _headers(request_id))
        obj = self.backend.get_object(bucket, key)
        size = len(obj.body)
        span = byte_range(request.headers.get("range"), size)
        headers = _object_headers(obj, request_id)
        if span is None:
            body, status = obj.body, 200
        else:
            body, status = obj.body[span[0] : span[1] + 1], 206
            headers.append(("Content-Range", f"bytes {span[0]}-{span[1]}/{size}"))
        head = request.method == "HEAD"
        return Response(status, b"" if head else body, headers, content_length=len(body))

    def _bucket(self, request: Request, bucket: str, request_id: str) -> Response:
        if request.method != "GET":  # HEAD Bucket; DELETE Bucket is refused
            if request.method == "DELETE":
                raise CosError(405, "MethodNotAllowed", "The emulator does not delete buckets.")
            return Response(200, b"", _headers(request_id), content_length=0)
        params = dict(parse_qsl(request.query, keep_blank_values=True))
        try:
            max_keys = int(params.get("max-keys") or MAX_KEYS)
        except ValueError:
            max_keys = -1
        if not 0 <= max_keys <= MAX_KEYS:
            raise CosError(400, "InvalidArgument", f"max-keys must be an integer from 0 to {MAX_KEYS}.")
        encoding = params.get("encoding-type", "")
        if encoding not in ("", "url"):
            raise CosError(400, "InvalidArgument", "encoding-type must be url.")
        prefix, marker, delimiter = params.get("prefix", ""), params.get("marker", ""), params.get("delimiter", "")
        listing = self.backend.list_objects(bucket, prefix, marker, max_keys, delimiter)
        document = _listing(bucket, prefix, marker, max_keys, delimiter, encoding, listing)
        return Response(200, document, _headers(request_id, [("Content-Type", "application/xml")]))


def _object_headers(obj: CosObject, request_id: str) -> list[tuple[str, str]]:
    return _headers(
        request_id,
        [
            ("Content-Type", "application/octet-stream"),
            ("ETag", obj.etag),
            ("Last-Modified", formatdate(obj.last_modified, usegmt=True)),
            ("Accept-Ranges", "bytes"),
            ("x-cos-storage-class", "STANDARD"),
        ],
    )


def _listing(
    bucket: str, prefix: str, marker: str, max_keys: int, delimiter: str, encoding: str, listing: Listing
) -> bytes:
    """A ``ListBucketResult`` document; with ``encoding-type=url`` keys and prefixes are URL-encoded."""

    def text(value: str) -> str:
        return escape(quote(value, safe="/") if encoding else value)

    parts = [
        f"{XML_HEADER}<ListBucketResult><Name>{escape(bucket)}</Name>",
        f"<EncodingType>{encoding}</EncodingType>" if encoding else "",
        f"<Prefix>{text(prefix)}</Prefix><Marker>{text(marker)}</Marker><MaxKeys>{max_keys}</MaxKeys>",
        f"<Delimiter>{text(delimiter)}</Delimiter>" if delimiter else "",
        f"<IsTruncated>{'true' if listing.truncated else 'false'}</IsTruncated>",
        f"<NextMarker>{text(listing.next_marker)}</NextMarker>" if listing.truncated else "",
    ]
    for obj in listing.contents:
        parts.append(
            f"<Contents><Key>{text(obj.key)}</Key><LastModified>{_iso(obj.last_modified)}</LastModified>"
            f"<ETag>{escape(obj.etag, _QUOTE)}</ETag><Size>{len(obj.body)}</Size>"
            f"<Owner><ID>{APPID}</ID><DisplayName>{APPID}</DisplayName></Owner>"
            "<StorageClass>STANDARD</StorageClass></Contents>"
        )
    parts += [f"<CommonPrefixes><Prefix>{text(p)}</Prefix></CommonPrefixes>" for p in listing.common_prefixes]
    parts.append("</ListBucketResult>")
    return "".join(parts).encode()
