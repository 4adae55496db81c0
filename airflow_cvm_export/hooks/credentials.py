"""The client core's credential provider: where a request's key pair comes from, and when it is renewed.

A connection's ``credential_source`` (checked by
:func:`~airflow_cvm_export.utils.connection.credential_settings`) names a source: ``environment``,
``profile``, ``cvm_role`` (the instance metadata service), ``oidc`` (STS AssumeRoleWithWebIdentity from
TKE's variables) or ``default`` (that order, the SDK's); ``role_arn`` assumes a role (STS AssumeRole)
with what the source gives, ``connection`` and ``environment`` included. One
:class:`CredentialProvider` per process and source (:func:`provider_for`) holds the current key pair and
renews it when less than 5 minutes remain, or a third of its lifetime when that is shorter: one renewal
in flight, shared by every thread and coroutine asking meanwhile; while the current pair is still valid,
callers keep using it and do not wait. A renewal that fails is retried with back-off; if the current
pair is still valid, it is kept (a warning, and no new attempt for a while) instead of failing the call.
Every secret fetched is registered with Airflow's masker before it is used; errors name the source and
the field, never a secret nor a body of an STS or metadata answer.
"""

from __future__ import annotations

import asyncio
import configparser
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from airflow_cvm_export.utils.connection import (
    ENV_SECRET_ID,
    ENV_SECRET_KEY,
    ENV_TOKEN,
    CredentialSettings,
    Endpoint,
    check_credential,
    mask_secrets,
)
from airflow_cvm_export.utils.errors import (
    TencentCloudConfigError,
    TencentCloudCredentialError,
    TencentCloudError,
    TencentCloudNetworkError,
    TencentCloudServerError,
    TencentCloudThrottledError,
)

log = logging.getLogger(__name__)

# Renew when less than this many seconds remain (or a third of the lifetime, when that is shorter).
REFRESH_BEFORE = 300.0
FETCH_ATTEMPTS = 3
FETCH_BACKOFF = 0.5  # seconds before the 2nd attempt, doubling
# After a failed renewal while the current pair is still valid: no new attempt for this share of what remains.
RETRY_SHARE = 0.1
STS_VERSION = "2018-08-13"
STS_REGION = "ap-guangzhou"  # what the SDK's STSAssumeRoleCredential sends
TKE_VARIABLES = ("TKE_REGION", "TKE_PROVIDER_ID", "TKE_WEB_IDENTITY_TOKEN_FILE", "TKE_ROLE_ARN")
ROLES_PATH = "/latest/meta-data/cam/security-credentials/"
HTTP_TIMEOUT = (3.0, 10.0)
PROBE_TIMEOUT = (1.0, 2.0)  # the default chain's look at the metadata service


@dataclass(frozen=True)
class KeyPair:
    """A SecretId/SecretKey (and token), with when it expires (Unix time; None: never)."""

    secret_id: str
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)
    expires: float | None = None
    fetched: float = 0.0

    def due(self, now: float) -> bool:
        """True when it should be renewed: less than 5 minutes (or a third of its lifetime) remain."""
        if self.expires is None:
            return False
        margin = min(REFRESH_BEFORE, (self.expires - self.fetched) / 3)
        return self.expires - now <= margin

    def valid(self, now: float) -> bool:
        """True until it expires (one second early, for the request's flight)."""
        return self.expires is None or now < self.expires - 1


@dataclass(frozen=True)
class CredentialRefresh:
    """What an exchange yields instead of a request when ``stale`` was refused (``AuthFailure.TokenFailure``):
    the driver renews the credentials (unless another caller did meanwhile) and sends back None."""

    stale: KeyPair


