"""Hooks for the Tencent Cloud CVM API 3.0 and the COS object checks an export needs.

:class:`CvmHook` sends with ``requests`` (workers); :class:`CvmAsyncHook` with ``httpx`` (the
triggerer). Both stand on one core, :class:`~airflow_cvm_export.hooks.client.CvmClientBase`, as the
http provider's ``HttpHook`` and ``HttpAsyncHook`` do: same connection, signing, clock correction,
retries, rate limits, User-Agent, TLS and proxy settings; only the sending differs.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_cvm_export.hooks.client import (
    COS_HEAD_ACTION,
    COS_LIST_ACTION,
    DESCRIBE_BATCH,
    RETRYABLE,
    RETRYABLE_WRITE,
    CvmClientBase,
    Exchange,
    T,
    describe_batches,
    export_params,
    is_read_only,
    run_exchange,
    transport_error,
)
from airflow_cvm_export.hooks.credentials import CredentialRefresh
from airflow_cvm_export.utils.connection import ClientConfig, HttpSettings
from airflow_cvm_export.utils.errors import (
    TencentCloudError,
)
from airflow_cvm_export.utils.protocol import PreparedRequest, check_export_answer, cos_error
from airflow_cvm_export.utils.ratelimit import RateLimiter
from airflow_cvm_export.utils.transport import causes, tls_verify

if TYPE_CHECKING:
    import httpx
    import requests

# HTTP requests in flight per async hook (also its connection pool size).
MAX_IN_FLIGHT = 20


class CvmHook(CvmClientBase):
    """Signs and sends Tencent Cloud CVM API 3.0 requests and checks COS objects (``requests``).

    Arguments: see :class:`~airflow_cvm_export.hooks.client.CvmClientBase`.
    """

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

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The connection extras as form fields, for Airflow 3.1's connection form.

        Built from the provider info's ``conn-fields`` (label, description, password or boolean),
        which Airflow reads itself from 3.2 on, without calling this. Airflow 3.1's api-server calls
        it with its own stand-ins for ``wtforms`` and ``flask_appbuilder`` when they are not installed.
        """
        from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import BooleanField, PasswordField, StringField

        from airflow_cvm_export import get_provider_info

        widgets: dict[str, Any] = {}
        for name, spec in get_provider_info()["connection-types"][0]["conn-fields"].items():
            label, schema, description = lazy_gettext(spec["label"]), spec["schema"], spec["description"]
            if schema.get("type") == "boolean":
                widgets[name] = BooleanField(label, description=description, default=schema.get("default"))
            elif schema.get("format") == "password":
                widgets[name] = PasswordField(label, widget=BS3PasswordFieldWidget(), description=description)
            else:
                widgets[name] = StringField(label, widget=BS3TextFieldWidget(), description=description)
        return widgets

    def get_conn(self) -> requests.Session:
        """The hook's keep-alive ``requests`` session (what every call of this hook is sent over)."""
        return self.session

    @cached_property
    def config(self) -> ClientConfig:
        """Connection settings, read lazily on first use and validated."""
        from airflow_cvm_export.version_compat import AirflowNotFoundException

        try:
            conn = self.get_connection(self.tencentcloud_conn_id)
        except AirflowNotFoundException:
            conn = None
        return self._config_from(conn)

    def _http(self) -> HttpSettings:
        return self.config.http

    @cached_property
    def session(self) -> requests.Session:
        """One keep-alive session per hook."""
        import requests

        session = requests.Session()
        # The environment (proxies, CA bundle) is read once per hook, not on every request: see _proxy.
        session.trust_env = False
        session.verify = tls_verify()
        return session

    def close(self) -> None:
        """Close the HTTP session."""
        if "session" in self.__dict__:
            self.session.close()
            del self.__dict__["session"]
        self._proxy_cache.clear()

    # -- sending ----------------------------------------------------------------------------------

    def _run(self, action: str, read_only: bool, exchange: Callable[[ClientConfig], Exchange[T]]) -> T:
        """Run ``exchange(config)`` to its end, with retries (tenacity) and the rate limiter of ``action``."""
        config = self.config
        limiter = self._limiter(config, action)

        def send(request: PreparedRequest) -> requests.Response:
            if limiter is not None:
                limiter.wait()
            return self._send(request, action=action, read_only=read_only)

        provider = self._provider(config)

        def attempt() -> T:
            if provider is not None:
                provider.get()  # renewed first when due
            return run_exchange(exchange(config), send, provider)

        retryable = RETRYABLE if read_only else RETRYABLE_WRITE
        return self._retrying(retryable)(attempt)

    def _send(self, request: PreparedRequest, *, action: str, read_only: bool) -> requests.Response:
        """Send over the hook's session; network failures become typed errors without URLs or headers."""
        import requests

        prepared = requests.PreparedRequest()  # no cookies, auth or session-header merging: none apply
        prepared.prepare(method=request.method, url=request.url, headers=request.headers, data=request.body or None)
        proxy = self._proxy(request.url)
        try:
            return self.session.send(
                prepared,
                timeout=self.timeout,
                allow_redirects=False,
                proxies={"http": proxy, "https": proxy} if proxy else {},
            )
        except requests.exceptions.RequestException as exc:
            tls = isinstance(exc, requests.exceptions.SSLError)
            never_connected = not tls and _never_connected(exc)
            raise transport_error(
                exc, action=action, read_only=read_only, tls=tls, never_connected=never_connected
            ) from None

    # -- API 3.0 ---------------------------------------------------------------------------------

    def call(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send a signed API 3.0 request and return its ``Response`` object.

        Read-only actions are retried on throttling, server and network errors. Any other action
        is retried only when the failure proves the request was not processed (throttled, or no
        connection); a request that was sent but got no answer raises
        :class:`~airflow_cvm_export.utils.errors.TencentCloudOutcomeUnknownError`.
        """
        return self._run(
            action, is_read_only(action, params), lambda config: self._api_exchange(config, action, params)
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
        params = export_params(
            image_ids=image_ids,
            bucket_name=bucket_name,
            export_format=export_format,
            file_name_prefixes=file_name_prefixes,
            only_export_root_disk=only_export_root_disk,
            dry_run=dry_run,
            role_name=role_name,
        )
        return check_export_answer(self.call("ExportImages", params), expected_objects=expected_objects)

    def describe_images(self, image_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Return the ``ImageSet`` entries of ``image_ids`` (unknown ids are absent), 100 per call."""
        return [
            image
            for params in describe_batches(image_ids)
            for image in self.call("DescribeImages", params).get("ImageSet") or []
        ]

    def list_images(self, filters: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The ``ImageSet`` entries of every image DescribeImages ``filters`` match, 100 per page.

        ``filters`` (``[{"Name", "Values"}]``: documented names, at most 10 of at most 5 values) are
        checked before any request (:func:`~airflow_cvm_export.utils.selection.as_image_filters`).
        """
        from airflow_cvm_export.utils.selection import as_image_filters

        checked = as_image_filters(list(filters), "filters")
        images: list[dict[str, Any]] = []
        while True:
            params = {"Filters": checked, "Offset": len(images), "Limit": DESCRIBE_BATCH}
            response = self.call("DescribeImages", params)
            page = response.get("ImageSet") or []
            images.extend(page)
            if len(page) < DESCRIBE_BATCH or len(images) >= response.get("TotalCount", 0):
                return images

    # -- COS -------------------------------------------------------------------------------------

    def head_cos_object(self, bucket: str, key: str) -> dict[str, Any] | None:
        """Return ``{"size", "etag", "last_modified"}`` of an object, or None when it does not exist."""
        return self._run(COS_HEAD_ACTION, True, lambda config: self._head_exchange(config, bucket, key.lstrip("/")))

    def head_cos_bucket(self, bucket: str) -> str | None:
        """``HEAD`` the bucket: raise unless it exists and these credentials may read it; return COS's request id."""

        def exchange(config: ClientConfig) -> Exchange[str | None]:
            reply = yield self._cos_request(config, "HEAD", bucket, "")
            assert reply is not None
            if reply.status_code != 200:
                raise cos_error(reply.status_code, bucket, "", reply.content)
            return reply.headers.get("x-cos-request-id")

        return self._run(COS_HEAD_ACTION, True, exchange)

    def list_cos_objects(self, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
        """Yield ``{"key", "size", "etag", "last_modified"}`` of every object under ``prefix``."""
        yield from self._run(COS_LIST_ACTION, True, lambda config: self._list_exchange(config, bucket, prefix))

    def test_connection(self) -> tuple[bool, str]:
        """One cheap signed read (``DescribeRegions``) to check credentials and endpoint."""
        try:
            response = self.call("DescribeRegions", {})
        except TencentCloudError as exc:
            return False, str(exc)
        return True, f"Connection OK: {response.get('TotalCount', 0)} regions visible"


class CvmAsyncHook(CvmClientBase):
    """The async twin of :class:`CvmHook` (``httpx``), for the triggerer; the same calls, awaited.

    One hook may serve many coroutines at once (the trigger's poller shares one per connection):
    at most :data:`MAX_IN_FLIGHT` requests are in flight, over one pooled client per proxy.
    Arguments: see :class:`~airflow_cvm_export.hooks.client.CvmClientBase`. Call :meth:`aclose`
    when done.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._config: ClientConfig | None = None
        self._clients: dict[str | None, httpx.AsyncClient] = {}
        self._slots: asyncio.Semaphore | None = None

    async def aconfig(self) -> ClientConfig:
        """Connection settings, read once with the async connection API (sync ``get_connection``
        does not work in the triggerer)."""
        if self._config is None:
            from airflow_cvm_export.version_compat import AirflowNotFoundException

            try:
                conn = await self.aget_connection(self.tencentcloud_conn_id)
            except AirflowNotFoundException:
                conn = None
            self._config = self._config_from(conn)
        return self._config

    def _http(self) -> HttpSettings:
        """The connection's settings once :meth:`aconfig` has read it (every call does first), the defaults before."""
        return self._config.http if self._config is not None else HttpSettings()

    async def aclose(self) -> None:
        """Close every HTTP client."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
        self._proxy_cache.clear()

    # -- sending ----------------------------------------------------------------------------------

    async def _run(self, action: str, read_only: bool, exchange: Callable[[ClientConfig], Exchange[T]]) -> T:
        """Await ``exchange(config)`` to its end, with retries (tenacity) and the rate limiter of ``action``."""
        config = await self.aconfig()
        limiter = self._limiter(config, action)
        retryable = RETRYABLE if read_only else RETRYABLE_WRITE
        # A copy per call: concurrent calls must not share tenacity's per-call state. That state refers
        # back to the copy (its next actions are the copy's bound methods); resetting it at the end
        # lets reference counting free each call's objects at once, instead of leaving cyclic garbage
        # for the garbage collector, whose full passes stall a triggerer holding thousands of waits.
        retrying = self._retrying(retryable, asynchronous=True).copy()
        try:
            return await retrying(self._drive, exchange, config, action, read_only, limiter)
        finally:
            retrying.iter_state.reset()

    async def _drive(
        self,
        make_exchange: Callable[[ClientConfig], Exchange[T]],
        config: ClientConfig,
        action: str,
        read_only: bool,
        limiter: RateLimiter | None,
    ) -> T:
        """Run one attempt, a fresh exchange: each request it yields is sent, and its reply sent back
        (see ``run_exchange``)."""
        provider = self._provider(config)
        if provider is not None:
            await provider.aget()  # renewed first when due
        exchange = make_exchange(config)
        request = next(exchange)
        while True:
            try:
                if isinstance(request, CredentialRefresh):
                    assert provider is not None
                    await provider.aget(stale=request.stale)
                    request = exchange.send(None)
                else:
                    reply = await self._send(request, action=action, read_only=read_only, limiter=limiter)
                    request = exchange.send(reply)
            except StopIteration as done:
                return done.value

    async def _send(
        self, request: PreparedRequest, *, action: str, read_only: bool, limiter: RateLimiter | None
    ) -> httpx.Response:
        """Send, at most :data:`MAX_IN_FLIGHT` at a time; failures become typed errors without URLs or headers.

        The rate limiter's slot is taken once a request may go, so waiting for the pool never
        bunches requests the limiter spaced out.
        """
        import httpx

        if self._slots is None:
            self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        client = await self._client(self._proxy(request.url))
        async with self._slots:
            if limiter is not None:
                await limiter.await_slot()
            try:
                response = await client.request(
                    request.method, request.url, headers=request.headers, content=request.body or None
                )
            except httpx.TransportError as exc:
                tls = any(isinstance(cause, ssl.SSLError) for cause in causes(exc))
                never_connected = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                raise transport_error(
                    exc, action=action, read_only=read_only, tls=tls, never_connected=never_connected
                ) from None
        # httpx links a response and its stream both ways. The body is read: cutting the link lets
        # reference counting free the exchange at once, rather than leave it to the garbage collector.
        response.stream = httpx.ByteStream(response.content)
        return response

    async def _client(self, proxy: str | None) -> httpx.AsyncClient:
        client = self._clients.get(proxy)
        if client is None:
            # Loading a CA bundle takes tens of ms: not on the event loop.
            client = await asyncio.to_thread(self._new_client, proxy)
            client = self._clients.setdefault(proxy, client)
        return client

    def _new_client(self, proxy: str | None) -> httpx.AsyncClient:
        import httpx

        verify: ssl.SSLContext | str | bool = tls_verify()
        if isinstance(verify, str):
            isdir = os.path.isdir(verify)
            verify = ssl.create_default_context(capath=verify) if isdir else ssl.create_default_context(cafile=verify)
        connect, read = self.timeout
        return httpx.AsyncClient(
            proxy=proxy,
            verify=verify,
            trust_env=False,  # proxies and CA bundle come from tls_verify and _proxy, as for CvmHook
            timeout=httpx.Timeout(read, connect=connect, pool=None),
            limits=httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT),
            follow_redirects=False,
        )

    # -- API 3.0 and COS ---------------------------------------------------------------------------

    async def call(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send a signed API 3.0 request and return its ``Response`` object (see :meth:`CvmHook.call`)."""
        return await self._run(
            action, is_read_only(action, params), lambda config: self._api_exchange(config, action, params)
        )

    async def export_images(self, *, expected_objects: int | None = None, **request: Any) -> dict[str, Any]:
        """ExportImages, awaited (see :meth:`CvmHook.export_images`); the start trigger sends only DryRuns."""
        response = await self.call("ExportImages", export_params(**request))
        return check_export_answer(response, expected_objects=expected_objects)

    async def describe_images(self, image_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Return the ``ImageSet`` entries of ``image_ids`` (unknown ids are absent), 100 per call, concurrently."""
        answers = await asyncio.gather(*(self.call("DescribeImages", p) for p in describe_batches(image_ids)))
        return [image for answer in answers for image in answer.get("ImageSet") or []]

    async def head_cos_object(self, bucket: str, key: str) -> dict[str, Any] | None:
        """Return ``{"size", "etag", "last_modified"}`` of an object, or None when it does not exist."""
        return await self._run(
            COS_HEAD_ACTION, True, lambda config: self._head_exchange(config, bucket, key.lstrip("/"))
        )

    async def list_cos_objects(self, bucket: str, prefix: str) -> list[dict[str, Any]]:
        """``{"key", "size", "etag", "last_modified"}`` of every object under ``prefix``."""
        return await self._run(COS_LIST_ACTION, True, lambda config: self._list_exchange(config, bucket, prefix))


def _never_connected(exc: BaseException) -> bool:
    """True when the connection was never established, so nothing was sent."""
    from requests.exceptions import ConnectTimeout
    from urllib3.exceptions import NewConnectionError

    never = ConnectTimeout | NewConnectionError | ConnectionRefusedError
    return any(isinstance(cause, never) for cause in causes(exc))
