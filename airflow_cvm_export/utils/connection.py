"""Turn an Airflow connection (or the environment) into validated client settings.

The one place where connection settings are checked: the sync hook and the async trigger both
call :func:`config_from_connection`, and every request is sent to the URL :func:`parse_endpoint`
rebuilds from the parts it checked, so what is checked is exactly what is sent. No error raised
here contains the value of a secret (SecretKey, token, a password written into a URL).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import math
import os
import re
from dataclasses import dataclass, field, replace
from typing import Any

from airflow_cvm_export.utils.errors import TencentCloudConfigError, shown
from airflow_cvm_export.utils.validation import validate_region

CONN_TYPE = "tencentcloud"
DEFAULT_ENDPOINT = "https://cvm.tencentcloudapi.com"
DEFAULT_RATE_LIMITS = {"ExportImages": 20.0, "DescribeImages": 40.0}
# The only keys rate_limits accepts: the API actions the provider sends, and the trigger's COS checks.
RATE_LIMITED_ACTIONS = ("ExportImages", "DescribeImages", "DescribeRegions", "COS HEAD")
# Requests per second a rate limit may be set to (0 switches one off).
MIN_RATE, MAX_RATE = 0.1, 1000.0
# Extras choosing where credentials come from (see docs/credentials.md).
CREDENTIAL_KEYS = (
    "credential_source",
    "profile_name",
    "cvm_role_name",
    "role_arn",
    "role_session_name",
    "duration_seconds",
    "external_id",
    "policy",
    "sts_endpoint",
    "metadata_endpoint",
)
# Extras bounding each HTTP request and its retries (the hook's timeout, retry_limit and retry_delay arguments).
HTTP_KEYS = ("connect_timeout", "read_timeout", "retry_limit", "retry_delay")
EXTRA_KEYS = ("region", "endpoint", "cos_endpoint", "token", "allow_http", "rate_limits", *HTTP_KEYS, *CREDENTIAL_KEYS)
DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT, MAX_TIMEOUT = 5.0, 30.0, 600.0
DEFAULT_RETRY_LIMIT, MAX_RETRY_LIMIT = 5, 20
DEFAULT_RETRY_DELAY, MAX_RETRY_DELAY = 1.0, 60.0
# credential_source values: the SDK's default chain order is environment, profile, cvm_role, oidc.
CREDENTIAL_SOURCES = ("connection", "environment", "profile", "cvm_role", "oidc", "default")
DEFAULT_STS_ENDPOINT = "https://sts.tencentcloudapi.com"
DEFAULT_METADATA_ENDPOINT = "http://metadata.tencentyun.com"
DEFAULT_ROLE_SESSION_NAME = "airflow-cvm-export"
DEFAULT_DURATION_SECONDS, MAX_DURATION_SECONDS = 7200, 43200
# The documented patterns (STS AssumeRole's api.json; role ARN forms of the AssumeRole reference).
_ROLE_ARN_RE = re.compile(
    r"qcs::cam::uin/[0-9]+:(roleName/[\w+=,.@-]{1,128}|role/[0-9]+|role/tencentcloudServiceRole/[0-9]+"
    r"|role/tencentcloudServiceRoleName/[\w+=,.@-]{1,128})"
)
_SESSION_NAME_RE = re.compile(r"[\w+=,.@-]{2,128}")
_EXTERNAL_ID_RE = re.compile(r"[\w+=,.@:/-]{2,128}")
_NAME_RE = re.compile(r"[\w+=,.@-]{1,128}")
# How Airflow's connection form stores the provider's extra fields (older forms; newer ones use plain names).
EXTRA_PREFIX = f"extra__{CONN_TYPE}__"
ENV_SECRET_ID = "TENCENTCLOUD_SECRET_ID"
ENV_SECRET_KEY = "TENCENTCLOUD_SECRET_KEY"
ENV_TOKEN = "TENCENTCLOUD_TOKEN"

# scheme://host[:port][/] and nothing else; the host is checked further by _check_host.
_ENDPOINT_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)(?P<rest>.*)", re.DOTALL)
_AUTHORITY_RE = re.compile(r"(?P<host>\[[^\]]*\]|[A-Za-z0-9._-]+)(?::(?P<port>[0-9]{1,5}))?")
# Underscores too: docker-compose service names have them, and resolvers accept them.
_DNS_LABEL_RE = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_ENDPOINT_FORM = "http(s)://host[:port], with a DNS name, a dotted IPv4 address or a [bracketed] IPv6 address"


@dataclass(frozen=True)
class Endpoint:
    """A parsed endpoint: ``scheme://host[:port]`` with no path.

    :param scheme: ``http`` or ``https``.
    :param netloc: ``host[:port]`` as sent in the Host header (IPv6 in brackets).
    :param hostname: the host without brackets or port.
    """

    scheme: str
    netloc: str
    hostname: str

    @property
    def url(self) -> str:
        """``scheme://host[:port]``, rebuilt from the checked parts."""
        return f"{self.scheme}://{self.netloc}"


