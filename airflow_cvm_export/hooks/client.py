"""The client core shared by :class:`~airflow_cvm_export.hooks.cvm.CvmHook` (requests) and
:class:`~airflow_cvm_export.hooks.cvm.CvmAsyncHook` (httpx).

Everything but moving bytes lives here once: reading the connection and masking its secrets, the
clock offset learned from Tencent Cloud's ``Date`` header (re-signing once after
``AuthFailure.SignatureExpire``), COS's clock learned from the ``Date`` header of every COS answer
(what exported objects' ``Last-Modified`` is compared with), the rate limiters, which errors are
retried and the tenacity back-off, the User-Agent, TLS verification and proxies from the environment, DescribeImages
batches, and how COS answers are read. Each call is written as an *exchange*: a generator that
yields the signed request to send and receives the reply, so the two hooks differ only in how they
send (see ``CvmHook._drive`` and ``CvmAsyncHook._drive``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit
from urllib.request import getproxies_environment, proxy_bypass_environment  # type: ignore[attr-defined]  # in the stdlib, not in typeshed

from airflow.sdk import BaseHook
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from airflow_cvm_export import __version__
from airflow_cvm_export.hooks import DEFAULT_CONN_ID
from airflow_cvm_export.hooks.credentials import CredentialProvider, CredentialRefresh, provider_for
from airflow_cvm_export.utils.connection import CONN_TYPE, ClientConfig, HttpSettings, config_from_connection
from airflow_cvm_export.utils.errors import (
    TencentCloudAuthError,
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
    parse_api_response,
    parse_bucket_reply,
    parse_head_reply,
)
from airflow_cvm_export.utils.ratelimit import RateLimiter, limiter_for
from airflow_cvm_export.utils.transport import reason

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
# Rate-limit keys of COS calls in the connection extra ``rate_limits`` (off unless set).
COS_HEAD_ACTION = "COS HEAD"
COS_LIST_ACTION = "COS LIST"


class Reply(Protocol):
    """What an exchange reads of an HTTP answer: ``requests.Response`` and ``httpx.Response`` both fit."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> bytes: ...


# A call: yields each signed request, is sent its reply, returns the call's result. It may yield a
# CredentialRefresh instead (its token was refused): the driver renews the credentials and sends None.
Exchange = Generator[PreparedRequest | CredentialRefresh, Reply | None, T]
TOKEN_FAILURE = "AuthFailure.TokenFailure"


