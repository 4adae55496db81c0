"""A loopback HTTP/1.1 server answering a scripted sequence: real sockets, keep-alive, no mocks.

Each request takes the next step of the script: an :class:`Answer`, :data:`DROP` (read the request,
then close the connection without answering), or a callable turning the :class:`Recorded`
request into an :class:`Answer`. Once the script is used up, every request gets ``default``.
Answers carry a ``Date`` header unless they set their own (an empty value sends none).
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Answer:
    """An HTTP answer; a dict body is sent as JSON."""

    status: int = 200
    body: dict[str, Any] | bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Recorded:
    """A request as the server received it, with the monotonic time of its arrival."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


DROP = "drop"
Step = Answer | str | Callable[[Recorded], Answer]


def api_ok(**fields: Any) -> Answer:
    """A successful API 3.0 answer."""
    return Answer(body={"Response": {**fields, "RequestId": "req-ok"}})


def api_error(code: str, message: str = "scripted", **headers: str) -> Answer:
    """An API 3.0 error answer (HTTP 200, as Tencent Cloud sends them)."""
    error = {"Code": code, "Message": message}
    return Answer(body={"Response": {"Error": error, "RequestId": "req-err"}}, headers=headers)


class ScriptedServer:
    """Serves the script on ``127.0.0.1`` in a background thread; use as a context manager.

    :param default: the step once the script is used up.
    :param tls: serve HTTPS with this server context.
    """

    def __init__(self, default: Step | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.script: list[Step] = []
        self.default: Step = default or api_ok()
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class(), bind_and_activate=False)
        self._httpd.daemon_threads = True
        self._httpd.server_bind()  # bound but not listening: connections are refused until __enter__
        if tls is not None:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> ScriptedServer:
        self._httpd.server_activate()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()

    def play(self, *steps: Step) -> ScriptedServer:
        """Queue ``steps`` for the next requests."""
        with self._lock:
            self.script.extend(steps)
        return self

    def _next(self, recorded: Recorded) -> Answer | None:
        with self._lock:
            self.requests.append(recorded)
            step = self.script.pop(0) if self.script else self.default
        if isinstance(step, str):  # DROP
            return None
        return step(recorded) if callable(step) else step

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {name.lower(): value for name, value in self.headers.items()}
                answer = server._next(Recorded(self.command, self.path, headers, body, time.monotonic()))
                if answer is None:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                payload = json.dumps(answer.body).encode() if isinstance(answer.body, dict) else answer.body
                self.send_response_only(answer.status)
                headers = {"Date": self.date_time_string(), "Content-Length": str(len(payload)), **answer.headers}
                for name, value in headers.items():
                    if value:  # an empty value leaves the header out (e.g. no Date)
                        self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_HEAD = _serve

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                """Keep test output quiet."""

        return Handler


def unused_loopback_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