class CredentialProvider:
    """The current key pair of one source, renewed on time; see the module docstring.

    :param settings: the checked source settings.
    :param fetch: obtains a new key pair (blocking); raises
        :class:`~airflow_cvm_export.utils.errors.TencentCloudConfigError` for what no retry can fix,
        any other :class:`~airflow_cvm_export.utils.errors.TencentCloudError` for what a retry might.
    """

    def __init__(self, settings: CredentialSettings, fetch: Callable[[], KeyPair]) -> None:
        self.settings = settings
        self.fetches = 0  # key pairs obtained, for tests and benchmarks
        self._fetch = fetch
        self._current: KeyPair | None = None
        self._lock = threading.Lock()
        self._quiet_until = 0.0
        self._tasks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Future[KeyPair]] = (
            weakref.WeakKeyDictionary()
        )

    def current(self) -> KeyPair:
        """The key pair to sign with now (no I/O): call :meth:`get` or :meth:`aget` first."""
        if self._current is None:
            raise TencentCloudCredentialError(f"{self.settings.describe}: no credentials obtained yet")
        return self._current

    def get(self, stale: KeyPair | None = None) -> KeyPair:
        """The key pair, renewed first when due (or when ``stale``, refused by the server, is still current)."""
        current = self._current
        if not self._needs(current, stale):
            return current  # type: ignore[return-value]
        if stale is None and self._usable(current):
            if not self._lock.acquire(blocking=False):
                return current  # type: ignore[return-value]  # another caller renews; this one is still valid
        else:
            self._lock.acquire()
        try:
            current = self._current
            if not self._needs(current, stale):
                return current  # type: ignore[return-value]
            return self._renew(current)
        finally:
            self._lock.release()

    async def aget(self, stale: KeyPair | None = None) -> KeyPair:
        """:meth:`get` for coroutines: the renewal runs in a thread, one per event loop, shared by all;
        while the current key pair is still valid, it is returned at once and the renewal goes on."""
        current = self._current
        if not self._needs(current, stale):
            return current  # type: ignore[return-value]
        if stale is None and self._usable(current) and self._lock.locked():
            return current  # type: ignore[return-value]
        loop = asyncio.get_running_loop()
        task = self._tasks.get(loop)
        if task is None or task.done():
            task = loop.create_task(asyncio.to_thread(self.get, stale))
            task.add_done_callback(_retrieved)
            self._tasks[loop] = task
        if stale is None and self._usable(current):
            return current  # type: ignore[return-value]
        return await asyncio.shield(task)

    def _usable(self, current: KeyPair | None) -> bool:
        return current is not None and current.valid(time.time())

    def _needs(self, current: KeyPair | None, stale: KeyPair | None) -> bool:
        if current is None:
            return True
        if stale is not None:
            return current is stale
        now = time.time()
        if not current.due(now):
            return False
        return not (current.valid(now) and now < self._quiet_until)

    def _renew(self, current: KeyPair | None) -> KeyPair:
        """Fetch with retries (lock held); keep ``current`` while it is valid if every attempt fails."""
        error: TencentCloudError | None = None
        for attempt in range(FETCH_ATTEMPTS):
            try:
                fresh = self._fetch()
            except TencentCloudConfigError as exc:
                error = exc
                break
            except TencentCloudError as exc:
                error = exc
                if attempt + 1 < FETCH_ATTEMPTS:
                    time.sleep(FETCH_BACKOFF * 2**attempt)
                continue
            mask_secrets([value for value in (fresh.secret_key, fresh.token) if value])
            self._current, self._quiet_until = fresh, 0.0
            self.fetches += 1
            if fresh.expires is not None:
                log.info(
                    "Temporary credentials from %s obtained, valid for %d s",
                    self.settings.describe,
                    fresh.expires - time.time(),
                )
            return fresh
        assert error is not None
        now = time.time()
        if current is not None and current.valid(now):
            self._quiet_until = now + RETRY_SHARE * (current.expires - now if current.expires else 60)
            log.warning(
                "Could not renew the credentials from %s (%s); the current ones stay valid for %d s",
                self.settings.describe,
                error,
                (current.expires or now) - now,
            )
            return current
        if isinstance(error, TencentCloudConfigError):
            raise error
        message = error.message  # the sources' messages name them; a role_arn on top names its own
        if not message.startswith("credential_source"):
            message = f"{self.settings.describe}: {message}"
        raise TencentCloudCredentialError(message, code=error.code, request_id=error.request_id) from None


def _retrieved(task: asyncio.Future[KeyPair]) -> None:
    """Mark a renewal's outcome as seen: callers that did not wait for it must not make asyncio log it."""
    if not task.cancelled():
        task.exception()


# -- one provider per process and source -------------------------------------------------------------

_PROVIDERS: dict[CredentialSettings, CredentialProvider] = {}
_PROVIDERS_LOCK = threading.RLock()  # a role_arn provider makes its base provider inside


def provider_for(settings: CredentialSettings) -> CredentialProvider:
    """The process's provider of these settings (made on first use)."""
    provider = _PROVIDERS.get(settings)
    if provider is None:
        with _PROVIDERS_LOCK:
            provider = _PROVIDERS.get(settings)
            if provider is None:
                provider = _PROVIDERS[settings] = CredentialProvider(settings, _fetcher(settings))
    return provider