@dataclass(frozen=True)
class CredentialSettings:
    """Where temporary credentials come from, checked (see :func:`credential_settings`).

    :param source: ``connection``, ``environment``, ``profile``, ``cvm_role``, ``oidc`` or ``default``.
    :param secret_id: with ``connection`` or ``environment``: the long-lived SecretId (else empty).
    :param secret_key: its SecretKey.
    :param token: its token, if any.
    :param sts_endpoint: where STS is (AssumeRole, AssumeRoleWithWebIdentity).
    :param metadata_endpoint: where the instance metadata service is.
    :param role_arn: assume this role (STS AssumeRole) with what the source gives; None: use it as is.
    """

    source: str
    sts_endpoint: Endpoint
    metadata_endpoint: Endpoint
    secret_id: str = ""
    secret_key: str = field(default="", repr=False)
    token: str | None = field(default=None, repr=False)
    profile_name: str = "default"
    cvm_role_name: str | None = None
    role_arn: str | None = None
    role_session_name: str = DEFAULT_ROLE_SESSION_NAME
    duration_seconds: int = DEFAULT_DURATION_SECONDS
    external_id: str | None = field(default=None, repr=False)
    policy: str | None = field(default=None, repr=False)

    @property
    def describe(self) -> str:
        """``credential_source 'cvm_role'`` (``+ role_arn``): for logs and errors, no secret."""
        return f"credential_source {self.source!r}" + (" + role_arn" if self.role_arn else "")


@dataclass(frozen=True)
class HttpSettings:
    """How long each HTTP request may take and how a retryable call is retried (see :func:`http_settings`).

    :param connect_timeout: seconds to connect, per attempt.
    :param read_timeout: seconds to wait for the answer once connected, per attempt.
    :param retry_limit: attempts of a retryable call, >= 1.
    :param retry_delay: base of the exponential back-off between attempts, in seconds.
    """

    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    retry_limit: int = DEFAULT_RETRY_LIMIT
    retry_delay: float = DEFAULT_RETRY_DELAY


@dataclass(frozen=True)
class ClientConfig:
    """Everything needed to sign and send requests; secrets are kept out of ``repr``.

    With ``credentials`` set, the key pair comes from that source at each request (the client core's
    credential provider); ``secret_id``/``secret_key``/``token`` are then empty until it is filled in.
    """

    secret_id: str
    secret_key: str = field(repr=False)
    region: str | None
    endpoint: Endpoint
    cos_endpoint: Endpoint | None
    token: str | None = field(default=None, repr=False)
    rate_limits: dict[str, float] = field(default_factory=dict)
    credentials: CredentialSettings | None = None
    http: HttpSettings = field(default_factory=HttpSettings)

    def with_region(self, region: str | None) -> ClientConfig:
        """Return a copy using ``region`` (validated) instead of the connection's region.

        Deprecated: nothing in the provider uses it (the hooks take ``region=``); kept for 0.1.0's callers.
        """
        import warnings

        warnings.warn(
            "ClientConfig.with_region() is deprecated: pass region= to the hook instead",
            DeprecationWarning,
            stacklevel=2,
        )
        if region is None or region == self.region:
            return self
        return replace(self, region=validate_region(region))

    def signed_by(self, secret_id: str, secret_key: str, token: str | None) -> ClientConfig:
        """A copy signing with this key pair (the credential provider's current one)."""
        return replace(self, secret_id=secret_id, secret_key=secret_key, token=token)


