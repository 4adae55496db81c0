"""API 3.0 requests (``POST /``): the common checks, then ExportImages, DescribeImages and DescribeRegions.

Parses parameters, calls the CVM backend, serializes its answer; nothing here holds state.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from airflow_cvm_export.emulator.auth import SERVICE, KeyRing, verify_tc3
from airflow_cvm_export.emulator.catalog import IMAGE_ID_RE, MAX_DESCRIBE_IMAGE_IDS, REGIONS, Image
from airflow_cvm_export.emulator.cvm.models import CvmBackend
from airflow_cvm_export.emulator.errors import ApiError
from airflow_cvm_export.emulator.faults import RateLimiter
from airflow_cvm_export.emulator.httpserver import Request, Response
from airflow_cvm_export.utils import bounded_json

VERSION = "2017-03-12"
JSON_CONTENT_TYPE = "application/json"
_REQUIRED_HEADERS = (
    ("x-tc-action", "Action"),
    ("x-tc-version", "Version"),
    ("x-tc-timestamp", "Timestamp"),
    ("authorization", "Authorization"),
)
# The documented DescribeImages filters (and their documented limits).
IMAGE_FILTERS = (
    "image-id",
    "image-type",
    "image-name",
    "platform",
    "tag-key",
    "tag-value",
    "tag:<key>",
    "dedicated-cluster-id",
    "cdc-cache-status",
)
_CDC_FILTERS = ("dedicated-cluster-id", "cdc-cache-status")
MAX_FILTERS = 10
MAX_FILTER_VALUES = 5
FAULT_ERRORS = {"throttle": "RequestLimitExceeded", "internal": "InternalError"}


def json_response(document: dict[str, Any], status: int = 200) -> Response:
    """A JSON response of ``document``."""
    return Response(status, json.dumps(document).encode(), [("Content-Type", JSON_CONTENT_TYPE)])


def error_response(error: ApiError) -> Response:
    """The real error shape, HTTP 200: ``{"Response": {"Error": {...}, "RequestId"}}``."""
    return json_response(
        {"Response": {"Error": {"Code": error.code, "Message": error.message}, "RequestId": str(uuid.uuid4())}}
    )


class CvmResponse:
    """Answers API 3.0 requests for the CVM service; returns (outcome, response).

    The common checks (method, headers, version, signature, region, rate limit, JSON body) are made
    for :attr:`service` at :attr:`version`; :class:`~airflow_cvm_export.emulator.sts.responses.StsResponse`
    reuses them for STS.

    :param credentials: the key pairs (and tokens) requests may be signed with.
    :param backend: images and export tasks.
    :param limiter: the per (SecretId, action) rate limits.
    """

    def __init__(self, credentials: KeyRing, backend: CvmBackend, limiter: RateLimiter) -> None:
        self.credentials = credentials
        self.backend = backend
        self.limiter = limiter
        self.service = SERVICE
        self.version = VERSION
        self.unsigned: frozenset[str] = frozenset()  # actions sent with "Authorization: SKIP"
        self._actions: dict[str, Callable[[dict[str, Any], str, str], dict[str, Any]]] = {
            "ExportImages": self.export_images,
            "DescribeImages": self.describe_images,
            "DescribeRegions": self.describe_regions,
        }

    @staticmethod
    def action_name(request: Request) -> str:
        """The action a request is counted under: its ``X-TC-Action``, or ``-`` when it has none."""
        return request.headers.get("x-tc-action") or "-"

    @staticmethod
    def fault_response(kind: str, request: Request) -> Response:
        """The API 3.0 answer of an injected ``throttle`` or ``internal`` fault."""
        return error_response(ApiError(FAULT_ERRORS[kind]))

    def handle(self, request: Request) -> tuple[str, Response]:
        """Check, authenticate, rate-limit and dispatch one request; outcome: error code or ``ok``."""
        try:
            body = self._call(request)
        except ApiError as error:
            return error.code, error_response(error)
        body["RequestId"] = str(uuid.uuid4())
        return "ok", json_response({"Response": body})

    def _call(self, request: Request) -> dict[str, Any]:
        headers = request.headers
        if request.method != "POST":
            raise ApiError("UnsupportedProtocol", "The emulator accepts POST with a JSON body only.")
        content_type = headers.get("content-type", "")
        if content_type.partition(";")[0].strip().lower() != JSON_CONTENT_TYPE:
            raise ApiError("InvalidParameter", f"Content-Type `{content_type}` is not supported; use application/json.")
        for header, name in _REQUIRED_HEADERS:
            if not headers.get(header):
                raise ApiError("MissingParameter", f"The request is missing a required parameter `{name}`.")
        action = headers["x-tc-action"]
        handler = self._actions.get(action)
        if handler is None:
            raise ApiError("InvalidAction", f"`{action}` is not a valid action.")
        if headers["x-tc-version"] != self.version:
            raise ApiError("NoSuchVersion", f"`{headers['x-tc-version']}` is not a valid version of {self.service}.")
        try:
            timestamp = int(headers["x-tc-timestamp"])
        except ValueError:
            raise ApiError("InvalidParameter", "X-TC-Timestamp must be an integer of Unix seconds.") from None
        if action not in self.unsigned:
            verify_tc3(self.credentials, headers, request.body, timestamp, time.time(), self.service)
        region = headers.get("x-tc-region", "")
        if region and region not in REGIONS:
            raise ApiError("UnsupportedRegion", f"`{region}`")
        if not region and action != "DescribeRegions":
            raise ApiError("MissingParameter", "The request is missing a required parameter `Region`.")
        if not self.limiter.admit(self.credentials.permanent.secret_id, action):
            raise ApiError("RequestLimitExceeded", f"{action} allows {self.limiter.limits[action]:g} requests/second.")
        try:
            params = bounded_json.loads(request.body or b"{}")
        except bounded_json.JsonTooDeepError as exc:
            raise ApiError("InvalidParameter", f"The request body is {exc}.") from None
        except ValueError:
            raise ApiError("InvalidParameter", "The request body is not valid JSON.") from None
        if not isinstance(params, dict):
            raise ApiError("InvalidParameter", "The request body must be a JSON object.")
        return handler(params, region, headers.get("x-tc-language", "zh-CN"))

    def export_images(self, params: dict[str, Any], region: str, language: str) -> dict[str, Any]:
        """``ExportImages``: start an export (``TaskId``, ``CosPaths``) or raise its documented error."""
        return self.backend.start(params, region)

    def describe_images(self, params: dict[str, Any], region: str, language: str) -> dict[str, Any]:
        """``DescribeImages`` by ``ImageIds`` or ``Filters``, paged by ``Offset``/``Limit``."""
        unknown = sorted(set(params) - {"ImageIds", "Filters", "Offset", "Limit", "InstanceType"})
        if unknown:
            raise ApiError("UnknownParameter", f"The parameter `{unknown[0]}` is not recognized.")
        image_ids, filters = params.get("ImageIds"), params.get("Filters")
        offset, limit = params.get("Offset", 0), params.get("Limit", 20)
        if image_ids is not None and filters is not None:
            raise ApiError("InvalidParameter", "ImageIds and Filters cannot be combined.")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (offset, limit)):
            raise ApiError("InvalidParameter", "Offset and Limit must be integers.")
        if offset < 0 or not 0 <= limit <= MAX_DESCRIBE_IMAGE_IDS:
            raise ApiError("InvalidParameterValue", f"Limit must be between 0 and {MAX_DESCRIBE_IMAGE_IDS}.")
        images = self.backend.images(region)
        if image_ids is not None:
            images = _by_ids(images, image_ids)
        elif filters is not None:
            images = _filtered(images, filters)
        states = self.backend.image_states(images)
        found = [image.describe(state) for image, state in zip(images, states, strict=True)]
        return {"TotalCount": len(found), "ImageSet": found[offset : offset + limit]}

    def describe_regions(self, params: dict[str, Any], region: str, language: str) -> dict[str, Any]:
        """``DescribeRegions``: the catalog's regions, named in ``language``."""
        if params:
            raise ApiError("UnknownParameter", f"The parameter `{sorted(params)[0]}` is not recognized.")
        english = language == "en-US"
        regions = [
            {"Region": name, "RegionName": labels[1] if english else labels[0], "RegionState": "AVAILABLE"}
            for name, labels in REGIONS.items()
        ]
        return {"TotalCount": len(regions), "RegionSet": regions}