def _fetcher(settings: CredentialSettings) -> Callable[[], KeyPair]:
    """How a key pair of ``settings`` is obtained: its source, then AssumeRole when ``role_arn`` is set."""
    if settings.role_arn is not None:
        base = replace(settings, role_arn=None, external_id=None, policy=None)
        if settings.source in ("connection", "environment"):
            static = KeyPair(settings.secret_id, settings.secret_key, settings.token)
            return lambda: assume_role(settings, static)
        base_provider = provider_for(base)
        return lambda: assume_role(settings, base_provider.get())
    if settings.source == "environment":
        return environment_keys
    if settings.source == "profile":
        return lambda: profile_keys(settings.profile_name)
    if settings.source == "cvm_role":
        return lambda: cvm_role_keys(settings)
    if settings.source == "oidc":
        return lambda: oidc_keys(settings)
    return DefaultChain(settings).fetch


# -- the sources ------------------------------------------------------------------------------------


def environment_keys() -> KeyPair:
    """``TENCENTCLOUD_SECRET_ID`` / ``_SECRET_KEY`` (and ``_TOKEN``)."""
    secret_id, secret_key = os.environ.get(ENV_SECRET_ID), os.environ.get(ENV_SECRET_KEY)
    if not secret_id or not secret_key:
        raise TencentCloudConfigError(f"credential_source 'environment': set both {ENV_SECRET_ID} and {ENV_SECRET_KEY}")
    token = os.environ.get(ENV_TOKEN) or None
    check_credential(secret_id, ENV_SECRET_ID)
    check_credential(secret_key, ENV_SECRET_KEY)
    if token:
        check_credential(token, ENV_TOKEN)
    return KeyPair(secret_id, secret_key, token)


def profile_files(profile_name: str) -> tuple[Path, Path]:
    """tccli's ``~/.tccli/<profile>.credential``, and the SDK's INI file (``~/.tencentcloud/credentials``, else
    ``/etc/tencentcloud/credentials``)."""
    home_ini = Path.home() / ".tencentcloud" / "credentials"
    return Path.home() / ".tccli" / f"{profile_name}.credential", (
        home_ini if home_ini.exists() else Path("/etc/tencentcloud/credentials")
    )


def profile_keys(profile_name: str) -> KeyPair:
    """The profile's key pair: tccli's JSON file when it exists, else the SDK's INI file, section ``profile_name``."""
    tccli, ini = profile_files(profile_name)
    where = f"credential_source 'profile' (profile_name {profile_name!r})"
    if tccli.exists():
        try:
            document = json.loads(tccli.read_text())
        except (OSError, ValueError) as exc:
            raise TencentCloudConfigError(f"{where}: {tccli} is not readable JSON ({type(exc).__name__})") from None
        kind = document.get("type", "default") if isinstance(document, dict) else None
        if kind != "default":
            raise TencentCloudConfigError(
                f"{where}: {tccli} has type {kind!r}; only 'default' (secretId/secretKey) is read here "
                "(for an instance role use credential_source 'cvm_role')"
            )
        secret_id, secret_key, token = document.get("secretId"), document.get("secretKey"), document.get("token")
        fields = (f"secretId in {tccli}", f"secretKey in {tccli}", f"token in {tccli}")
    elif ini.exists():
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(ini)
        except configparser.Error as exc:
            raise TencentCloudConfigError(f"{where}: {ini} is not an INI file ({type(exc).__name__})") from None
        if not parser.has_section(profile_name):
            raise TencentCloudConfigError(f"{where}: {ini} has no [{profile_name}] section")
        section = parser[profile_name]
        secret_id, secret_key, token = section.get("secret_id"), section.get("secret_key"), None
        fields = (f"secret_id in {ini}", f"secret_key in {ini}", "")
    else:
        raise TencentCloudConfigError(f"{where}: neither {tccli} nor {ini} exists")
    if not secret_id or not secret_key:
        raise TencentCloudConfigError(f"{where}: {fields[0]} and {fields[1]} must both be set")
    check_credential(secret_id, fields[0])
    check_credential(secret_key, fields[1])
    if token:
        check_credential(token, fields[2])
    return KeyPair(secret_id, secret_key, token or None)