def is_loopback(hostname: str) -> bool:
    """True for localhost and loopback addresses."""
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def check_credential(value: Any, field_name: str) -> str:
    """Return ``value`` if it is printable ASCII with no surrounding whitespace; the error never shows it.

    A SecretId, SecretKey or token with a trailing newline or a non-ASCII character would otherwise
    fail inside the HTTP client, with the value (or the signed Authorization header) in the error.
    """
    if not isinstance(value, str) or not value:
        raise TencentCloudConfigError(f"{field_name} must be a non-empty string")
    if value != value.strip():
        raise TencentCloudConfigError(
            f"{field_name} must have no whitespace or line break at its start or end (a copy-paste slip?)"
        )
    for position, char in enumerate(value, 1):
        if not " " <= char <= "~":
            raise TencentCloudConfigError(
                f"{field_name} must be printable ASCII (letters, digits, punctuation); character {position} is not"
            )
    return value


def url_password(value: Any) -> str | None:
    """The user information of an endpoint URL (``user:password@``) the way any parser could see it, or None."""
    if not isinstance(value, str):
        return None
    authority = value.split("://", 1)[-1].split("/", 1)[0]
    userinfo, at, _ = authority.rpartition("@")
    if not at:
        return None
    return userinfo.partition(":")[2] or userinfo


def _redact(value: str) -> str:
    """``value`` for an error message: user information replaced, at most 80 characters."""
    secret = url_password(value)
    return shown(value.replace(secret, "***") if secret else value)


def _check_host(host: str, field_name: str) -> str:
    """The lower-case host of an endpoint: a DNS name, a dotted IPv4 address or a bracketed IPv6 address."""
    if host.startswith("["):
        try:
            if "%" in host:  # a zone id ("%25eth0") is read differently by urllib, urllib3 and httpx
                raise ValueError
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise TencentCloudConfigError(f"{field_name} has an invalid IPv6 address; use {_ENDPOINT_FORM}") from None
        return host.lower()
    host = host.lower()
    labels = host.split(".")
    if all(label.isdigit() for label in labels):
        try:  # only the dotted-quad form: "127.1" or "2130706433" mean different things to different parsers
            if len(labels) == 4:
                ipaddress.IPv4Address(host)
                return host
        except ValueError:
            pass
        raise TencentCloudConfigError(f"{field_name} has an invalid IPv4 address; use {_ENDPOINT_FORM}")
    if len(host) > 253 or not all(_DNS_LABEL_RE.fullmatch(label) for label in labels) or labels[-1][0].isdigit():
        # a numeric last label ("0x7f.0.0.1", "10.0.0.1.") is read as an address by some resolvers
        raise TencentCloudConfigError(f"{field_name} has an invalid host name; use {_ENDPOINT_FORM}")
    return host


