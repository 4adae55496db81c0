"""The provider's exception family and the one table turning Tencent error codes into classes."""

from __future__ import annotations

import reprlib
from typing import Any

from airflow.sdk.exceptions import AirflowException

from airflow_cvm_export.version_compat import AirflowFailException

_REPR = reprlib.Repr()  # keyword arguments only from Python 3.12
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 2, 60, 60


def shown(value: Any, limit: int = 80) -> str:
    """A short ``repr`` of a rejected value for an error message; safe for values nested 5,000 levels deep."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def invalid(field: str, allowed: str, value: Any) -> TencentCloudConfigError:
    """The error for a bad argument, before any request: ``<field> must be <allowed>, got <value>``."""
    return TencentCloudConfigError(f"{field} must be {allowed}, got {shown(value)}")


class TencentCloudError(AirflowException):
    """Base class of every error this provider raises about a Tencent Cloud call.

    Carries the Tencent ``code``, ``message``, ``request_id`` and ``action``; never credentials.

    :param message: what went wrong, for people (Tencent's ``Error.Message`` or the provider's own).
    :param code: Tencent Cloud error code (``Error.Code``, e.g. ``AuthFailure.SignatureExpire``), or
        None for errors no Tencent answer carried.
    :param request_id: ``RequestId`` of the answer, to quote to Tencent Cloud support.
    :param action: the API action or COS call that failed (``ExportImages``, ``COS HEAD``...).
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        request_id: str | None = None,
        action: str | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.request_id = request_id
        self.action = action
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [f"{self.action}: " if self.action else ""]
        parts.append(f"[{self.code}] " if self.code else "")
        parts.append(self.message)
        if self.request_id:
            parts.append(f" (RequestId {self.request_id})")
        return "".join(parts)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (_rebuild, (type(self), self.message, self.code, self.request_id, self.action))


def _rebuild(
    cls: type[TencentCloudError], message: str, code: str | None, request_id: str | None, action: str | None
) -> TencentCloudError:
    return cls(message, code=code, request_id=request_id, action=action)


# The classes below that also derive from AirflowFailException are errors no retry can fix: the
# task fails at once instead of spending its retries (the example DAGs retry three times).


class TencentCloudConfigError(TencentCloudError, AirflowFailException, ValueError):
    """Bad connection or argument, found before any request is sent."""


class TencentCloudAuthError(TencentCloudError, AirflowFailException):
    """Credentials, signature, token, role or permission rejected."""


class TencentCloudClockSkewError(TencentCloudAuthError):
    """``AuthFailure.SignatureExpire``: this machine's clock is too far from Tencent Cloud's."""


class TencentCloudThrottledError(TencentCloudError):
    """``RequestLimitExceeded*``: the API rate limit was hit; safe to retry later."""


class TencentCloudInvalidParameterError(TencentCloudError, AirflowFailException):
    """A parameter was rejected (``InvalidParameter*``, ``MissingParameter``, ...)."""


class TencentCloudNotFoundError(TencentCloudInvalidParameterError):
    """The image, snapshot or bucket does not exist."""


class TencentCloudUnsupportedImageError(TencentCloudError, AirflowFailException):
    """The image can never be exported (Windows, public, shared, market, encrypted, too large...)."""


class TencentCloudBusyError(TencentCloudError):
    """The image is already exporting, or too many exports are running: try again later."""


class TencentCloudServerError(TencentCloudError):
    """``InternalError``/``ServiceUnavailable``/HTTP 5xx: a transient failure on Tencent's side."""


class TencentCloudNetworkError(TencentCloudError):
    """The request could not be completed over the network."""


class TencentCloudConnectError(TencentCloudNetworkError):
    """No connection could be established (refused, DNS, connect timeout): nothing was sent."""


class TencentCloudOutcomeUnknownError(TencentCloudNetworkError):
    """The request was sent but no answer came back: it may or may not have taken effect."""


class TencentCloudCredentialError(TencentCloudError):
    """Temporary credentials could not be obtained (STS or the metadata service failed or was unreachable),
    and no still-valid ones were left; retrying later may help. Settings no retry can fix raise
    :class:`TencentCloudConfigError` instead."""