def _by_ids(images: list[Image], image_ids: Any) -> list[Image]:
    if not isinstance(image_ids, list) or not all(isinstance(i, str) for i in image_ids):
        raise ApiError("InvalidParameter", "ImageIds must be a list of strings.")
    if len(image_ids) > MAX_DESCRIBE_IMAGE_IDS:
        raise ApiError("InvalidParameterValue.LimitExceeded", f"ImageIds accepts at most {MAX_DESCRIBE_IMAGE_IDS}.")
    for image_id in image_ids:
        if not IMAGE_ID_RE.match(image_id):
            raise ApiError("InvalidImageId.Malformed", f"`{image_id}`")
    by_id = {image.image_id: image for image in images}
    return [by_id[i] for i in dict.fromkeys(image_ids) if i in by_id]


def _matcher(name: str, values: list[str]) -> Callable[[Image], bool]:
    """The test of one documented DescribeImages filter; several values match any of them."""
    if name == "image-id":
        return lambda image: image.image_id in values
    if name == "image-type":
        return lambda image: image.image_type in values
    if name in ("image-name", "platform"):  # "fuzzy": a case-insensitive substring, the emulator's reading
        needles = [value.lower() for value in values]
        attribute = "name" if name == "image-name" else "platform"
        return lambda image: any(needle in getattr(image, attribute).lower() for needle in needles)
    if name == "tag-key":
        return lambda image: any(key in values for key, _ in image.tags)
    if name == "tag-value":
        return lambda image: any(value in values for _, value in image.tags)
    if name.startswith("tag:") and len(name) > len("tag:"):
        tag_key = name[len("tag:") :]
        return lambda image: any(key == tag_key and value in values for key, value in image.tags)
    if name in _CDC_FILTERS:  # no emulated image lives in a CDC (dedicated cluster)
        return lambda image: False
    raise ApiError("InvalidFilter", f"`{name}` is not a DescribeImages filter; use one of {', '.join(IMAGE_FILTERS)}.")


def _filtered(images: list[Image], filters: Any) -> list[Image]:
    """Images matching every filter (each filter matches any of its values)."""
    if not isinstance(filters, list) or not all(isinstance(f, dict) for f in filters):
        raise ApiError("InvalidParameter", "Filters must be a list of {Name, Values}.")
    if len(filters) > MAX_FILTERS:
        raise ApiError("InvalidParameterValue.LimitExceeded", f"Filters accepts at most {MAX_FILTERS}.")
    for item in filters:
        name, values = item.get("Name"), item.get("Values")
        if not isinstance(name, str) or not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ApiError("InvalidParameter", "Each filter needs a string Name and a list of string Values.")
        if len(values) > MAX_FILTER_VALUES:
            message = f"Filters.Values accepts at most {MAX_FILTER_VALUES}."
            raise ApiError("InvalidParameterValue.LimitExceeded", message)
        matches = _matcher(name, values)
        images = [image for image in images if matches(image)]
    return images