def cvm_role_keys(settings: CredentialSettings, timeout: tuple[float, float] = HTTP_TIMEOUT) -> KeyPair:
    """The instance's CAM role credentials from the metadata service (its role discovered unless named)."""
    where = f"credential_source 'cvm_role' (metadata_endpoint {settings.metadata_endpoint.url})"
    role = settings.cvm_role_name
    if role is None:
        status, body = _http("GET", settings.metadata_endpoint.url + ROLES_PATH, where, timeout=timeout)
        if status >= 500:
            raise TencentCloudServerError(f"{where}: HTTP {status}")
        role = body.decode("utf-8", "replace").strip().splitlines()[0] if status == 200 and body.strip() else ""
        if status != 200 or not role:
            raise TencentCloudConfigError(
                f"{where}: no CAM role is bound to this instance (HTTP {status}); bind one, or set cvm_role_name"
            )
    status, body = _http("GET", settings.metadata_endpoint.url + ROLES_PATH + quote(role), where, timeout=timeout)
    if status == 404:
        raise TencentCloudConfigError(f"{where}: the instance has no CAM role {role!r} (check cvm_role_name)")
    if status >= 500:
        raise TencentCloudServerError(f"{where}: HTTP {status}")
    try:
        document = json.loads(body)
        if status != 200 or document.get("Code") != "Success":
            raise ValueError
        return _key_pair(document, document.get("ExpiredTime"))
    except (ValueError, TypeError, AttributeError):
        raise TencentCloudCredentialError(f"{where}: the answer for role {role!r} holds no credentials") from None


def oidc_keys(settings: CredentialSettings) -> KeyPair:
    """STS AssumeRoleWithWebIdentity (unsigned) with TKE's variables and token file, read anew each time."""
    where = "credential_source 'oidc'"
    values = {name: os.environ.get(name, "") for name in TKE_VARIABLES}
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise TencentCloudConfigError(
            f"{where}: the environment variable {missing[0]} is not set (TKE sets {', '.join(TKE_VARIABLES)} "
            "in pods whose service account has OIDC enabled)"
        )
    path = values["TKE_WEB_IDENTITY_TOKEN_FILE"]
    try:
        web_identity = Path(path).read_text().strip()
    except OSError as exc:
        raise TencentCloudConfigError(
            f"{where}: TKE_WEB_IDENTITY_TOKEN_FILE {path} cannot be read ({type(exc).__name__})"
        ) from None
    if not web_identity:
        raise TencentCloudConfigError(f"{where}: TKE_WEB_IDENTITY_TOKEN_FILE {path} is empty")
    mask_secrets([web_identity])
    params = {
        "ProviderId": values["TKE_PROVIDER_ID"],
        "WebIdentityToken": web_identity,
        "RoleArn": values["TKE_ROLE_ARN"],
        "RoleSessionName": settings.role_session_name,
        "DurationSeconds": settings.duration_seconds,
    }
    return _sts(settings.sts_endpoint, "AssumeRoleWithWebIdentity", params, None, values["TKE_REGION"], where)


def assume_role(settings: CredentialSettings, base: KeyPair) -> KeyPair:
    """STS AssumeRole of ``role_arn``, signed with ``base``."""
    params: dict[str, Any] = {
        "RoleArn": settings.role_arn,
        "RoleSessionName": settings.role_session_name,
        "DurationSeconds": settings.duration_seconds,
    }
    if settings.external_id is not None:
        params["ExternalId"] = settings.external_id
    if settings.policy is not None:
        params["Policy"] = quote(settings.policy, safe="")
    where = f"{settings.describe} (role_arn {settings.role_arn})"
    return _sts(settings.sts_endpoint, "AssumeRole", params, base, STS_REGION, where)


class DefaultChain:
    """The SDK's order: environment, profile, CVM role, OIDC; the first that answers is kept.

    :param settings: the connection's settings (profile_name, cvm_role_name, endpoints).
    """

    ORDER = ("environment", "profile", "cvm_role", "oidc")

    def __init__(self, settings: CredentialSettings) -> None:
        self.settings = settings
        self.answered: str | None = None

    def fetch(self) -> KeyPair:
        """From the source that answered before, else from the first of ``ORDER`` that can."""
        if self.answered is not None:
            return self._from(self.answered)
        tried = []
        for source in self.ORDER:
            if not self._configured(source):
                tried.append(source)
                continue
            keys = self._from(source)
            self.answered = source
            log.info("credential_source 'default': credentials from %r", source)
            return keys
        raise TencentCloudConfigError(
            f"credential_source 'default': no source has credentials (tried {', '.join(tried)}): set "
            f"{ENV_SECRET_ID}/{ENV_SECRET_KEY}, write a profile file, bind a CAM role to the instance, or run in a "
            "TKE pod with OIDC"
        )

    def _configured(self, source: str) -> bool:
        if source == "environment":
            return bool(os.environ.get(ENV_SECRET_ID) and os.environ.get(ENV_SECRET_KEY))
        if source == "profile":
            return any(path.exists() for path in profile_files(self.settings.profile_name))
        if source == "cvm_role":
            try:
                status, _ = _http(
                    "GET", self.settings.metadata_endpoint.url + ROLES_PATH, "metadata", timeout=PROBE_TIMEOUT
                )
            except TencentCloudNetworkError:
                return False
            return status == 200
        return all(os.environ.get(name) for name in TKE_VARIABLES)

    def _from(self, source: str) -> KeyPair:
        if source == "environment":
            return environment_keys()
        if source == "profile":
            return profile_keys(self.settings.profile_name)
        if source == "cvm_role":
            return cvm_role_keys(self.settings)
        return oidc_keys(self.settings)


