"""Turn an Airflow connection (or the environment) into validated client settings.

Shared by the sync hook and the async trigger so both read a connection the same way.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from airflow_cvm_export.utils.errors import TencentCloudConfigError

CONN_TYPE = "tencentcloud"
DEFAULT_CONN_ID = "tencentcloud_default"
DEFAULT_ENDPOINT = "https://cvm.tencentcloudapi.com"
DEFAULT_RATE_LIMITS = {"ExportImages": 20.0, "DescribeImages": 40.0}
REGION_RE = re.compile(r"^[a-z]{2,4}(-[a-z]+)+(-\d+)?$")
EXTRA_KEYS = ("region", "endpoint", "cos_endpoint", "token", "allow_http", "rate_limits")
ENV_SECRET_ID = "TENCENTCLOUD_SECRET_ID"
ENV_SECRET_KEY = "TENCENTCLOUD_SECRET_KEY"
ENV_TOKEN = "TENCENTCLOUD_TOKEN"


@dataclass(frozen=True)
class Endpoint:
    """A parsed endpoint: ``scheme://host[:port]`` with no path."""

    scheme: str
    netloc: str
    hostname: str

    @property
    def url(self) -> str:
        """``scheme://host[:port]``."""
        return f"{self.scheme}://{self.netloc}"


@dataclass(frozen=True)
class ClientConfig:
    """Everything needed to sign and send requests; secrets are kept out of ``repr``."""

    secret_id: str
    secret_key: str = field(repr=False)
    region: str | None
    endpoint: Endpoint
    cos_endpoint: Endpoint | None
    token: str | None = field(default=None, repr=False)
    rate_limits: dict[str, float] = field(default_factory=dict)

    def with_region(self, region: str | None) -> ClientConfig:
        """Return a copy using ``region`` (validated) instead of the connection's region."""
        if region is None or region == self.region:
            return self
        return ClientConfig(
            secret_id=self.secret_id,
            secret_key=self.secret_key,
            region=validate_region(region),
            endpoint=self.endpoint,
            cos_endpoint=self.cos_endpoint,
            token=self.token,
            rate_limits=self.rate_limits,
        )


def is_loopback(hostname: str) -> bool:
    """True for localhost and loopback addresses."""
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def validate_region(region: Any, *, field_name: str = "region") -> str:
    """Return ``region`` if it looks like a Tencent Cloud region such as ``ap-guangzhou``."""
    if not isinstance(region, str) or not REGION_RE.fullmatch(region):
        raise TencentCloudConfigError(
            f"{field_name} must be a Tencent Cloud region such as 'ap-guangzhou' or 'na-siliconvalley', got {region!r}"
        )
    return region


def parse_endpoint(value: Any, *, field_name: str, allow_http: bool) -> Endpoint:
    """Parse an endpoint URL or bare host; plain http only to loopback or with ``allow_http``."""
    if not isinstance(value, str) or not value.strip():
        raise TencentCloudConfigError(f"{field_name} must be a URL such as https://cvm.tencentcloudapi.com")
    text = value.strip()
    parts = urlsplit(text if "://" in text else f"https://{text}")
    try:
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        hostname = None
    if parts.scheme not in ("http", "https") or not hostname or parts.path not in ("", "/") or parts.query:
        raise TencentCloudConfigError(f"{field_name} must be http(s)://host[:port] with no path, got {value!r}")
    if parts.scheme == "http" and not allow_http and not is_loopback(hostname):
        raise TencentCloudConfigError(
            f"{field_name} uses plain http to a non-loopback host ({hostname}); use https, or set the "
            "connection extra allow_http: true (for example for the emulator in docker-compose)"
        )
    return Endpoint(scheme=parts.scheme, netloc=parts.netloc, hostname=hostname)


def _parse_bool(value: Any, field_name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise TencentCloudConfigError(f"connection extra {field_name} must be true or false, got {value!r}")


def _parse_rate_limits(value: Any) -> dict[str, float]:
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError:
            raise TencentCloudConfigError(
                'connection extra rate_limits must be a JSON object such as {"DescribeImages": 40}'
            ) from None
    if not isinstance(value, dict):
        raise TencentCloudConfigError(
            'connection extra rate_limits must be a JSON object such as {"DescribeImages": 40}'
        )
    limits = dict(DEFAULT_RATE_LIMITS)
    for action, rate in value.items():
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not rate >= 0:
            raise TencentCloudConfigError(
                f"connection extra rate_limits[{action!r}] must be a number of requests per second >= 0 "
                f"(0 switches the limiter off), got {rate!r}"
            )
        limits[str(action)] = float(rate)
    return limits


def _extras(extra: Any) -> dict[str, Any]:
    if extra is None or extra == "":
        return {}
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except ValueError:
            raise TencentCloudConfigError(
                "the connection's extra is not valid JSON; expected an object with keys " + ", ".join(EXTRA_KEYS)
            ) from None
    if not isinstance(extra, dict):
        raise TencentCloudConfigError("the connection's extra must be a JSON object")
    prefix = f"extra__{CONN_TYPE}__"
    return {key.removeprefix(prefix): value for key, value in extra.items() if value not in (None, "")}


def config_from_connection(
    *, login: str | None, password: str | None, extra: Any, conn_id: str, region: str | None = None
) -> ClientConfig:
    """Build a :class:`ClientConfig` from connection fields, falling back to the environment."""
    extras = _extras(extra)
    token = extras.get("token")
    if login or password:
        secret_id, secret_key = login, password
    else:  # credentials (and token) come as a set from the environment, never mixed with the connection's
        secret_id, secret_key = os.environ.get(ENV_SECRET_ID), os.environ.get(ENV_SECRET_KEY)
        token = token or os.environ.get(ENV_TOKEN)
    if not secret_id or not secret_key:
        raise TencentCloudConfigError(
            f"no credentials: set both the SecretId (login) and SecretKey (password) of connection {conn_id!r}, "
            f"or leave both empty and set the environment variables {ENV_SECRET_ID} and {ENV_SECRET_KEY}"
        )
    if not isinstance(token, str | None):
        raise TencentCloudConfigError("connection extra token must be a string")
    allow_http = _parse_bool(extras.get("allow_http", False), "allow_http")
    endpoint = parse_endpoint(extras.get("endpoint", DEFAULT_ENDPOINT), field_name="endpoint", allow_http=allow_http)
    cos_endpoint = None
    if "cos_endpoint" in extras:
        cos_endpoint = parse_endpoint(extras["cos_endpoint"], field_name="cos_endpoint", allow_http=allow_http)
    elif "endpoint" in extras and endpoint.scheme == "http":
        cos_endpoint = endpoint  # the emulator serves COS (path-style) on the same address
    chosen_region = region or extras.get("region")
    return ClientConfig(
        secret_id=secret_id,
        secret_key=secret_key,
        region=validate_region(chosen_region) if chosen_region is not None else None,
        endpoint=endpoint,
        cos_endpoint=cos_endpoint,
        token=token or None,
        rate_limits=_parse_rate_limits(extras.get("rate_limits", {})),
    )
