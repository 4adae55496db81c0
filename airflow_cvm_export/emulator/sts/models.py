"""Temporary credentials: who may have them (roles, web identity tokens) and for how long.

Every key pair issued goes into the emulator's :class:`~airflow_cvm_export.emulator.auth.KeyRing`,
so CVM and COS accept it with its token until it expires, and refuse it after that.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
from typing import Any
from urllib.parse import unquote

from airflow_cvm_export.emulator.auth import Credentials, KeyRing
from airflow_cvm_export.emulator.errors import ApiError

DEFAULT_CREDENTIAL_LIFETIME = 7200
DEFAULT_CAM_ROLE = "CVM_QcsRole"
# Roles STS lets anyone assume, besides the instance's CAM role (see docs/emulator.md).
ASSUMABLE_ROLES = ("AirflowCvmExport",)
DEFAULT_DURATION, MAX_DURATION = 7200, 43200
# A role ARN by name: qcs::cam::uin/<account>:roleName/<name>
_ROLE_ARN_RE = re.compile(r"qcs::cam::uin/[0-9]+:roleName/(?P<name>[\w+=,.@-]{1,128})")
_SESSION_NAME_RE = re.compile(r"[\w+=,.@-]{2,128}")
_EXTERNAL_ID_RE = re.compile(r"[\w+=,.@:/-]{2,128}")


class StsBackend:
    """Issues temporary credentials through STS and the metadata service.

    :param keys: where issued key pairs are registered.
    :param credential_lifetime: seconds every issued credential lives at most (STS: the shorter of
        this and ``DurationSeconds``).
    :param cam_role: the instance's CAM role the metadata service serves.
    """

    def __init__(self, keys: KeyRing, credential_lifetime: float, cam_role: str) -> None:
        self.keys = keys
        self.credential_lifetime = check_lifetime(credential_lifetime)
        self.cam_role = cam_role
        self._instance: Credentials | None = None
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget every issued credential."""
        with self._lock:
            self._instance = None
        self.keys.clear()

    def assume_role(self, params: dict[str, Any]) -> dict[str, Any]:
        """``AssumeRole``: check the parameters, then issue credentials of the role."""
        _unknown(params, {"RoleArn", "RoleSessionName", "DurationSeconds", "Policy", "ExternalId", "Tags"})
        self._role(params.get("RoleArn"))
        _session_name(params.get("RoleSessionName"))
        if "ExternalId" in params and not _matches(_EXTERNAL_ID_RE, params["ExternalId"]):
            raise ApiError("InvalidParameter.ParamError", "ExternalId must be 2-128 of letters, digits and =,.@:/-.")
        if "Policy" in params:
            _policy(params["Policy"])
        return self._issue(_duration(params.get("DurationSeconds", DEFAULT_DURATION)))

    def assume_role_with_web_identity(self, params: dict[str, Any]) -> dict[str, Any]:
        """``AssumeRoleWithWebIdentity`` (unsigned): the token must be a JWT, not expired by its ``exp``."""
        _unknown(params, {"ProviderId", "WebIdentityToken", "RoleArn", "RoleSessionName", "DurationSeconds"})
        for name in ("ProviderId", "WebIdentityToken", "RoleArn", "RoleSessionName"):
            if not isinstance(params.get(name), str) or not params[name]:
                raise ApiError("MissingParameter", f"The request is missing a required parameter `{name}`.")
        _web_identity(params["WebIdentityToken"])
        self._role(params["RoleArn"])
        return self._issue(_duration(params.get("DurationSeconds", DEFAULT_DURATION)))

    def instance_credentials(self, now: float | None = None) -> Credentials:
        """The CAM role's credentials the metadata service serves, rotated once less than half their
        lifetime (at most 15 minutes) remains; the old ones stay valid until they expire."""
        now = time.time() if now is None else now
        with self._lock:
            current = self._instance
            rotate_at = min(self.credential_lifetime / 2, 900)
            if current is None or current.expires is None or current.expires - now <= rotate_at:
                current = self._instance = self.keys.issue(self.credential_lifetime, now)
        return current

    def _role(self, arn: Any) -> str:
        if not isinstance(arn, str) or not arn:
            raise ApiError("MissingParameter", "The request is missing a required parameter `RoleArn`.")
        match = _ROLE_ARN_RE.fullmatch(arn)
        if match is None or match["name"] not in (self.cam_role, *ASSUMABLE_ROLES):
            raise ApiError("ResourceNotFound.RoleNotFound")
        return match["name"]

    def _issue(self, duration: int) -> dict[str, Any]:
        issued = self.keys.issue(min(duration, self.credential_lifetime), time.time())
        return {"Credentials": credentials_json(issued), **expiry_json(issued)}


def check_lifetime(value: Any) -> float:
    """``value`` if it is a number of seconds > 0 (a credential lifetime)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"credential_lifetime must be a number of seconds > 0, got {value!r}")
    return float(value)


def credentials_json(issued: Credentials) -> dict[str, Any]:
    """``{"Token", "TmpSecretId", "TmpSecretKey"}`` of an issued key pair."""
    return {"Token": issued.token, "TmpSecretId": issued.secret_id, "TmpSecretKey": issued.secret_key}


def expiry_json(issued: Credentials) -> dict[str, Any]:
    """``{"ExpiredTime", "Expiration"}``: Unix seconds and the same instant as ISO 8601 UTC."""
    expires = int(issued.expires or 0)
    return {"ExpiredTime": expires, "Expiration": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))}


def _unknown(params: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(params) - known)
    if unknown:
        raise ApiError("UnknownParameter", f"The parameter `{unknown[0]}` is not recognized.")


def _matches(pattern: re.Pattern[str], value: Any) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def _session_name(value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ApiError("MissingParameter", "The request is missing a required parameter `RoleSessionName`.")
    if not _matches(_SESSION_NAME_RE, value):
        raise ApiError("InvalidParameter.ParamError", "RoleSessionName must be 2-128 of letters, digits and =,.@_-.")


def _duration(value: Any) -> int:
    """``DurationSeconds``: an integer (or its decimal string, as the OIDC doc example sends), 1 to 43200."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ApiError("InvalidParameter.ParamError", "DurationSeconds must be a positive integer.")
    if value > MAX_DURATION:
        raise ApiError("InvalidParameter.OverTimeError", f"DurationSeconds is at most {MAX_DURATION}.")
    return value


def _policy(value: Any) -> None:
    """``Policy``: URL-encoded CAM policy JSON, without ``principal``."""
    try:
        document = json.loads(unquote(value)) if isinstance(value, str) else None
    except ValueError:
        document = None
    if not isinstance(document, dict) or "principal" in json.dumps(document).lower():
        raise ApiError("InvalidParameter.StrategyFormatError", "Policy must be URL-encoded CAM policy JSON.")


def _web_identity(token: str) -> None:
    """A JWT (three base64url parts, a JSON payload) whose ``exp``, if any, is still ahead."""
    parts = token.split(".")
    try:
        if len(parts) != 3:
            raise ValueError
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        if not isinstance(payload, dict):
            raise ValueError
    except (ValueError, binascii.Error):
        raise ApiError("InvalidParameter.WebIdentityTokenError") from None
    expires = payload.get("exp")
    if isinstance(expires, int | float) and not isinstance(expires, bool) and expires <= time.time():
        raise ApiError("InvalidParameter.WebIdentityTokenError", "The token has expired.")