class CvmClientBase(BaseHook):
    """What the sync and async hooks share; see the module docstring.

    :param tencentcloud_conn_id: connection of type ``tencentcloud``: SecretId in login, SecretKey
        in password, extras ``region``, ``endpoint``, ``cos_endpoint``, ``token``, ``allow_http``,
        ``rate_limits``. Without credentials in the connection, ``TENCENTCLOUD_SECRET_ID`` /
        ``TENCENTCLOUD_SECRET_KEY`` / ``TENCENTCLOUD_TOKEN`` are used. The extra ``credential_source``
        (and ``role_arn``...) takes temporary credentials from elsewhere (see docs/credentials.md and
        :mod:`~airflow_cvm_export.hooks.credentials`).
    :param region: overrides the connection's ``region`` extra.
    :param timeout: (connect, read) timeouts in seconds of every HTTP request; default: the connection's
        ``connect_timeout`` and ``read_timeout`` extras, else (5, 30).
    :param retry_limit: attempts of a retryable call (reads; ExportImages throttled or never connected), >= 1;
        default: the connection's ``retry_limit`` extra, else 5.
    :param retry_delay: base of the exponential back-off between attempts, in seconds; default: the
        connection's ``retry_delay`` extra, else 1.
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
        timeout: tuple[float, float] | None = None,
        retry_limit: int | None = None,
        retry_delay: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if retry_limit is not None and (not isinstance(retry_limit, int) or retry_limit < 1):
            raise TencentCloudConfigError(f"retry_limit must be an integer >= 1, got {retry_limit!r}")
        self.tencentcloud_conn_id = tencentcloud_conn_id
        self.region = region
        self._timeout, self._retry_limit, self._retry_delay = timeout, retry_limit, retry_delay
        self._retry_policies: dict[tuple[tuple[type[Exception], ...], bool], Retrying | AsyncRetrying] = {}
        self._clock_offset = 0
        self._cos_clock_offset: float | None = None  # None until a COS answer showed its clock
        self._proxy_cache: dict[str, str | None] = {}

    # -- connection ------------------------------------------------------------------------------

    def _http(self) -> HttpSettings:
        """The connection's timeout and retry extras (defaults where unset)."""
        raise NotImplementedError

    @property
    def timeout(self) -> tuple[float, float]:
        """(connect, read) seconds of every HTTP request: the argument, else the connection's extras."""
        if self._timeout is not None:
            return self._timeout
        http = self._http()
        return http.connect_timeout, http.read_timeout

    @timeout.setter
    def timeout(self, value: tuple[float, float]) -> None:
        self._timeout = value

    @property
    def retry_limit(self) -> int:
        """Attempts of a retryable call: the argument, else the connection's ``retry_limit`` extra."""
        return self._retry_limit if self._retry_limit is not None else self._http().retry_limit

    @retry_limit.setter
    def retry_limit(self, value: int) -> None:
        self._retry_limit = value
        self._retry_policies.clear()

    @property
    def retry_delay(self) -> float:
        """Back-off base in seconds: the argument, else the connection's ``retry_delay`` extra."""
        return self._retry_delay if self._retry_delay is not None else self._http().retry_delay

    @retry_delay.setter
    def retry_delay(self, value: float) -> None:
        self._retry_delay = value
        self._retry_policies.clear()

    def _config_from(self, conn: Any) -> ClientConfig:
        """Validated settings from a connection (None when it does not exist); config_from_connection
        registers its secrets with the masker."""
        try:
            return config_from_connection(
                login=conn.login if conn else None,
                password=conn.password if conn else None,
                extra=conn.extra if conn else None,
                conn_id=self.tencentcloud_conn_id,
                region=self.region,
            )
        except TencentCloudConfigError:
            if conn is None:
                raise TencentCloudConfigError(
                    f"connection {self.tencentcloud_conn_id!r} does not exist and no credentials are set "
                    "in TENCENTCLOUD_SECRET_ID / TENCENTCLOUD_SECRET_KEY"
                ) from None
            raise

    # -- credentials -----------------------------------------------------------------------------

    @staticmethod
    def _provider(config: ClientConfig) -> CredentialProvider | None:
        """The process's credential provider of the connection's source; None for a long-lived key pair."""
        return provider_for(config.credentials) if config.credentials is not None else None

    @staticmethod
    def _signing(config: ClientConfig) -> ClientConfig:
        """``config`` with the key pair to sign with now (the provider's current one, when it has a source)."""
        if config.credentials is None:
            return config
        keys = provider_for(config.credentials).current()
        return config.signed_by(keys.secret_id, keys.secret_key, keys.token)

    # -- clock -----------------------------------------------------------------------------------

    def server_time(self) -> float:
        """Now by Tencent Cloud's clock: this machine's, corrected by what a ``Date`` header showed."""
        return time.time() + self._clock_offset

    def cos_time(self) -> float:
        """Now by COS's clock, the clock of the objects' ``Last-Modified``: this machine's, corrected by the
        ``Date`` header of the latest COS answer (to its whole second); :meth:`server_time` until one came."""
        return self.server_time() if self._cos_clock_offset is None else time.time() + self._cos_clock_offset

    def _learn_cos_clock(self, reply: Reply) -> None:
        """Take COS's clock from the ``Date`` header of a COS answer (kept when it has none)."""
        offset = _server_offset(reply.headers.get("Date"))
        if offset is not None:
            self._cos_clock_offset = offset

    def _learn_clock(
        self, skew: TencentCloudClockSkewError, date_header: str | None, signed_with: int, resigned: bool
    ) -> None:
        """Take the server's clock from an ``AuthFailure.SignatureExpire`` answer, or raise when that cannot help.

        ``signed_with`` is the offset the refused request was signed with: when another call learned
        the clock meanwhile, the request is simply signed again.
        """
        seen = _server_offset(date_header)
        if seen is None:
            raise skew
        offset = int(seen)
        if resigned or abs(offset - signed_with) < CLOCK_TOLERANCE:
            raise _skew_error(skew, offset) from None
        if abs(offset - self._clock_offset) >= CLOCK_TOLERANCE:
            self.log.warning(
                "Tencent Cloud says this machine's clock is off by %+d s (RequestId %s); re-signing with the "
                "server's time. Sync this machine's clock (NTP).",
                -offset,
                skew.request_id,
            )
            self._clock_offset = offset

    # -- exchanges: one call each, whatever sends it ----------------------------------------------

    def _api_exchange(self, config: ClientConfig, action: str, params: dict[str, Any]) -> Exchange[dict[str, Any]]:
        """An API 3.0 call, re-signed once with the server's clock after ``AuthFailure.SignatureExpire``, and
        once with renewed credentials after ``AuthFailure.TokenFailure`` (temporary credentials only).

        Which code the real API gives for an *expired* token is not documented; ``AuthFailure.TokenFailure``
        is the documented code for a bad token, so it is the one treated.
        """
        resigned = renewed = False
        while True:
            offset = self._clock_offset
            signing = self._signing(config)
            request = build_api_request(signing, action, params, timestamp=int(time.time()) + offset)
            reply = yield _with_user_agent(request)
            assert reply is not None
            try:
                return parse_api_response(action, reply.status_code, reply.content)
            except TencentCloudClockSkewError as skew:
                self._learn_clock(skew, reply.headers.get("Date"), offset, resigned)
                resigned = True
            except TencentCloudAuthError as refused:
                if refused.code != TOKEN_FAILURE or config.credentials is None or renewed:
                    raise
                renewed = True
                stale = provider_for(config.credentials).current()
                if stale.secret_id == signing.secret_id:
                    yield CredentialRefresh(stale)

    def _head_exchange(self, config: ClientConfig, bucket: str, key: str) -> Exchange[dict[str, Any] | None]:
        """COS ``HEAD``: the object's metadata, or None when it does not exist."""
        reply = yield self._cos_request(config, "HEAD", bucket, key)
        assert reply is not None
        self._learn_cos_clock(reply)
        return parse_head_reply(reply.status_code, reply.headers, reply.content, bucket, key)

    def _list_exchange(self, config: ClientConfig, bucket: str, prefix: str) -> Exchange[list[dict[str, Any]]]:
        """Every object under ``prefix`` (COS ``GET Bucket``, following markers)."""
        objects: list[dict[str, Any]] = []
        marker: str | None = ""
        while marker is not None:
            reply = yield self._cos_request(config, "GET", bucket, "", bucket_listing_params(prefix, marker))
            assert reply is not None
            self._learn_cos_clock(reply)
            page, marker = parse_bucket_reply(reply.status_code, reply.content, bucket, prefix)
            objects.extend(page)
        return objects

    def _cos_request(
        self, config: ClientConfig, method: str, bucket: str, key: str, params: dict[str, str] | None = None
    ) -> PreparedRequest:
        # Signed with the server's clock when an API answer showed ours is off (see _api_exchange).
        now = int(self.server_time())
        return _with_user_agent(build_cos_request(self._signing(config), method, bucket, key, params, now=now))

    # -- policies --------------------------------------------------------------------------------

    def _limiter(self, config: ClientConfig, action: str) -> RateLimiter | None:
        """The process-wide rate limiter of ``action`` for these credentials, None when unlimited."""
        source = config.credentials
        key = config.secret_id or (f"{source.source}:{source.role_arn}" if source is not None else "")
        return limiter_for(key, action, config.rate_limits.get(action))

    def _retrying(self, retryable: tuple[type[Exception], ...], *, asynchronous: bool = False) -> Any:
        """The tenacity policy (``Retrying``, or ``AsyncRetrying`` for the async hook) for ``retryable`` errors.

        Up to ``retry_limit`` attempts, exponential back-off with jitter; built once per kind.
        """
        policy = self._retry_policies.get((retryable, asynchronous))
        if policy is None:
            options: dict[str, Any] = {
                "retry": retry_if_exception_type(retryable),
                "stop": stop_after_attempt(self.retry_limit),
                "wait": wait_exponential_jitter(
                    initial=self.retry_delay, max=MAX_BACKOFF_FACTOR * self.retry_delay, jitter=self.retry_delay
                ),
                "before_sleep": self._log_retry,
                "reraise": True,
            }
            policy = AsyncRetrying(**options) if asynchronous else Retrying(sleep=_sleep, **options)
            self._retry_policies[(retryable, asynchronous)] = policy
        return policy

    def longest_send(self) -> float:
        """The longest, in seconds, from the start of a write call (ExportImages) until its request can no
        longer reach the cloud: ``retry_limit`` attempts of at most the connect and read ``timeout`` each, with
        the longest back-offs between them (only the last attempt can have been processed: a write is retried
        only when throttled or never connected). Rate-limit waits come before an attempt and are not counted."""
        connect, read = self.timeout
        cap = MAX_BACKOFF_FACTOR * self.retry_delay
        backoffs = sum(min(self.retry_delay * 2**n + self.retry_delay, cap) for n in range(self.retry_limit - 1))
        return self.retry_limit * (connect + read) + backoffs

    def _log_retry(self, state: RetryCallState) -> None:
        self.log.warning(
            "Attempt %d of %d failed (%s); retrying in %.2f s",
            state.attempt_number,
            self.retry_limit,
            state.outcome.exception() if state.outcome else None,
            state.upcoming_sleep,
        )

    def _proxy(self, url: str) -> str | None:
        """The environment's proxy (``HTTPS_PROXY``, ``NO_PROXY``...) for ``url``'s origin, looked up once."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._proxy_cache:
            proxies = getproxies_environment()
            bypass = proxy_bypass_environment(parts.netloc, proxies)
            self._proxy_cache[origin] = None if bypass else proxies.get(parts.scheme) or proxies.get("all")
        return self._proxy_cache[origin]


def export_params(
    *,
    image_ids: Sequence[str],
    bucket_name: str,
    export_format: str | None = None,
    file_name_prefixes: Sequence[str] | None = None,
    only_export_root_disk: bool | None = None,
    dry_run: bool | None = None,
    role_name: str | None = None,
) -> dict[str, Any]:
    """The ExportImages parameters of the hooks' ``export_images`` keyword arguments (unset ones left out)."""
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
    return params


