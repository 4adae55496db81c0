"""COS, path-style on the emulator's address: ``HEAD``/``GET /<bucket>/<key>`` and ``GET /<bucket>/``."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from email.utils import formatdate
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from airflow_cvm_export.emulator.auth import CosDenied, Credentials, verify_cos
from airflow_cvm_export.emulator.catalog import APPID, Catalog
from airflow_cvm_export.emulator.exports import CosObject, ExportManager
from airflow_cvm_export.emulator.httpserver import Request, Response

MAX_KEYS = 1000
XML_HEADER = "<?xml version='1.0' encoding='utf-8' ?>\n"
_QUOTE = {'"': "&quot;"}


def split_path(path: str) -> tuple[str, str | None]:
    """(bucket, key) of ``/<bucket>/<key>``; key is None for ``/<bucket>`` and ``/<bucket>/``."""
    bucket, _, key = path.lstrip("/").partition("/")
    return bucket, key or None


def action_name(request: Request) -> str:
    """``COS HEAD``, ``COS GET`` (object) or ``COS LIST`` (bucket), or ``COS <METHOD>``."""
    if request.method == "GET" and split_path(request.path)[1] is None:
        return "COS LIST"
    return f"COS {request.method}"


def _headers(extra: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    return [("Server", "tencent-cos"), ("x-cos-request-id", uuid.uuid4().hex), *(extra or [])]


def error_response(status: int, code: str, message: str, resource: str, head: bool = False) -> Response:
    """A COS XML error (no body for HEAD)."""
    body = (
        f"{XML_HEADER}<Error><Code>{code}</Code><Message>{escape(message)}</Message>"
        f"<Resource>{escape(resource)}</Resource><RequestId>{uuid.uuid4().hex}</RequestId></Error>"
    ).encode()
    headers = _headers([("Content-Type", "application/xml")])
    return Response(status, b"" if head else body, headers, content_length=0 if head else None)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class CosApi:
    """Answers COS requests; returns (outcome, response).

    :param credentials: the key pair (and token) requests must be signed with.
    :param catalog: buckets and their regions.
    :param exports: the export manager holding the buckets' objects.
    """

    def __init__(self, credentials: Credentials, catalog: Catalog, exports: ExportManager) -> None:
        self.credentials = credentials
        self.catalog = catalog
        self.exports = exports

    def handle(self, request: Request) -> tuple[str, Response]:
        """Answer a path-style ``HEAD``/``GET`` of an object, or ``GET`` of a listing; outcome: error code or ``ok``."""
        bucket, key = split_path(request.path)
        head = request.method == "HEAD"
        if request.method not in ("GET", "HEAD"):
            message = "The emulator serves HEAD and GET only."
            return "MethodNotAllowed", error_response(405, "MethodNotAllowed", message, request.path)
        try:
            verify_cos(self.credentials, request.method, request.path, request.query, request.headers, time.time())
        except CosDenied as denied:
            return denied.code, error_response(403, denied.code, denied.message, request.path, head)
        known = self.catalog.buckets.get(bucket)
        if known is None or not known.exists:
            return "NoSuchBucket", error_response(
                404, "NoSuchBucket", "The specified bucket does not exist.", request.path, head
            )
        if key is None:
            return self._bucket(request, bucket, head)
        obj = self.exports.get_object(bucket, key)
        if obj is None:
            return "NoSuchKey", error_response(
                404, "NoSuchKey", "The specified key does not exist.", request.path, head
            )
        return "ok", _object_response(obj, head)

    def _bucket(self, request: Request, bucket: str, head: bool) -> tuple[str, Response]:
        if head:
            return "ok", Response(200, b"", _headers(), content_length=0)
        params = dict(parse_qsl(request.query, keep_blank_values=True))
        try:
            max_keys = int(params.get("max-keys", MAX_KEYS))
        except ValueError:
            max_keys = -1
        if not 0 <= max_keys <= MAX_KEYS:
            return "InvalidArgument", error_response(400, "InvalidArgument", "max-keys is invalid.", request.path)
        prefix, marker = params.get("prefix", ""), params.get("marker", "")
        objects = self.exports.bucket_objects(bucket) or {}
        keys = sorted(k for k in objects if k.startswith(prefix) and k > marker)
        page, truncated = keys[:max_keys], len(keys) > max_keys
        return "ok", Response(
            200,
            _listing(bucket, prefix, marker, max_keys, [objects[k] for k in page], truncated),
            _headers([("Content-Type", "application/xml")]),
        )


def _object_response(obj: CosObject, head: bool) -> Response:
    headers = _headers(
        [
            ("Content-Type", "application/octet-stream"),
            ("ETag", obj.etag),
            ("Last-Modified", formatdate(obj.last_modified, usegmt=True)),
            ("x-cos-storage-class", "STANDARD"),
        ]
    )
    return Response(200, b"" if head else obj.body, headers, content_length=len(obj.body))


def _listing(bucket: str, prefix: str, marker: str, max_keys: int, objects: list[CosObject], truncated: bool) -> bytes:
    """A ``ListBucketResult`` document."""
    parts = [
        f"{XML_HEADER}<ListBucketResult><Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix>",
        f"<Marker>{escape(marker)}</Marker><MaxKeys>{max_keys}</MaxKeys>",
        f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>",
    ]
    if truncated and objects:
        parts.append(f"<NextMarker>{escape(objects[-1].key)}</NextMarker>")
    for obj in objects:
        parts.append(
            f"<Contents><Key>{escape(obj.key)}</Key><LastModified>{_iso(obj.last_modified)}</LastModified>"
            f"<ETag>{escape(obj.etag, _QUOTE)}</ETag><Size>{len(obj.body)}</Size>"
            f"<Owner><ID>{APPID}</ID><DisplayName>{APPID}</DisplayName></Owner>"
            "<StorageClass>STANDARD</StorageClass></Contents>"
        )
    parts.append("</ListBucketResult>")
    return "".join(parts).encode()
