"""Hook for the Tencent Cloud CVM API 3.0 and the COS object checks an export needs."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from email.utils import parsedate_to_datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk import BaseHook
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from airflow_cvm_export import __version__
from airflow_cvm_export.utils.connection import (
    CONN_TYPE,
    DEFAULT_CONN_ID,
    ClientConfig,
    config_from_connection,
)
from airflow_cvm_export.utils.errors import (
    TencentCloudClockSkewError,
    TencentCloudConfigError,
    TencentCloudConnectError,
    TencentCloudError,
    TencentCloudNetworkError,
    TencentCloudOutcomeUnknownError,
    TencentCloudServerError,
    TencentCloudThrottledError,
)
from airflow_cvm_export.utils.protocol import (
    PreparedRequest,
    bucket_listing_params,
    build_api_request,
    build_cos_request,
    check_export_answer,
    cos_error,
    parse_api_response,
    parse_bucket_listing,
    parse_head,
)
from airflow_cvm_export.utils.ratelimit import RateLimiter, limiter_for

if TYPE_CHECKING:
    import requests

T = TypeVar("T")

DESCRIBE_BATCH = 100
# Actions that change nothing and may be re-sent freely.
READ_ONLY_ACTIONS = frozenset({"DescribeImages", "DescribeRegions", "DescribeZones"})
RETRYABLE = (TencentCloudThrottledError, TencentCloudServerError, TencentCloudNetworkError)
# Other actions: only failures proving the request was not processed.
RETRYABLE_WRITE = (TencentCloudThrottledError, TencentCloudConnectError)
MAX_BACKOFF_FACTOR = 30
USER_AGENT = f"airflow-cvm-export/{__version__}"
# A server clock within this many seconds of ours is not worth re-signing for.
CLOCK_TOLERANCE = 60


class CvmHook(BaseHook):
    """Signs and sends Tencent Cloud CVM API 3.0 requests and checks COS objects.

    :param tencentcloud_conn_id: connection of type ``tencentcloud``: SecretId in login, SecretKey
        in password, extras ``region``, ``endpoint``, ``cos_endpoint``, ``token``, ``allow_http``,
        ``rate_limits``. Without credentials in the connection, ``TENCENTCLOUD_SECRET_ID`` /
        ``TENCENTCLOUD_SECRET_KEY`` / ``TENCENTCLOUD_TOKEN`` are used.
    :param region: overrides the connection's ``region`` extra.
    :param timeout: (connect, read) timeouts in seconds of every HTTP request.
    :param retry_limit: attempts of a retryable call (reads; ExportImages throttled or never connected), >= 1.
    :param retry_delay: base of the exponential back-off between attempts, in seconds.
    """

    conn_name_attr = "tencentcloud_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "Tencent Cloud"

    def __init__(
        self,
        tencentcloud_conn_id: str = DEFAULT_CONN_ID,
        *,
        region: str | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
        retry_limit: int = 5,
        retry_delay: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(retry_limit, int) or retry_limit < 1:
            raise TencentCloudConfigError(f"retry_limit must be an integer >= 1, got {retry_limit!r}")
        self.tencentcloud_conn_id = tencentcloud_conn_id
        self.region = region
        self.timeout = timeout
        self.retry_limit = retry_limit
        self.retry_delay = retry_delay
        self._retry_policies: dict[tuple[type[Exception], ...], Retrying] = {}
        self._clock_offset = 0
        self._proxy_cache: dict[str, dict[str, str]] = {}

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Relabel the standard connection form for Tencent Cloud credentials."""
        from airflow_cvm_export import get_provider_info

        behaviour = get_provider_info()["connection-types"][0]["ui-field-behaviour"]
        return {
            "hidden_fields": behaviour["hidden-fields"],
            "relabeling": behaviour["relabeling"],
            "placeholders": behaviour["placeholders"],
        }

    @cached_property
    def config(self) -> ClientConfig:
        """Connection settings, read lazily on first use and validated."""
        from airflow_cvm_export.version_compat import AirflowNotFoundException

        try:
            conn = self.get_connection(self.tencentcloud_conn_id)
            login, password, extra, found = conn.login, conn.password, conn.extra, True
        except AirflowNotFoundException:
            login = password = extra = None
            found = False
        try:
            config = config_from_connection(
                login=login, password=password, extra=extra, conn_id=self.tencentcloud_conn_id, region=self.region
            )
        except TencentCloudConfigError:
            if not found:
                raise TencentCloudConfigError(
                    f"connection {self.tencentcloud_conn_id!r} does not exist and no credentials are set "
                    "in TENCENTCLOUD_SECRET_ID / TENCENTCLOUD_SECRET_KEY"
                ) from None
            raise
        _mask(config)
        return config

    @cached_property
    def session(self) -> requests.Session:
        """One keep-alive session per hook."""
        import requests

        session = requests.Session()
        # The environment (proxies, CA bundle) is read once per hook, not on every request: see _proxies.
        session.trust_env = False
        session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        return session

    def _proxies(self, url: str) -> dict[str, str]:
        """The environment's proxies (``HTTPS_PROXY``, ``NO_PROXY``...) for ``url``'s origin, looked up once."""
        origin = "/".join(url.split("/", 3)[:3])
        proxies = self._proxy_cache.get(origin)
        if proxies is None:
            from requests.utils import get_environ_proxies

            proxies = self._proxy_cache[origin] = get_environ_proxies(origin)
        return proxies

    def close(self) -> None:
        """Close the HTTP session."""
        if "session" in self.__dict__:
            self.session.close()
            del self.__dict__["session"]
        self._proxy_cache.clear()

    # -- API 3.0 ---------------------------------------------------------------------------------

    def call(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send a signed API 3.0 request and return its ``Response`` object.

        Read-only actions are retried on throttling, server and network errors. Any other action
        is retried only when the failure proves the request was not processed (throttled, or no
        connection); a request that was sent but got no answer raises
        :class:`TencentCloudOutcomeUnknownError`.
        """
        config = self.config
        limiter = limiter_for(config.secret_id, action, config.rate_limits.get(action))
        read_only = action in READ_ONLY_ACTIONS or params.get("DryRun") is True  # a dry run starts nothing
        return self._with_retries(
            lambda: self._send_api(config, action, params, limiter, read_only),
            retryable=RETRYABLE if read_only else RETRYABLE_WRITE,
        )

    def _send_api(
        self, config: ClientConfig, action: str, params: dict[str, Any], limiter: RateLimiter | None, read_only: bool
    ) -> dict[str, Any]:
        """One attempt, re-signed once with the server's clock after ``AuthFailure.SignatureExpire``."""
        resigned = False
        while True:
            response = self._post_api(config, action, params, limiter, read_only)
            try:
                return parse_api_response(action, response.status_code, response.content)
            except TencentCloudClockSkewError as skew:
                offset = _server_offset(response.headers.get("Date"))
                if offset is None:
                    raise
                if resigned or abs(offset - self._clock_offset) < CLOCK_TOLERANCE:
                    raise _skew_error(skew, offset) from None
                self.log.warning(
                    "Tencent Cloud says this machine's clock is off by %+d s (RequestId %s); re-signing with the "
                    "server's time. Sync this machine's clock (NTP).",
                    -offset,
                    skew.request_id,
                )
                self._clock_offset = offset
                resigned = True

    def _post_api(
        self, config: ClientConfig, action: str, params: dict[str, Any], limiter: RateLimiter | None, read_only: bool
    ) -> requests.Response:
        if limiter is not None:
            limiter.wait()
        request = build_api_request(config, action, params, timestamp=int(time.time()) + self._clock_offset)
        return self._send(request, action=action, read_only=read_only)

    def _send(self, request: PreparedRequest, *, action: str, read_only: bool) -> requests.Response:
        """Send over the hook's session; network failures become typed errors without URLs or headers."""
        import requests

        prepared = requests.PreparedRequest()  # no cookies, auth or session-header merging: none apply
        prepared.prepare(
            method=request.method,
            url=request.url,
            headers={**request.headers, "User-Agent": USER_AGENT},
            data=request.body or None,
        )
        try:
            return self.session.send(
                prepared, timeout=self.timeout, allow_redirects=False, proxies=self._proxies(request.url)
            )
        except requests.exceptions.SSLError as exc:
            raise TencentCloudNetworkError(f"TLS failed: {_reason(exc)}", action=action) from None
        except requests.exceptions.RequestException as exc:
            if _never_connected(exc):
                raise TencentCloudConnectError(f"could not connect: {_reason(exc)}", action=action) from None
            cls = TencentCloudNetworkError if read_only else TencentCloudOutcomeUnknownError
            raise cls(f"the request was sent but no answer came back: {_reason(exc)}", action=action) from None

    def _with_retries(self, attempt: Callable[[], T], *, retryable: tuple[type[Exception], ...]) -> T:
        """Run ``attempt`` up to ``retry_limit`` times, with exponential back-off and jitter (tenacity)."""
        retrying = self._retry_policies.get(retryable)
        if retrying is None:
            retrying = self._retry_policies[retryable] = Retrying(
                retry=retry_if_exception_type(retryable),
                stop=stop_after_attempt(self.retry_limit),
                wait=wait_exponential_jitter(
                    initial=self.retry_delay, max=MAX_BACKOFF_FACTOR * self.retry_delay, jitter=self.retry_delay
                ),
                sleep=_sleep,
                before_sleep=self._log_retry,
                reraise=True,
            )
        return retrying(attempt)

    def _log_retry(self, state: RetryCallState) -> None:
        self.log.warning(
            "Attempt %d of %d failed (%s); retrying in %.2f s",
            state.attempt_number,
            self.retry_limit,
            state.outcome.exception() if state.outcome else None,
            state.upcoming_sleep,
        )

    def export_images(
        self,
        *,
        image_ids: Sequence[str],
        bucket_name: str,
        export_format: str | None = None,
        file_name_prefixes: Sequence[str] | None = None,
        only_export_root_disk: bool | None = None,
        dry_run: bool | None = None,
        role_name: str | None = None,
        expected_objects: int | None = None,
    ) -> dict[str, Any]:
        """Start an export (``ExportImages``); return the ``Response`` (``TaskId``, ``CosPaths``).

        The answer is checked (:func:`~airflow_cvm_export.utils.protocol.check_export_answer`):
        ``TaskId`` an integer, ``CosPaths`` object paths, ``expected_objects`` of them when given.
        """
        params: dict[str, Any] = {"BucketName": bucket_name, "ImageIds": list(image_ids)}
        if export_format is not None:
            params["ExportFormat"] = export_format
        if file_name_prefixes:
            params["FileNamePrefixList"] = list(file_name_prefixes)
        if only_export_root_disk is not None:
            params["OnlyExportRootDisk"] = only_export_root_disk
        if dry_run is not None:
            params["DryRun"] = dry_run
        if role_name is not None:
            params["RoleName"] = role_name
        return check_export_answer(self.call("ExportImages", params), expected_objects=expected_objects)

    def describe_images(self, image_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Return the ``ImageSet`` entries of ``image_ids`` (unknown ids are absent), 100 per call."""
        images: list[dict[str, Any]] = []
        ids = list(image_ids)
        for start in range(0, len(ids), DESCRIBE_BATCH):
            batch = ids[start : start + DESCRIBE_BATCH]
            response = self.call("DescribeImages", {"ImageIds": batch, "Limit": len(batch)})
            images.extend(response.get("ImageSet") or [])
        return images

    # -- COS -------------------------------------------------------------------------------------

    def _cos(self, method: str, bucket: str, key: str, params: dict[str, str] | None = None) -> requests.Response:
        def attempt() -> requests.Response:
            # Signed with the server's clock when an API answer showed ours is off (see _send_api).
            now = int(time.time()) + self._clock_offset
            request = build_cos_request(self.config, method, bucket, key, params, now=now)
            response = self._send(request, action=f"COS {method}", read_only=True)
            if response.status_code >= 500 or response.status_code == 403:
                raise cos_error(response.status_code, bucket, key, response.content)
            return response

        return self._with_retries(attempt, retryable=RETRYABLE)

    def head_cos_object(self, bucket: str, key: str) -> dict[str, Any] | None:
        """Return ``{"size", "etag", "last_modified"}`` of an object, or None when it does not exist."""
        key = key.lstrip("/")
        response = self._cos("HEAD", bucket, key)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise cos_error(response.status_code, bucket, key)
        return parse_head(response.headers)

    def list_cos_objects(self, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
        """Yield ``{"key", "size", "etag", "last_modified"}`` of every object under ``prefix``."""
        marker = ""
        while True:
            response = self._cos("GET", bucket, "", bucket_listing_params(prefix, marker))
            if response.status_code != 200:
                raise cos_error(response.status_code, bucket, prefix, response.content)
            objects, next_marker = parse_bucket_listing(response.content)
            yield from objects
            if not next_marker:
                return
            marker = next_marker

    def test_connection(self) -> tuple[bool, str]:
        """One cheap signed read (``DescribeRegions``) to check credentials and endpoint."""
        try:
            response = self.call("DescribeRegions", {})
        except TencentCloudError as exc:
            return False, str(exc)
        return True, f"Connection OK: {response.get('TotalCount', 0)} regions visible"


def _sleep(seconds: float) -> None:
    """Back-off sleep (looked up at call time so tests can replace the clock)."""
    time.sleep(seconds)


def _mask(config: ClientConfig) -> None:
    """Register the secrets with Airflow's masker so no log line can show them."""
    from airflow.sdk.log import mask_secret

    mask_secret(config.secret_key)
    if config.token:
        mask_secret(config.token)


def _server_offset(date_header: str | None) -> int | None:
    """Seconds the server's clock (its ``Date`` header) is ahead of ours, or None without a usable header."""
    try:
        return int(parsedate_to_datetime(date_header).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def _skew_error(skew: TencentCloudClockSkewError, offset: int) -> TencentCloudClockSkewError:
    """``skew`` with how far off this machine's clock is, as shown by the server's ``Date`` header."""
    where = "behind" if offset > 0 else "ahead of"
    return TencentCloudClockSkewError(
        f"{skew.message}; this machine's clock is about {abs(offset)} s {where} Tencent Cloud's",
        code=skew.code,
        request_id=skew.request_id,
        action=skew.action,
    )


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception linked to it (causes, contexts, urllib3 reasons, args)."""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [current.__context__, current.__cause__, getattr(current, "reason", None), *current.args]
        pending.extend(item for item in linked if isinstance(item, BaseException))


def _reason(exc: BaseException) -> str:
    """The innermost cause of a requests exception, by type name: no URL, header or body."""
    return type(list(_causes(exc))[-1]).__name__


def _never_connected(exc: BaseException) -> bool:
    """True when the connection was never established, so nothing was sent."""
    from requests.exceptions import ConnectTimeout
    from urllib3.exceptions import NewConnectionError

    never = ConnectTimeout | NewConnectionError | ConnectionRefusedError
    return any(isinstance(cause, never) for cause in _causes(exc))
