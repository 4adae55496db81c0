"""Request signatures: TC3-HMAC-SHA256 for API 3.0 and q-sign-algorithm=sha1 for COS.

Pure functions, no I/O: the only place in the package where a request gets signed.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from functools import lru_cache
from urllib.parse import quote

TC3_ALGORITHM = "TC3-HMAC-SHA256"
_SIGNED_HEADERS = "content-type;host"


def _hmac256(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


@lru_cache(maxsize=64)
def _utc_date(day: int) -> str:
    """``YYYY-MM-DD`` of a day number (unix seconds // 86400)."""
    return time.strftime("%Y-%m-%d", time.gmtime(day * 86400))


@lru_cache(maxsize=64)
def _tc3_signing_key(secret_key: str, date: str, service: str) -> bytes:
    """kSigning of a (key, UTC date, service): the same for every request of that day, so cached."""
    k_date = _hmac256(("TC3" + secret_key).encode("utf-8"), date)
    return _hmac256(_hmac256(k_date, service), "tc3_request")


def tc3_signature(*, secret_key: str, service: str, timestamp: int, string_to_sign: str) -> str:
    """Derive the TC3 signing key for the UTC date of ``timestamp`` and sign ``string_to_sign``."""
    key = _tc3_signing_key(secret_key, _utc_date(timestamp // 86400), service)
    return hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def tc3_string_to_sign(*, canonical_request: str, service: str, timestamp: int) -> str:
    """Build the TC3 StringToSign from a canonical request."""
    digest = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    return f"{TC3_ALGORITHM}\n{timestamp}\n{_utc_date(timestamp // 86400)}/{service}/tc3_request\n{digest}"


def sign_tc3(
    *,
    secret_id: str,
    secret_key: str,
    service: str,
    host: str,
    action: str,
    version: str,
    payload: bytes,
    timestamp: int,
    region: str | None = None,
    token: str | None = None,
    language: str | None = None,
    content_type: str = "application/json",
) -> dict[str, str]:
    """Return every header of a signed API 3.0 ``POST /`` request, ``Authorization`` included.

    Signs ``content-type;host`` as the official SDK does; the Content-Type sent must be
    byte-identical to ``content_type``. The date of the credential scope is the UTC date of
    ``timestamp``.
    """
    timestamp = int(timestamp)
    canonical_request = (
        f"POST\n/\n\ncontent-type:{content_type}\nhost:{host}\n\n{_SIGNED_HEADERS}\n"
        + hashlib.sha256(payload).hexdigest()
    )
    string_to_sign = tc3_string_to_sign(canonical_request=canonical_request, service=service, timestamp=timestamp)
    signature = tc3_signature(
        secret_key=secret_key, service=service, timestamp=timestamp, string_to_sign=string_to_sign
    )
    headers = {
        "Host": host,
        "Content-Type": content_type,
        "X-TC-Action": action,
        "X-TC-Timestamp": str(timestamp),
        "X-TC-Version": version,
        "Authorization": (
            f"{TC3_ALGORITHM} Credential={secret_id}/{_utc_date(timestamp // 86400)}/{service}/tc3_request, "
            f"SignedHeaders={_SIGNED_HEADERS}, Signature={signature}"
        ),
    }
    if region:
        headers["X-TC-Region"] = region
    if token:
        headers["X-TC-Token"] = token
    if language:
        headers["X-TC-Language"] = language
    return headers


def _cos_pairs(items: Mapping[str, str]) -> tuple[str, str]:
    """Return (key list, k=v string) for COS params or headers: keys lower-cased, all encoded."""
    encoded = sorted((quote(str(k).lower(), safe="-_.~"), quote(str(v), safe="-_.~")) for k, v in items.items())
    return ";".join(k for k, _ in encoded), "&".join(f"{k}={v}" for k, v in encoded)


def cos_string_to_sign(
    *, method: str, path: str, params: Mapping[str, str], headers: Mapping[str, str], key_time: str
) -> tuple[str, str, str]:
    """Return (StringToSign, HeaderList, UrlParamList) of a COS request."""
    param_list, param_string = _cos_pairs(params)
    header_list, header_string = _cos_pairs(headers)
    http_string = f"{method.lower()}\n{path}\n{param_string}\n{header_string}\n"
    digest = hashlib.sha1(http_string.encode("utf-8")).hexdigest()
    return f"sha1\n{key_time}\n{digest}\n", header_list, param_list


def cos_signature(*, secret_key: str, key_time: str, string_to_sign: str) -> str:
    """Sign a COS StringToSign with the key derived from ``key_time``."""
    sign_key = hmac.new(secret_key.encode("utf-8"), key_time.encode("utf-8"), hashlib.sha1).hexdigest()
    return hmac.new(sign_key.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha1).hexdigest()


def sign_cos(
    *,
    secret_id: str,
    secret_key: str,
    method: str,
    path: str,
    params: Mapping[str, str],
    headers: Mapping[str, str],
    start: int,
    end: int,
) -> str:
    """Return the COS ``Authorization`` value for a request.

    ``path`` is the decoded request path; every header in ``headers`` is signed.
    """
    key_time = f"{start};{end}"
    string_to_sign, header_list, param_list = cos_string_to_sign(
        method=method, path=path, params=params, headers=headers, key_time=key_time
    )
    signature = cos_signature(secret_key=secret_key, key_time=key_time, string_to_sign=string_to_sign)
    return (
        f"q-sign-algorithm=sha1&q-ak={secret_id}&q-sign-time={key_time}&q-key-time={key_time}"
        f"&q-header-list={header_list}&q-url-param-list={param_list}&q-signature={signature}"
    )