def describe_batches(image_ids: Sequence[str]) -> list[dict[str, Any]]:
    """DescribeImages parameters for ``image_ids``: at most 100 ids per call (the API's limit)."""
    ids = list(dict.fromkeys(image_ids))
    return [
        {"ImageIds": ids[start : start + DESCRIBE_BATCH], "Limit": len(ids[start : start + DESCRIBE_BATCH])}
        for start in range(0, len(ids), DESCRIBE_BATCH)
    ]


def is_read_only(action: str, params: Mapping[str, Any]) -> bool:
    """True for calls that change nothing and may be re-sent freely (a dry run starts nothing)."""
    return action in READ_ONLY_ACTIONS or params.get("DryRun") is True


def _with_user_agent(request: PreparedRequest) -> PreparedRequest:
    request.headers["User-Agent"] = USER_AGENT
    return request


def transport_error(
    exc: BaseException, *, action: str, read_only: bool, tls: bool, never_connected: bool
) -> TencentCloudError:
    """The typed error of a request that failed in transport (either hook's), without URLs or headers.

    TLS failed, or the connection was never made (nothing was sent: safe to send again), or the
    request went out and no answer came back: a read fails as a network error, a write's outcome is
    unknown (:class:`~airflow_cvm_export.utils.errors.TencentCloudOutcomeUnknownError`).
    """
    if tls:
        return TencentCloudNetworkError(f"TLS failed: {reason(exc)}", action=action)
    if never_connected:
        return TencentCloudConnectError(f"could not connect: {reason(exc)}", action=action)
    cls = TencentCloudNetworkError if read_only else TencentCloudOutcomeUnknownError
    return cls(f"the request was sent but no answer came back: {reason(exc)}", action=action)


def _sleep(seconds: float) -> None:
    """Back-off sleep (looked up at call time so tests can replace the clock)."""
    time.sleep(seconds)


def _server_offset(date_header: str | None) -> float | None:
    """Seconds the server's clock (its ``Date`` header) is ahead of ours, or None without a usable header."""
    if date_header is None:
        return None
    try:
        return parsedate_to_datetime(date_header).timestamp() - time.time()
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


def run_exchange(
    exchange: Exchange[T], send: Callable[[PreparedRequest], Reply], provider: CredentialProvider | None = None
) -> T:
    """Drive ``exchange`` with a blocking ``send`` (``provider`` renews refused credentials); the async hook
    awaits the same steps."""
    request = next(exchange)
    while True:
        try:
            if isinstance(request, CredentialRefresh):
                assert provider is not None
                provider.get(stale=request.stale)
                request = exchange.send(None)
            else:
                request = exchange.send(send(request))
        except StopIteration as done:
            return done.value