def parse_endpoint(value: Any, *, field_name: str, allow_http: bool) -> Endpoint:
    """Parse an endpoint URL or bare host; plain http only to loopback or with ``allow_http``.

    Only ``scheme://host[:port]`` (and a trailing ``/``) is accepted: no user information, path,
    query, fragment, backslash, whitespace inside or non-ASCII character, so that urllib,
    urllib3 (requests) and httpx cannot read it differently. Requests go to :attr:`Endpoint.url`,
    rebuilt from the checked parts.
    """
    if not isinstance(value, str) or not value.strip():
        raise TencentCloudConfigError(f"{field_name} must be a URL such as {DEFAULT_ENDPOINT}")
    text = value.strip()
    if url_password(text) is not None:
        raise TencentCloudConfigError(
            f"{field_name} must not contain a user name or password (user:password@host): put the SecretId and "
            "SecretKey in the connection's login and password"
        )
    if "\\" in text or not all("!" <= char <= "~" for char in text):
        raise TencentCloudConfigError(
            f"{field_name} must be {_ENDPOINT_FORM}: printable ASCII without spaces or backslashes (write an "
            f"internationalised host name in its xn-- form), got {_redact(text)}"
        )
    match = _ENDPOINT_RE.fullmatch(text if "://" in text else f"https://{text}")
    if match is None or match["scheme"].lower() not in ("http", "https"):
        raise TencentCloudConfigError(
            f"{field_name} must be {_ENDPOINT_FORM} (scheme http or https), got {_redact(text)}"
        )
    authority = _AUTHORITY_RE.fullmatch(match["authority"])
    if authority is None or match["rest"] not in ("", "/"):
        raise TencentCloudConfigError(f"{field_name} must be {_ENDPOINT_FORM}, no path or query, got {_redact(text)}")
    scheme = match["scheme"].lower()
    host = _check_host(authority["host"], field_name)
    port = authority["port"]
    if port is not None and not 1 <= int(port) <= 65535:
        raise TencentCloudConfigError(f"{field_name} port must be between 1 and 65535, got {_redact(text)}")
    hostname = host.strip("[]")
    if scheme == "http" and not allow_http and not is_loopback(hostname):
        raise TencentCloudConfigError(
            f"{field_name} uses plain http to a non-loopback host ({hostname}); use https, or set the "
            "connection extra allow_http: true (for example for the emulator in docker-compose)"
        )
    netloc = host if port is None else f"{host}:{int(port)}"
    return Endpoint(scheme=scheme, netloc=netloc, hostname=hostname)


def _parse_bool(value: Any, field_name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise TencentCloudConfigError(f"connection extra {field_name} must be true or false, got {_short(value)}")


def _short(value: Any) -> str:
    return shown(value, 40) if isinstance(value, str | int | float | bool) else type(value).__name__


def _closest(name: str, known: tuple[str, ...]) -> str:
    """``; did you mean '<the closest known name>'?`` (ignoring case), or nothing when none is close."""
    import difflib  # only for a connection with a misspelt extra

    by_lower = {option.lower(): option for option in known}
    match = difflib.get_close_matches(name.lower(), by_lower, n=1, cutoff=0.6)
    return f"; did you mean {by_lower[match[0]]!r}?" if match else ""


def _parse_rate_limits(value: Any) -> dict[str, float]:
    example = 'a JSON object such as {"DescribeImages": 40}'
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except (ValueError, RecursionError):
            raise TencentCloudConfigError(f"connection extra rate_limits must be {example}") from None
    if not isinstance(value, dict):
        raise TencentCloudConfigError(f"connection extra rate_limits must be {example}")
    limits = dict(DEFAULT_RATE_LIMITS)
    for action, rate in value.items():
        if action not in RATE_LIMITED_ACTIONS:
            raise TencentCloudConfigError(
                f"connection extra rate_limits has an unknown action {_short(action)}"
                f"{_closest(str(action), RATE_LIMITED_ACTIONS)} (known: {', '.join(RATE_LIMITED_ACTIONS)})"
            )
        if (
            isinstance(rate, bool)
            or not isinstance(rate, int | float)
            or not math.isfinite(rate)
            or not (rate == 0 or MIN_RATE <= rate <= MAX_RATE)
        ):
            raise TencentCloudConfigError(
                f"connection extra rate_limits[{action!r}] must be 0 (no limit) or between {MIN_RATE:g} and "
                f"{MAX_RATE:g} requests per second, got {_short(rate)}"
            )
        limits[action] = float(rate)
    return limits


def _seconds(extras: dict[str, Any], name: str, default: float, high: float, *, zero: bool = False) -> float:
    """The extra ``name`` as seconds (a number, or its text), ``default`` when unset: above 0 (or 0 with
    ``zero``) and at most ``high``."""
    value = extras.get(name, default)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not (0 <= value <= high if zero else 0 < value <= high)
    ):
        raise TencentCloudConfigError(
            f"connection extra {name} must be a number of seconds {'from 0' if zero else 'above 0'} up to {high:g} "
            f"(default {default:g}), got {_short(value)}"
        )
    return float(value)


