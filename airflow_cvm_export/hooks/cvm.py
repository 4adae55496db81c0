"""Hook for the Tencent Cloud CVM API 3.0 and the COS object checks an export needs."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from email.utils import parsedate_to_datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airflow_cvm_export.utils.connection import (
    CONN_TYPE,
    DEFAULT_CONN_ID,
    ClientConfig,
    config_from_connection,
)
from airflow_cvm_export.utils.errors import (
    TencentCloudClockSkewError,
    TencentCloudConfigError,
    TencentCloudError,
    TencentCloudNetworkError,
    TencentCloudOutcomeUnknownError,
    TencentCloudServerError,
    TencentCloudThrottledError,
)
from airflow_cvm_export.utils.protocol import (
    PreparedRequest,
    build_api_request,
    build_cos_request,
    cos_error,
    parse_api_response,
    parse_bucket_listing,
    parse_head,
)
from airflow_cvm_export.utils.ratelimit import limiter_for

if TYPE_CHECKING:
    import requests

DESCRIBE_BATCH = 100
# Actions that change nothing and may be re-sent freely.
READ_ONLY_ACTIONS = frozenset({"DescribeImages", "DescribeRegions", "DescribeZones"})
RETRYABLE = (TencentCloudThrottledError, TencentCloudServerError, TencentCloudNetworkError)


class CvmHook(BaseHook):
    """Signs and sends Tencent Cloud CVM API 3.0 requests and checks COS objects.

    :param tencentcloud_conn_id: connection of type ``tencentcloud``: SecretId in login, SecretKey
        in password, extras ``region``, ``endpoint``, ``cos_endpoint``, ``token``, ``allow_http``,
        ``rate_limits``. Without credentials in the connection, ``TENCENTCLOUD_SECRET_ID`` /
        ``TENCENTCLOUD_SECRET_KEY`` / ``TENCENTCLOUD_TOKEN`` are used.
    :param region: overrides the connection's ``region`` extra.
    :param timeout: (connect, read) timeouts in seconds of every HTTP request.
    :param retry_limit: attempts of a retryable call (reads; throttled ExportImages), at least 1.
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
        self._clock_offset = 0
        self._last_date: str | None = None

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
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            conn = self.get_connection(self.tencentcloud_conn_id)
            login, password, extra = conn.login, conn.password, conn.extra
        except AirflowNotFoundException:
            login = password = extra = None
        try:
            config = config_from_connection(
                login=login, password=password, extra=extra, conn_id=self.tencentcloud_conn_id, region=self.region
            )
        except TencentCloudConfigError:
            if extra is None and login is None:
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
        session.headers.clear()
        return session

    def close(self) -> None:
        """Close the HTTP session."""
        if "session" in self.__dict__:
            self.session.close()
            del self.__dict__["session"]

    # -- API 3.0 ---------------------------------------------------------------------------------

    def call(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send a signed API 3.0 request and return its ``Response`` object.

        Read-only actions are retried on throttling, server and network errors. Any other action
        is retried only when the failure proves the request was not processed; a request that
        was sent but got no answer raises :class:`TencentCloudOutcomeUnknownError`.
        """
        read_only = action in READ_ONLY_ACTIONS
        limiter = limiter_for(self.config.secret_id, action, self.config.rate_limits.get(action))
        return self._with_retries(
            lambda: self._send_api(action, params, limiter, read_only),
            retryable=RETRYABLE if read_only else (TencentCloudThrottledError,),
        )

    def _send_api(self, action: str, params: dict[str, Any], limiter: Any, read_only: bool) -> dict[str, Any]:
        if limiter is not None:
            limiter.wait()
        try:
            return self._send_api_once(action, params, read_only)
        except TencentCloudClockSkewError as skew:
            if not self._learn_clock_offset(skew):
                raise
            return self._send_api_once(action, params, read_only)

    def _send_api_once(self, action: str, params: dict[str, Any], read_only: bool) -> dict[str, Any]:
        request = build_api_request(self.config, action, params, timestamp=int(time.time()) + self._clock_offset)
        response = self._send(request, action=action, read_only=read_only)
        self._last_date = response.headers.get("Date")
        return parse_api_response(action, response.status_code, response.content)

    def _learn_clock_offset(self, error: TencentCloudClockSkewError) -> bool:
        """Adopt the server's clock from its ``Date`` header after ``SignatureExpire``; True if it changed."""
        try:
            server_now = int(parsedate_to_datetime(self._last_date).timestamp())
        except (TypeError, ValueError):
            return False
        offset = server_now - int(time.time())
        if abs(offset - self._clock_offset) < 60:
            return False
        self.log.warning(
            "Tencent Cloud says this machine's clock is off by %+d s (RequestId %s); re-signing with the "
            "server's time. Sync this machine's clock (NTP).",
            -offset,
            error.request_id,
        )
        self._clock_offset = offset
        return True

    def _send(self, request: PreparedRequest, *, action: str, read_only: bool) -> requests.Response:
        import requests

        try:
            return self.session.request(
                request.method,
                request.url,
                headers=request.headers,
                data=request.body or None,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.exceptions.ConnectTimeout as exc:
            raise TencentCloudNetworkError(f"could not connect: {type(exc).__name__}", action=action) from None
        except requests.exceptions.ConnectionError as exc:
            if _never_connected(exc):
                raise TencentCloudNetworkError(f"could not connect: {_reason(exc)}", action=action) from None
            cls = TencentCloudNetworkError if read_only else TencentCloudOutcomeUnknownError
            raise cls(f"the request was sent but no answer came back ({_reason(exc)})", action=action) from None
        except requests.exceptions.RequestException as exc:
            cls = TencentCloudNetworkError if read_only else TencentCloudOutcomeUnknownError
            raise cls(f"the request was sent but no answer came back ({_reason(exc)})", action=action) from None

    def _with_retries(self, fn: Any, *, retryable: tuple[type[Exception], ...]) -> Any:
        from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

        retrying = Retrying(
            retry=retry_if_exception_type(retryable),
            stop=stop_after_attempt(self.retry_limit),
            wait=wait_random_exponential(multiplier=self.retry_delay, max=30 * self.retry_delay),
            before_sleep=self._log_retry,
            reraise=True,
        )
        return retrying(fn)

    def _log_retry(self, retry_state: Any) -> None:
        self.log.warning(
            "Attempt %d of %d failed (%s); retrying in %.1f s",
            retry_state.attempt_number,
            self.retry_limit,
            retry_state.outcome.exception(),
            retry_state.next_action.sleep,
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
    ) -> dict[str, Any]:
        """Start an export (``ExportImages``); return the ``Response`` (``TaskId``, ``CosPaths``)."""
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
        return self.call("ExportImages", params)

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
            request = build_cos_request(self.config, method, bucket, key, params)
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
            params = {"prefix": prefix, "max-keys": "1000"}
            if marker:
                params["marker"] = marker
            response = self._cos("GET", bucket, "", params)
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


def _mask(config: ClientConfig) -> None:
    """Register the secrets with Airflow's masker so no log line can show them."""
    from airflow.sdk.log import mask_secret

    mask_secret(config.secret_key)
    if config.token:
        mask_secret(config.token)


def _reason(exc: BaseException) -> str:
    """A short cause of a requests exception, without URLs or headers."""
    inner = exc
    while inner.__context__ is not None and not isinstance(inner, ConnectionResetError | OSError):
        inner = inner.__context__
    return type(inner).__name__


def _never_connected(exc: BaseException) -> bool:
    """True when the connection was never established (nothing was sent)."""
    from urllib3.exceptions import NewConnectionError

    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, NewConnectionError | ConnectionRefusedError):
            return True
        linked = [current.__context__, current.__cause__, getattr(current, "reason", None), *current.args]
        pending.extend(item for item in linked if isinstance(item, BaseException))
    return False
