"""A lean threaded HTTP/1.1 server: keep-alive, one ``sendall`` per response, TCP_NODELAY.

``http.server`` writes the status line, headers and body in separate calls; with Nagle's
algorithm and delayed ACKs that stalls keep-alive clients about 40 ms a request. This server
builds each response in full and sends it at once, and parses only what the emulator needs.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from urllib.parse import unquote

MAX_LINE = 65536
MAX_HEADERS = 100
REASONS = {
    200: "OK",
    204: "No Content",
    206: "Partial Content",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    416: "Range Not Satisfiable",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


@dataclass
class Request:
    """A parsed request: header names are lower-case; ``path`` is percent-decoded."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Response:
    """A response to send; ``drop`` closes the connection without answering instead."""

    status: int = 200
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_length: int | None = None  # HEAD: the length the body would have
    drop: bool = False

    def encode(self, *, head: bool, keep_alive: bool) -> bytes:
        """The response as bytes on the wire (no body for ``HEAD``)."""
        length = len(self.body) if self.content_length is None else self.content_length
        lines = [f"HTTP/1.1 {self.status} {REASONS.get(self.status, 'Unknown')}", f"Date: {_http_date()}"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        lines.append(f"Content-Length: {length}")
        lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
        head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head_bytes if head else head_bytes + self.body


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    """RFC 1123 date of now, recomputed once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


class BadRequest(Exception):
    """The bytes received are not an HTTP/1.x request the server can answer."""


def read_request(rfile) -> tuple[Request, bool] | None:
    """Read one request from a buffered socket file; None at a clean end of stream.

    Returns the request and whether the connection may be kept alive after it.
    """
    line = rfile.readline(MAX_LINE + 1)
    while line in (b"\r\n", b"\n"):  # tolerate stray blank lines between requests
        line = rfile.readline(MAX_LINE + 1)
    if not line:
        return None
    try:
        method, target, version = line.decode("latin-1").split()
    except ValueError:
        raise BadRequest("malformed request line") from None
    if not version.startswith("HTTP/1."):
        raise BadRequest("unsupported HTTP version")
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS):
        line = rfile.readline(MAX_LINE + 1)
        if line in (b"\r\n", b"\n", b""):
            break
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise BadRequest("malformed header line")
        name = name.strip().lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    else:
        raise BadRequest("too many headers")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise BadRequest("chunked request bodies are not supported; send Content-Length")
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise BadRequest("malformed Content-Length") from None
    body = rfile.read(length) if length > 0 else b""
    if len(body) != length:
        return None
    connection = headers.get("connection", "").lower()
    keep_alive = "close" not in connection and (version == "HTTP/1.1" or "keep-alive" in connection)
    path, _, query = target.partition("?")
    return Request(method.upper(), unquote(path), query, headers, body), keep_alive


class _Handler(socketserver.BaseRequestHandler):
    server: ThreadedHttpServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rfile = sock.makefile("rb", buffering=65536)
        try:
            while True:
                try:
                    parsed = read_request(rfile)
                except BadRequest as exc:
                    response = Response(400, f"{exc}\n".encode(), [("Content-Type", "text/plain")])
                    sock.sendall(response.encode(head=False, keep_alive=False))
                    return
                if parsed is None:
                    return
                request, keep_alive = parsed
                response = self.server.app(request)
                if response.drop:
                    sock.shutdown(socket.SHUT_RDWR)
                    return
                sock.sendall(response.encode(head=request.method == "HEAD", keep_alive=keep_alive))
                if not keep_alive:
                    return
        except OSError:
            return
        finally:
            rfile.close()


class ThreadedHttpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """One daemon thread per connection; ``stop()`` also closes idle keep-alive connections.

    :param address: ``(host, port)`` to listen on; port 0 picks a free one.
    :param app: turns each request into a response.
    """

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: Callable[[Request], Response]) -> None:
        self.app = app
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        super().__init__(address, _Handler)

    def process_request(self, request, client_address) -> None:  # type: ignore[override]
        """Track the connection so ``stop()`` can close it."""
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:  # type: ignore[override]
        """Forget the connection once it is closed."""
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def start(self) -> None:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.1}, name="cvm-emulator", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, close every open connection, release the port."""
        self.shutdown()
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
