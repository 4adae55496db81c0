"""Pure request building and response parsing for CVM API 3.0 and COS.

Used by the client core both hooks share (:mod:`airflow_cvm_export.hooks.client`): the only place
where a request is assembled and where a response is turned into data or a typed exception.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

from airflow_cvm_export.utils import bounded_json
from airflow_cvm_export.utils.connection import ClientConfig
from airflow_cvm_export.utils.errors import (
    TencentCloudAuthError,
    TencentCloudConfigError,
    TencentCloudError,
    TencentCloudNotFoundError,
    TencentCloudResponseError,
    TencentCloudServerError,
    TencentCloudThrottledError,
    from_response,
)
from airflow_cvm_export.utils.signing import sign_cos, sign_tc3

SERVICE = "cvm"
API_VERSION = "2017-03-12"
COS_SIGNATURE_SECONDS = 600
# Non-API answers (from a gateway or proxy) whose status alone says what happened.
_HTTP_STATUS_ERRORS: dict[int, type[TencentCloudError]] = {429: TencentCloudThrottledError}


@dataclass(frozen=True)
class PreparedRequest:
    """A signed request ready for any HTTP client; the headers (signature, token) are kept out of ``repr``."""

    method: str
    url: str
    headers: dict[str, str] = field(repr=False)
    body: bytes = b""


def build_api_request(
    config: ClientConfig, action: str, params: dict[str, Any], *, timestamp: int | None = None
) -> PreparedRequest:
    """Sign an API 3.0 ``POST /`` for ``action``; ``timestamp`` defaults to now."""
    body = json.dumps(params, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    headers = sign_tc3(
        secret_id=config.secret_id,
        secret_key=config.secret_key,
        service=SERVICE,
        host=config.endpoint.netloc,
        action=action,
        version=API_VERSION,
        payload=body,
        timestamp=int(time.time()) if timestamp is None else timestamp,
        region=config.region,
        token=config.token,
    )
    return PreparedRequest("POST", config.endpoint.url + "/", headers, body)


def parse_api_response(action: str, status: int, content: bytes) -> dict[str, Any]:
    """Return the ``Response`` object of an API 3.0 answer, or raise the matching error."""
    try:
        response = bounded_json.loads(content)["Response"]  # a deeply nested answer is not a RecursionError
        if not isinstance(response, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        snippet = content[:80].decode("utf-8", "replace").replace("\n", " ")
        cls = _HTTP_STATUS_ERRORS.get(status, TencentCloudServerError if status >= 500 else TencentCloudResponseError)
        raise cls(
            f"HTTP {status} answer is not an API 3.0 JSON response (starts with {snippet!r})", action=action
        ) from None
    request_id = response.get("RequestId")
    error = response.get("Error")
    if error is not None:
        if not isinstance(error, dict):
            raise TencentCloudResponseError("malformed Error object", request_id=request_id, action=action)
        raise from_response(
            str(error.get("Code", "")), str(error.get("Message", "")), request_id=request_id, action=action
        )
    if status >= 500:
        raise TencentCloudServerError(f"HTTP {status}", request_id=request_id, action=action)
    return response


def check_export_answer(response: dict[str, Any], *, expected_objects: int | None = None) -> dict[str, Any]:
    """Check that an ExportImages ``Response`` holds what the API promises; return it.

    ``TaskId`` must be an integer and ``CosPaths`` a non-empty list of object paths; with
    ``expected_objects`` (one per exported disk, known from DescribeImages) the count must match.
    Anything else raises :class:`~airflow_cvm_export.utils.errors.TencentCloudResponseError` naming
    the RequestId: the export may have started, so the caller must not simply send it again.
    """
    request_id = response.get("RequestId")
    task_id = response.get("TaskId")
    paths = response.get("CosPaths")
    problem = None
    if isinstance(task_id, bool) or not isinstance(task_id, int):
        problem = f"TaskId is {task_id!r}, not an integer"
    elif not isinstance(paths, list) or not paths:
        problem = f"CosPaths is {paths!r}, not a non-empty list"
    elif not all(isinstance(path, str) and path.strip("/") for path in paths):
        problem = "CosPaths holds something other than object paths"
    elif expected_objects is not None and len(paths) != expected_objects:
        problem = f"CosPaths lists {len(paths)} object(s) but the images have {expected_objects} disk(s) to export"
    if problem:
        raise TencentCloudResponseError(
            f"the answer is not what the API promises: {problem}; the export may have started, check the bucket "
            "before exporting again",
            request_id=request_id,
            action="ExportImages",
        )
    return response


def bucket_listing_params(prefix: str, marker: str = "") -> dict[str, str]:
    """Query parameters of one page of a COS ``GET Bucket`` listing under ``prefix``."""
    params = {"prefix": prefix, "max-keys": "1000"}
    if marker:
        params["marker"] = marker
    return params


def cos_key(cos_path: str) -> str:
    """Object key of a CosPath: the path without its leading slash."""
    return cos_path.lstrip("/")


def cos_url_and_path(config: ClientConfig, bucket: str, key: str) -> tuple[str, str, str]:
    """Return (url, decoded path to sign, Host header) for an object or, with ``key=""``, a bucket.

    Path-style ``/<bucket>/<key>`` when a ``cos_endpoint`` is configured (the emulator), else the
    real virtual-host style ``https://<bucket>.cos.<region>.myqcloud.com/<key>``.
    """
    if config.cos_endpoint is not None:
        path = f"/{bucket}/{key}"
        return config.cos_endpoint.url + quote(path), path, config.cos_endpoint.netloc
    if not config.region:
        raise TencentCloudConfigError("a region is needed to reach COS; set the connection extra region")
    host = f"{bucket}.cos.{config.region}.myqcloud.com"
    path = f"/{key}"
    return f"https://{host}{quote(path)}", path, host


def build_cos_request(
    config: ClientConfig,
    method: str,
    bucket: str,
    key: str,
    params: dict[str, str] | None = None,
    *,
    now: int | None = None,
) -> PreparedRequest:
    """Sign a COS request (``HEAD``/``GET`` of an object, or ``GET`` of a bucket listing)."""
    params = params or {}
    url, path, host = cos_url_and_path(config, bucket, key)
    start = int(time.time()) if now is None else now
    headers = {"Host": host}
    if config.token:
        headers["x-cos-security-token"] = config.token
    headers["Authorization"] = sign_cos(
        secret_id=config.secret_id,
        secret_key=config.secret_key,
        method=method,
        path=path,
        params=params,
        headers=headers,
        start=start - 60,
        end=start + COS_SIGNATURE_SECONDS,
    )
    if params:
        url += "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in sorted(params.items()))
    return PreparedRequest(method, url, headers)


def cos_error(status: int, bucket: str, key: str, content: bytes = b"") -> TencentCloudError:
    """Exception for a failed COS request (403, 5xx, ...)."""
    code = ""
    if content:
        try:
            code = ET.fromstring(content).findtext("Code") or ""
        except ET.ParseError:
            pass
    where = f"cos://{bucket}/{key}"
    if status == 403:
        return TencentCloudAuthError(
            f"access to {where} denied: the credentials need read permission on the bucket",
            code=code or "AccessDenied",
            action="COS",
        )
    if status == 404:
        return TencentCloudNotFoundError(f"{where} does not exist", code=code or "NoSuchKey", action="COS")
    if status in (429, 503) or code == "SlowDown":
        return TencentCloudThrottledError(f"COS throttled the request for {where}", code=code, action="COS")
    if status >= 500:
        return TencentCloudServerError(f"COS answered HTTP {status} for {where}", code=code, action="COS")
    return TencentCloudResponseError(f"COS answered HTTP {status} for {where}", code=code, action="COS")


def parse_head(headers: Any) -> dict[str, Any]:
    """Object metadata from a COS ``HEAD`` answer's headers."""
    try:
        modified = parsedate_to_datetime(headers["Last-Modified"])
        size = int(headers["Content-Length"])
    except (KeyError, TypeError, ValueError):
        raise TencentCloudResponseError(
            "COS HEAD answer lacks a valid Last-Modified or Content-Length", action="COS"
        ) from None
    return {"size": size, "etag": str(headers.get("ETag", "")).strip('"'), "last_modified": modified.isoformat()}