# -- HTTP -------------------------------------------------------------------------------------------


def _sts(
    endpoint: Endpoint, action: str, params: dict[str, Any], base: KeyPair | None, region: str, where: str
) -> KeyPair:
    """One STS call: signed with ``base`` (TC3, service ``sts``), or unsigned (``Authorization: SKIP``)."""
    from airflow_cvm_export.utils.protocol import parse_api_response
    from airflow_cvm_export.utils.signing import sign_tc3

    body = json.dumps(params, separators=(",", ":")).encode()
    timestamp = int(time.time())
    if base is None:
        headers = {
            "Authorization": "SKIP",
            "Content-Type": "application/json",
            "Host": endpoint.netloc,
            "X-TC-Action": action,
            "X-TC-Version": STS_VERSION,
            "X-TC-Region": region,
            "X-TC-Timestamp": str(timestamp),
        }
    else:
        headers = sign_tc3(
            secret_id=base.secret_id,
            secret_key=base.secret_key,
            service="sts",
            host=endpoint.netloc,
            action=action,
            version=STS_VERSION,
            payload=body,
            timestamp=timestamp,
            region=region,
            token=base.token,
        )
    status, content = _http("POST", endpoint.url + "/", where, headers=headers, body=body, proxies=True)
    try:
        response = parse_api_response(action, status, content)
    except (TencentCloudThrottledError, TencentCloudServerError) as exc:
        raise type(exc)(f"{where}: STS {action} failed", code=exc.code, request_id=exc.request_id) from None
    except TencentCloudError as exc:
        if exc.code is None:  # not an API answer (a gateway's page): may pass
            raise TencentCloudServerError(f"{where}: STS {action} answered HTTP {status}") from None
        field_name = "TKE_WEB_IDENTITY_TOKEN_FILE" if "WebIdentity" in (exc.code or "") else _sts_field(exc.code)
        raise TencentCloudConfigError(
            f"{where}: STS {action} refused, check {field_name}", code=exc.code, request_id=exc.request_id
        ) from None
    try:
        return _key_pair(response["Credentials"], response.get("ExpiredTime"))
    except (KeyError, TypeError, ValueError):
        raise TencentCloudCredentialError(f"{where}: STS {action} answered without credentials") from None


def _sts_field(code: str | None) -> str:
    """The connection field an STS error code points at."""
    code = code or ""
    if "Role" in code or code == "UnauthorizedOperation":
        return "role_arn (and the role's trust policy)"
    if "OverTime" in code:
        return "duration_seconds"
    if "Strategy" in code or "Policy" in code:
        return "policy"
    if code.startswith("AuthFailure"):
        return "the credentials the role is assumed with"
    return "role_arn, role_session_name, external_id and policy"


def _key_pair(document: Any, expired_time: Any) -> KeyPair:
    """A :class:`KeyPair` of ``{"TmpSecretId", "TmpSecretKey", "Token"}`` and ``ExpiredTime``."""
    if isinstance(expired_time, bool) or not isinstance(expired_time, int | float):
        raise ValueError("no ExpiredTime")
    secret_id, secret_key, token = document["TmpSecretId"], document["TmpSecretKey"], document["Token"]
    mask_secrets([value for value in (secret_key, token) if isinstance(value, str) and value])
    for value, name in ((secret_id, "TmpSecretId"), (secret_key, "TmpSecretKey"), (token, "Token")):
        check_credential(value, name)
    return KeyPair(secret_id, secret_key, token, float(expired_time), time.time())


def _http(
    method: str,
    url: str,
    where: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: tuple[float, float] = HTTP_TIMEOUT,
    proxies: bool = False,
) -> tuple[int, bytes]:
    """Send one request; a network failure becomes :class:`TencentCloudNetworkError` naming ``where``, no URL."""
    import requests

    from airflow_cvm_export.utils.transport import reason, tls_verify

    with requests.Session() as session:
        session.trust_env = proxies  # the metadata service is link-local: never through a proxy
        try:
            reply = session.request(
                method, url, headers=headers, data=body, timeout=timeout, allow_redirects=False, verify=tls_verify()
            )
        except requests.RequestException as exc:
            raise TencentCloudNetworkError(f"{where}: no answer ({reason(exc)})") from None
        return reply.status_code, reply.content