def http_settings(extras: dict[str, Any]) -> HttpSettings:
    """The checked extras ``connect_timeout``, ``read_timeout``, ``retry_limit`` and ``retry_delay``; the
    defaults where unset. A hook's own arguments win over them (``CvmClientBase``)."""
    limit = _whole(
        extras.get("retry_limit", DEFAULT_RETRY_LIMIT),
        "retry_limit",
        MAX_RETRY_LIMIT,
        f"attempts from 1 (no retry) to {MAX_RETRY_LIMIT} (default {DEFAULT_RETRY_LIMIT})",
    )
    return HttpSettings(
        connect_timeout=_seconds(extras, "connect_timeout", DEFAULT_CONNECT_TIMEOUT, MAX_TIMEOUT),
        read_timeout=_seconds(extras, "read_timeout", DEFAULT_READ_TIMEOUT, MAX_TIMEOUT),
        retry_limit=limit,
        retry_delay=_seconds(extras, "retry_delay", DEFAULT_RETRY_DELAY, MAX_RETRY_DELAY, zero=True),
    )


def _extra_object(extra: Any) -> dict[Any, Any]:
    """The connection's extra as a dict (Airflow hands it over as JSON text)."""
    if extra is None or extra == "":
        return {}
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except (ValueError, RecursionError):
            raise TencentCloudConfigError(
                "the connection's extra is not valid JSON; expected an object with keys " + ", ".join(EXTRA_KEYS)
            ) from None
    if not isinstance(extra, dict):
        raise TencentCloudConfigError("the connection's extra must be a JSON object")
    return extra


def _known_extras(extra: dict[Any, Any]) -> dict[str, Any]:
    """The settings of the extra under their plain names; unset (None or empty) values are left out."""
    extras: dict[str, Any] = {}
    for key, value in extra.items():
        if value is None or value == "":  # the connection form stores its empty fields
            continue
        name = key.removeprefix(EXTRA_PREFIX) if isinstance(key, str) else key
        if name not in EXTRA_KEYS:
            raise TencentCloudConfigError(
                f"connection extra {_short(key)} is not a setting of this provider{_closest(str(name), EXTRA_KEYS)} "
                f"(known: {', '.join(EXTRA_KEYS)})"
            )
        if name in extras and extras[name] != value:
            raise TencentCloudConfigError(
                f"connection extra {name} is set twice, as {name!r} and {EXTRA_PREFIX + name!r}, to different values"
            )
        extras[name] = value
    return extras


# Extras whose whole value is secret; the endpoints' only secret is a password written into them.
_SECRET_EXTRAS = ("token", "external_id", "policy")
_ENDPOINT_EXTRAS = ("endpoint", "cos_endpoint", "sts_endpoint", "metadata_endpoint")


def _secrets(password: Any, extra: dict[Any, Any]) -> list[str]:
    """Every secret value a connection holds, even a malformed one: SecretKey, token, external_id, policy,
    URL passwords."""
    values = [password, os.environ.get(ENV_SECRET_KEY), os.environ.get(ENV_TOKEN)]
    for name in _SECRET_EXTRAS + _ENDPOINT_EXTRAS:
        for key in (name, EXTRA_PREFIX + name):
            value = extra.get(key)
            if name == "policy" and isinstance(value, dict | str):
                values.extend(_policy_forms(value))
                continue
            values.append(value if name in _SECRET_EXTRAS else url_password(value))
    return [value for value in values if isinstance(value, str) and value.strip()]


def _policy_forms(value: dict[Any, Any] | str) -> list[str]:
    """A session policy as written, as JSON text and in the compact form sent."""
    try:
        document = json.loads(value) if isinstance(value, str) else value
    except (ValueError, RecursionError):
        return [value] if isinstance(value, str) else []
    forms = [json.dumps(document), json.dumps(document, separators=(",", ":"))]
    return forms + ([value] if isinstance(value, str) else [])


_MASKED: set[str] = set()


def mask_secrets(values: list[str]) -> None:
    """Register each secret once with Airflow's masker, also stripped (a copy-paste slip's repr differs)."""
    from airflow.sdk.log import mask_secret

    for value in values:
        for form in {value, value.strip()}:
            if form and form not in _MASKED:
                mask_secret(form)
                _MASKED.add(form)