def parse_head_reply(status: int, headers: Any, content: bytes, bucket: str, key: str) -> dict[str, Any] | None:
    """A COS ``HEAD`` answer: the object's metadata, None for 404, else the error of :func:`cos_error`."""
    if status == 404:
        return None
    if status != 200:
        raise cos_error(status, bucket, key, content)
    return parse_head(headers)


def parse_bucket_reply(
    status: int, content: bytes, bucket: str, prefix: str
) -> tuple[list[dict[str, Any]], str | None]:
    """A COS ``GET Bucket`` answer: see :func:`parse_bucket_listing`; any status but 200 is an error."""
    if status != 200:
        raise cos_error(status, bucket, prefix, content)
    return parse_bucket_listing(content)


def _ns_strip(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_bucket_listing(content: bytes) -> tuple[list[dict[str, Any]], str | None]:
    """Return (objects, next marker or None) from a COS ``GET Bucket`` XML answer."""
    try:
        root = ET.fromstring(content)
    except ET.ParseError:
        raise TencentCloudResponseError("COS bucket listing is not valid XML", action="COS") from None
    values = {_ns_strip(child.tag): child for child in root}
    objects: list[dict[str, Any]] = []
    for item in root:
        if _ns_strip(item.tag) != "Contents":
            continue
        fields = {_ns_strip(child.tag): (child.text or "") for child in item}
        try:
            size = int(fields.get("Size") or 0)
        except ValueError:
            raise TencentCloudResponseError("COS bucket listing has a non-numeric Size", action="COS") from None
        objects.append(
            {
                "key": fields.get("Key", ""),
                "size": size,
                "etag": fields.get("ETag", "").strip('"'),
                "last_modified": fields.get("LastModified", ""),
            }
        )
    truncated = values.get("IsTruncated") is not None and values["IsTruncated"].text == "true"
    next_marker = None
    if truncated:
        marker = values.get("NextMarker")
        next_marker = marker.text if marker is not None and marker.text else (objects[-1]["key"] if objects else None)
    return objects, next_marker
