"""Signature checks as the real services do them: TC3-HMAC-SHA256 (API 3.0) and COS q-sign.

Both recompute the signature from what was actually received, with the pure helpers of
:mod:`airflow_cvm_export.utils.signing`; nothing here signs a request of its own.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from airflow_cvm_export.emulator.errors import ApiError, CosError
from airflow_cvm_export.utils.signing import (
    TC3_ALGORITHM,
    cos_signature,
    cos_string_to_sign,
    tc3_signature,
    tc3_string_to_sign,
)

MAX_SKEW_SECONDS = 300
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
SERVICE = "cvm"
_AUTHORIZATION_RE = re.compile(
    TC3_ALGORITHM + r" Credential=(?P<id>[^/\s]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>[\w-]+)/tc3_request,"
    r" ?SignedHeaders=(?P<headers>[a-z0-9;_-]+), ?Signature=(?P<signature>[0-9a-f]{64})$"
)
_COS_FIELDS = (
    "q-sign-algorithm",
    "q-ak",
    "q-sign-time",
    "q-key-time",
    "q-header-list",
    "q-url-param-list",
    "q-signature",
)


@dataclass(frozen=True)
class Credentials:
    """A key pair the emulator accepts, with its token; ``expires`` (Unix time) for temporary ones."""

    secret_id: str
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)
    expires: float | None = None


class KeyRing:
    """The permanent key pair plus every temporary one STS or the metadata service issued.

    A temporary key is accepted only with its own token and until it expires; after that (or with
    another token) the answer is ``AuthFailure.TokenFailure`` (see docs/emulator.md, "Choices where
    Tencent Cloud documents nothing").

    :param permanent: the long-lived key pair (and the token it requires, if any).
    """

    def __init__(self, permanent: Credentials) -> None:
        self.permanent = permanent
        self._temporary: dict[str, Credentials] = {}
        self._lock = threading.Lock()

    def issue(self, lifetime: float, now: float) -> Credentials:
        """A new temporary key pair and token, valid for ``lifetime`` seconds from ``now``."""
        issued = Credentials(
            secret_id="AKIDTMP" + secrets.token_hex(16),
            secret_key=secrets.token_urlsafe(30),
            token=secrets.token_urlsafe(48),
            expires=float(int(now + lifetime)),  # whole seconds, as ExpiredTime shows it
        )
        with self._lock:
            self._temporary[issued.secret_id] = issued
        return issued

    def find(self, secret_id: str) -> Credentials | None:
        """The key pair of ``secret_id``, permanent or temporary (also once expired), or None."""
        if secret_id == self.permanent.secret_id:
            return self.permanent
        with self._lock:
            return self._temporary.get(secret_id)

    def clear(self) -> None:
        """Forget every temporary key pair."""
        with self._lock:
            self._temporary.clear()


def token_accepted(credentials: Credentials, token: str | None, now: float) -> bool:
    """True when ``token`` is what ``credentials`` require (none, or theirs) and they have not expired."""
    if credentials.expires is not None and now >= credentials.expires:
        return False
    return credentials.token is None or hmac.compare_digest(token or "", credentials.token)


def canonical_request(
    method: str, path: str, query: str, headers: Mapping[str, str], signed_headers: list[str], payload_hash: str
) -> str:
    """TC3 CanonicalRequest over any SignedHeaders: names and values lower-cased and stripped."""
    canonical_headers = "".join(f"{name}:{headers.get(name, '').strip().lower()}\n" for name in signed_headers)
    return f"{method}\n{path}\n{query}\n{canonical_headers}\n{';'.join(signed_headers)}\n{payload_hash}"


def verify_tc3(
    keys: KeyRing, headers: Mapping[str, str], body: bytes, timestamp: int, now: float, service: str = SERVICE
) -> None:
    """Check an API 3.0 request's ``Authorization`` and token; raise :class:`ApiError` if rejected.

    ``headers`` has lower-case names, as received; ``service`` is the credential scope's service
    (``cvm``, or ``sts`` for AssumeRole).
    """
    if abs(now - timestamp) > MAX_SKEW_SECONDS:
        raise ApiError("AuthFailure.SignatureExpire")
    match = _AUTHORIZATION_RE.match(headers.get("authorization", "").strip())
    if match is None:
        raise ApiError("AuthFailure.InvalidAuthorization")
    credentials = keys.find(match["id"])
    if credentials is None:
        raise ApiError("AuthFailure.SecretIdNotFound")
    signed = match["headers"].split(";")
    date = time.strftime("%Y-%m-%d", time.gmtime(timestamp))
    if match["date"] != date or match["service"] != service or not {"content-type", "host"} <= set(signed):
        raise ApiError("AuthFailure.SignatureFailure")
    # As the official SDKs do: with unsignedPayload the *string* "UNSIGNED-PAYLOAD" is hashed instead of the body.
    unsigned = headers.get("x-tc-content-sha256") == UNSIGNED_PAYLOAD
    payload_hash = hashlib.sha256(UNSIGNED_PAYLOAD.encode() if unsigned else body).hexdigest()
    request = canonical_request("POST", "/", "", headers, signed, payload_hash)
    string_to_sign = tc3_string_to_sign(canonical_request=request, service=service, timestamp=timestamp)
    expected = tc3_signature(
        secret_key=credentials.secret_key, service=service, timestamp=timestamp, string_to_sign=string_to_sign
    )
    if not hmac.compare_digest(expected, match["signature"]):
        raise ApiError("AuthFailure.SignatureFailure")
    if not token_accepted(credentials, headers.get("x-tc-token"), now):
        raise ApiError("AuthFailure.TokenFailure")


def _denied(code: str, message: str, outcome: str | None = None) -> CosError:
    return CosError(403, code, message, outcome=outcome)


def _key_time(value: str) -> tuple[int, int]:
    start, _, end = value.partition(";")
    try:
        return int(start), int(end)
    except ValueError:
        raise _denied("AccessDenied", "q-sign-time is malformed.") from None


def verify_cos(
    keys: KeyRing,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    now: float,
) -> None:
    """Check a COS request's q-sign signature and token; raise :class:`CosError` (403) if rejected.

    The signature is the ``Authorization`` header or, for a presigned URL, the ``q-sign-*`` query
    parameters (then ``x-cos-security-token`` may be a query parameter too). ``path`` is the
    decoded path the client signed (``/<key>`` virtual-hosted, ``/<bucket>/<key>`` path-style);
    ``headers`` has lower-case names.
    """
    params = {key.lower(): value for key, value in parse_qsl(query, keep_blank_values=True)}
    presigned = "q-sign-algorithm" in params
    if presigned:
        fields = {name: params.pop(name) for name in _COS_FIELDS if name in params}
        token = headers.get("x-cos-security-token") or params.get("x-cos-security-token")
    else:
        authorization = headers.get("authorization")
        if not authorization:
            raise _denied("AccessDenied", "Access Denied: the request carries no Authorization.")
        fields = dict(parse_qsl(authorization, keep_blank_values=True))
        token = headers.get("x-cos-security-token")
    if any(name not in fields for name in _COS_FIELDS) or fields["q-sign-algorithm"] != "sha1":
        raise _denied("AccessDenied", "Authorization is malformed.")
    credentials = keys.find(fields["q-ak"])
    if credentials is None:
        raise _denied("InvalidAccessKeyId", "The access key Id you provided does not exist.")
    start, end = _key_time(fields["q-sign-time"])
    if now > end or now < start - MAX_SKEW_SECONDS:
        raise _denied("AccessDenied", "Request has expired.")
    signed_params = {name: params.get(name, "") for name in filter(None, fields["q-url-param-list"].split(";"))}
    signed_headers = {name: headers.get(name, "") for name in filter(None, fields["q-header-list"].split(";"))}
    string_to_sign, _, _ = cos_string_to_sign(
        method=method, path=path, params=signed_params, headers=signed_headers, key_time=fields["q-sign-time"]
    )
    expected = cos_signature(
        secret_key=credentials.secret_key, key_time=fields["q-key-time"], string_to_sign=string_to_sign
    )
    if not hmac.compare_digest(expected, fields["q-signature"]):
        raise _denied("SignatureDoesNotMatch", "The request signature we calculated does not match.")
    if not token_accepted(credentials, token, now):
        # Counted as AuthFailure.TokenFailure, like the API's refusal (COS's own code is not documented).
        raise _denied("AccessDenied", "The security token is missing, invalid or expired.", "AuthFailure.TokenFailure")