def _pattern(extras: dict[str, Any], name: str, pattern: re.Pattern[str], allowed: str) -> str | None:
    """The extra ``name`` if it is a string matching ``pattern``; the error names the field and what it allows."""
    value = extras.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        shown_value = "" if name == "external_id" else f", got {_short(value)}"
        raise TencentCloudConfigError(f"connection extra {name} must be {allowed}{shown_value}")
    return value


def _whole(value: Any, name: str, high: int, allowed: str) -> int:
    """The extra ``name``'s ``value`` as a whole number from 1 to ``high`` (or its digits as text); the
    error says it must be "a whole number of ``allowed``"."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise TencentCloudConfigError(
            f"connection extra {name} must be a whole number of {allowed}, got {_short(value)}"
        )
    return value


def _duration(value: Any) -> int:
    return _whole(
        value,
        "duration_seconds",
        MAX_DURATION_SECONDS,
        f"seconds from 1 to {MAX_DURATION_SECONDS} (STS's maximum; default {DEFAULT_DURATION_SECONDS})",
    )


def _policy(value: Any) -> str | None:
    """The session policy as compact JSON text (sent URL-encoded); the error never shows it."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            value = None
    if not isinstance(value, dict) or "principal" in {str(key).lower() for key in value}:
        raise TencentCloudConfigError(
            "connection extra policy must be a CAM policy JSON object such as "
            '{"version": "2.0", "statement": [...]}, without principal'
        )
    return json.dumps(value, separators=(",", ":"))


def _only_with(extras: dict[str, Any], name: str, sources: tuple[str, ...], source: str) -> None:
    if name in extras and source not in sources:
        raise TencentCloudConfigError(
            f"connection extra {name} applies only to credential_source {' or '.join(sources)}, "
            f"not {source!r}: remove it or change credential_source"
        )


def credential_settings(
    extras: dict[str, Any], *, login: str | None, password: str | None, conn_id: str, allow_http: bool
) -> CredentialSettings | None:
    """The checked credential extras; None when the connection's (or environment's) long-lived key pair
    is used as is, as before these extras existed."""
    source = extras.get("credential_source")
    if source is not None and source not in CREDENTIAL_SOURCES:
        raise TencentCloudConfigError(
            f"connection extra credential_source must be one of {', '.join(CREDENTIAL_SOURCES)}, "
            f"got {_short(source)}{_closest(str(source), CREDENTIAL_SOURCES)}"
        )
    if source not in (None, "connection") and (login or password):
        raise TencentCloudConfigError(
            f"connection {conn_id!r} has a SecretId (login) or SecretKey (password) but credential_source is "
            f"{source!r}: leave login and password empty, or use credential_source 'connection'"
        )
    if source is not None and source != "connection" and "token" in extras:
        raise TencentCloudConfigError(
            f"connection extra token goes with the connection's login and password, not credential_source {source!r}"
        )
    chosen = source or ("connection" if login or password else "environment")
    _only_with(extras, "profile_name", ("profile", "default"), chosen)
    _only_with(extras, "cvm_role_name", ("cvm_role", "default"), chosen)
    role_arn = _pattern(
        extras, "role_arn", _ROLE_ARN_RE, "a role ARN such as qcs::cam::uin/100000000001:roleName/ExportRole"
    )
    if source == "connection" and not (login and password):
        raise TencentCloudConfigError(
            f"credential_source 'connection' needs both the SecretId (login) and SecretKey (password) of "
            f"connection {conn_id!r}"
        )
    if role_arn is None:
        for name in ("external_id", "policy"):
            if name in extras:
                raise TencentCloudConfigError(f"connection extra {name} needs role_arn (it is sent with AssumeRole)")
        for name in ("role_session_name", "duration_seconds"):
            if name in extras and chosen != "oidc":
                raise TencentCloudConfigError(f"connection extra {name} needs role_arn or credential_source 'oidc'")
        if chosen in ("connection", "environment"):
            return None  # the long-lived key pair as is, as before these extras existed
    session = _pattern(extras, "role_session_name", _SESSION_NAME_RE, "2 to 128 of letters, digits and =,.@_-")
    return CredentialSettings(
        source=chosen,
        profile_name=_pattern(extras, "profile_name", _NAME_RE, "a profile name (letters, digits, =,.@_-)")
        or "default",
        cvm_role_name=_pattern(extras, "cvm_role_name", _NAME_RE, "a CAM role name (letters, digits, =,.@_-)"),
        role_arn=role_arn,
        role_session_name=session or DEFAULT_ROLE_SESSION_NAME,
        duration_seconds=_duration(extras.get("duration_seconds", DEFAULT_DURATION_SECONDS)),
        external_id=_pattern(extras, "external_id", _EXTERNAL_ID_RE, "2 to 128 of letters, digits and =,.@:/-"),
        policy=_policy(extras.get("policy")),
        sts_endpoint=parse_endpoint(
            extras.get("sts_endpoint", DEFAULT_STS_ENDPOINT), field_name="sts_endpoint", allow_http=allow_http
        ),
        # The instance metadata service is plain http by design: its default address is allowed as is.
        metadata_endpoint=parse_endpoint(
            extras.get("metadata_endpoint", DEFAULT_METADATA_ENDPOINT),
            field_name="metadata_endpoint",
            allow_http=allow_http or "metadata_endpoint" not in extras,
        ),
    )