class TencentCloudResponseError(TencentCloudError):
    """The response is not what the API promises (HTML page, truncated JSON, missing fields)."""


class DryRunSucceeded(TencentCloudError):
    """``DryRunOperation``: the request would have succeeded; nothing was started."""


_EXACT: dict[str, type[TencentCloudError]] = {
    "AuthFailure.SignatureExpire": TencentCloudClockSkewError,
    "InvalidParameterValue.InvalidImageState": TencentCloudBusyError,
    "LimitExceeded.ExportImageTaskLimitExceeded": TencentCloudBusyError,
    "InvalidImageId.NotFound": TencentCloudNotFoundError,
    "InvalidParameter.SnapshotNotFound": TencentCloudNotFoundError,
    "InvalidParameterValue.BucketNotFound": TencentCloudNotFoundError,
    "InvalidParameterValue.InvalidBucketPermissionForExport": TencentCloudAuthError,
    "InvalidParameterValue.InvalidImageId": TencentCloudUnsupportedImageError,
    "InvalidParameterValue.InvalidImageOsName": TencentCloudUnsupportedImageError,
    "UnsupportedRegion": TencentCloudInvalidParameterError,
    "RequestSizeLimitExceeded": TencentCloudInvalidParameterError,
    "DryRunOperation": DryRunSucceeded,
    "InternalError": TencentCloudServerError,
    "ServiceUnavailable": TencentCloudServerError,
}

_PREFIXES: tuple[tuple[str, type[TencentCloudError]], ...] = (
    ("AuthFailure", TencentCloudAuthError),
    ("UnauthorizedOperation", TencentCloudAuthError),
    ("RequestLimitExceeded", TencentCloudThrottledError),
    ("UnsupportedOperation", TencentCloudUnsupportedImageError),
    ("InternalError", TencentCloudServerError),
    ("InvalidImageId", TencentCloudInvalidParameterError),
    ("InvalidParameter", TencentCloudInvalidParameterError),
    ("MissingParameter", TencentCloudInvalidParameterError),
    ("UnknownParameter", TencentCloudInvalidParameterError),
    ("LimitExceeded", TencentCloudInvalidParameterError),
)

_HINTS = {
    "AuthFailure.SignatureExpire": "this machine's clock differs from Tencent Cloud's by more than 5 minutes; "
    "sync it (NTP)",
    "AuthFailure.SecretIdNotFound": "the SecretId is unknown; check the connection's login",
    "AuthFailure.SignatureFailure": "the SecretKey does not match the SecretId; check the connection's password",
    "AuthFailure.TokenFailure": "the temporary credentials' token is missing, wrong or expired",
    "AuthFailure.CamRoleNameAuthenticateFailed": "the role given in role_name (default CVM_QcsRole) does "
    "not exist or cannot be assumed",
    "InvalidParameterValue.InvalidImageId": "this image cannot be exported",
    "InvalidParameterValue.InvalidImageOsName": "the image's operating system is not available in this region",
    "InvalidParameterValue.InvalidBucketPermissionForExport": "grant the export role write permission on the bucket",
    "InvalidParameterValue.InvalidImageState": "the image is busy (probably already exporting); wait for "
    "that export to finish",
    "LimitExceeded.ExportImageTaskLimitExceeded": "too many exports are running; try again later",
}


def error_class(code: str) -> type[TencentCloudError]:
    """Return the exception class for a Tencent Cloud error code."""
    if code in _EXACT:
        return _EXACT[code]
    for prefix, cls in _PREFIXES:
        if code.startswith(prefix):
            return cls
    return TencentCloudError


def from_response(
    code: str, message: str, *, request_id: str | None = None, action: str | None = None
) -> TencentCloudError:
    """Turn an API error (``Response.Error``) into the matching exception."""
    hint = _HINTS.get(code)
    text = f"{message} ({hint})" if hint else message
    return error_class(code)(text, code=code, request_id=request_id, action=action)