def config_from_connection(
    *, login: str | None, password: str | None, extra: Any, conn_id: str, region: str | None = None
) -> ClientConfig:
    """Build a :class:`ClientConfig` from connection fields, falling back to the environment.

    The secrets found (SecretKey, token, URL passwords) are registered with Airflow's masker before
    anything is checked, so not even a log line about a malformed connection can show them.
    """
    extra_object = _extra_object(extra)
    mask_secrets(_secrets(password, extra_object))
    extras = _known_extras(extra_object)
    allow_http = _parse_bool(extras.get("allow_http", False), "allow_http")
    credentials = credential_settings(extras, login=login, password=password, conn_id=conn_id, allow_http=allow_http)
    secret_id = secret_key = ""
    token = None
    if credentials is None or credentials.source in ("connection", "environment"):
        secret_id, secret_key, token = _long_lived(login, password, extras.get("token"), conn_id)
        if credentials is not None:  # role_arn on top of the long-lived key pair: it signs AssumeRole only
            credentials = replace(credentials, secret_id=secret_id, secret_key=secret_key, token=token)
            secret_id, secret_key, token = "", "", None
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
        credentials=credentials,
        http=http_settings(extras),
    )


def _long_lived(login: str | None, password: str | None, token: Any, conn_id: str) -> tuple[str, str, str | None]:
    """The connection's key pair (and token extra), else the environment's; checked, never shown."""
    if login or password:
        secret_id, secret_key = login, password
        id_field, key_field, token_field = "the SecretId (login)", "the SecretKey (password)", "connection extra token"
    else:  # credentials (and token) come as a set from the environment, never mixed with the connection's
        secret_id, secret_key = os.environ.get(ENV_SECRET_ID), os.environ.get(ENV_SECRET_KEY)
        id_field, key_field, token_field = ENV_SECRET_ID, ENV_SECRET_KEY, "connection extra token"
        if not token and os.environ.get(ENV_TOKEN):
            token, token_field = os.environ[ENV_TOKEN], ENV_TOKEN
    if not secret_id or not secret_key:
        raise TencentCloudConfigError(
            f"no credentials: set both the SecretId (login) and SecretKey (password) of connection {conn_id!r}, "
            f"or leave both empty and set the environment variables {ENV_SECRET_ID} and {ENV_SECRET_KEY}, "
            "or set the connection extra credential_source (profile, cvm_role, oidc or default)"
        )
    check_credential(secret_id, f"{id_field} of connection {conn_id!r}")
    check_credential(secret_key, f"{key_field} of connection {conn_id!r}")
    if token is not None:
        check_credential(token, token_field)
    return secret_id, secret_key, token or None
