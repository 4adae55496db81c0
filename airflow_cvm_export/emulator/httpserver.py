"""A lean threaded HTTP/1.1 server: keep-alive, one ``sendall`` per response, TCP_NODELAY.

``http.server`` writes the status line, headers and body in separate calls; with Nagle's
algorithm and delayed ACKs that stalls keep-alive clients about 40 ms a request. This server
builds each response in full and sends it at once, and parses only what the emulator needs.

It stays up for every client whatever one of them sends: request lines, headers and bodies are
bounded (:data:`MAX_LINE`, :data:`MAX_HEADERS`, :data:`MAX_BODY`), every request it can read gets
an answer (a 4xx made by the ``error`` callback for malformed ones, a 500 if the app fails), a
connection idle for ``idle_timeout`` seconds is closed, and at ``max_connections`` the
longest-idle connection makes room for a new one.
"""

from __future__ import annotations

import logging
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
# The emulator's own bound on request bodies (the provider's are under 2 KB).
MAX_BODY = 1024 * 1024
IDLE_TIMEOUT = 30.0
MAX_CONNECTIONS = 128
REASONS = {
    200: "OK",
    204: "No Content",
    206: "Partial Content",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    414: "URI Too Long",
    416: "Range Not Satisfiable",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}

log = logging.getLogger(__name__)


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
    date: float | None = None  # the time the Date header shows (Unix time), None for now

    def encode(self, *, head: bool, keep_alive: bool) -> bytes:
        """The response as bytes on the wire (no body for ``HEAD``)."""
        length = len(self.body) if self.content_length is None else self.content_length
        lines = [f"HTTP/1.1 {self.status} {REASONS.get(self.status, 'Unknown')}", f"Date: {_http_date(self.date)}"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        lines.append(f"Content-Length: {length}")
        lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
        head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head_bytes if head else head_bytes + self.body


_date_cache: tuple[int, str] = (0, "")


def _http_date(when: float | None = None) -> str:
    """RFC 1123 date of ``when`` (default now), recomputed once a second."""
    global _date_cache
    now = int(time.time() if when is None else when)
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


class BadRequest(Exception):
    """The bytes received are not an HTTP/1.x request the server can answer.

    :param message: what is wrong, for the error answer.
    :param status: the 4xx status of the answer.
    :param method: the request's method, once the request line was read.
    :param path: the request's (percent-decoded) path, once the request line was read.
    """

    def __init__(self, message: str, status: int = 400, method: str = "", path: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.method = method
        self.path = path


# Answers a malformed request, an overloaded server or a failed app: (status, message, method, path) -> response.
ErrorPage = Callable[[int, str, str, str], Response]


def plain_error(status: int, message: str, method: str, path: str) -> Response:
    """The default error answer: the message as plain text."""
    return Response(status, f"{message}\n".encode(), [("Content-Type", "text/plain")])


def _request_line(rfile) -> bytes:
    line = rfile.readline(MAX_LINE + 1)
    while line in (b"\r\n", b"\n"):  # tolerate stray blank lines between requests
        line = rfile.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise BadRequest(f"request line longer than {MAX_LINE} bytes", 414)
    return line


def read_request(rfile) -> tuple[Request, bool] | None:
    """Read one request from a buffered socket file; None at a clean end of stream.

    Returns the request and whether the connection may be kept alive after it; raises
    :class:`BadRequest` for anything else, before reading a body it would not accept.
    """
    line = _request_line(rfile)
    if not line:
        return None
    try:
        method, target, version = line.decode("latin-1").split()
    except ValueError:
        raise BadRequest("malformed request line") from None
    method = method.upper()
    path, _, query = target.partition("?")
    if "%" in path:
        path = unquote(path)
    if not version.startswith("HTTP/1."):
        raise BadRequest(f"unsupported HTTP version {version[:20]!r}", 505, method, path)
    headers: dict[str, str] = {}
    readline = rfile.readline
    for _ in range(MAX_HEADERS):
        line = readline(MAX_LINE + 1)
        if line in (b"\r\n", b"\n"):
            break
        if not line:
            return None  # the client went away in the middle of its headers
        if len(line) > MAX_LINE:
            raise BadRequest(f"header line longer than {MAX_LINE} bytes", 431, method, path)
        name, sep, value = line.decode("latin-1").partition(":")
        name = name.strip().lower()
        if not sep or not name:
            raise BadRequest("malformed header line", 400, method, path)
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    else:
        raise BadRequest(f"more than {MAX_HEADERS} header lines", 431, method, path)
    if "transfer-encoding" in headers:
        raise BadRequest("Transfer-Encoding is not supported; send Content-Length", 411, method, path)
    text = headers.get("content-length", "0")
    if not text.isdigit() or len(text) > 19:  # also refuses "-1", "+5", "1, 2" (two headers) and " "
        raise BadRequest(f"Content-Length must be a non-negative integer, got {text[:20]!r}", 400, method, path)
    length = int(text)
    if length > MAX_BODY:
        raise BadRequest(f"the body ({length} bytes) is larger than {MAX_BODY} bytes", 413, method, path)
    body = rfile.read(length) if length else b""
    if len(body) != length:
        return None  # the client went away in the middle of its body
    connection = headers.get("connection", "").lower()
    keep_alive = "close" not in connection and (version == "HTTP/1.1" or "keep-alive" in connection)
    return Request(method, path, query, headers, body), keep_alive


class _Handler(socketserver.BaseRequestHandler):
    server: ThreadedHttpServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.server.idle_timeout)  # bounds every read and write, so idle clients go
        rfile = sock.makefile("rb", buffering=65536)
        try:
            while True:
                try:
                    parsed = read_request(rfile)
                except BadRequest as exc:
                    response = self.server.error(exc.status, str(exc), exc.method, exc.path)
                    sock.sendall(response.encode(head=exc.method == "HEAD", keep_alive=False))
                    return
                if parsed is None:
                    return
                request, keep_alive = parsed
                if not self.server.set_busy(sock, True):
                    return  # closed to make room while its request arrived: not processed, so safe to resend
                response = self.server.answer(request)
                if response.drop:
                    sock.shutdown(socket.SHUT_RDWR)
                    return
                sock.sendall(response.encode(head=request.method == "HEAD", keep_alive=keep_alive))
                self.server.set_busy(sock, False)
                if not keep_alive:
                    return
        except OSError:  # also the idle timeout, and a connection closed to make room for another
            return
        finally:
            rfile.close()


class ThreadedHttpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """One daemon thread per connection, at most ``max_connections``; ``stop()`` closes them all.

    :param address: ``(host, port)`` to listen on; port 0 picks a free one.
    :param app: turns each request into a response.
    :param error: makes the answer to a malformed request, an overload or a failed ``app``.
    :param idle_timeout: seconds a connection may stay silent (between requests or within one).
    :param max_connections: open connections at most; a new one closes the longest-idle one, or
        is answered 503 when every connection is in the middle of a request.
    """

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        app: Callable[[Request], Response],
        *,
        error: ErrorPage = plain_error,
        idle_timeout: float = IDLE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.app = app
        self.error = error
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        # Each open connection and since when it is idle (None while a request is being answered).
        self._connections: dict[socket.socket, float | None] = {}
        self._connections_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        super().__init__(address, _Handler)

    def answer(self, request: Request) -> Response:
        """The app's response, or a 500 made by ``error`` if the app fails (the connection lives on)."""
        try:
            return self.app(request)
        except Exception as exc:  # noqa: BLE001 - one bad request must never take the server down
            log.exception("The emulator failed to answer %s %s", request.method, request.path)
            return self.error(500, f"the emulator failed: {type(exc).__name__}", request.method, request.path)

    def set_busy(self, sock: socket.socket, busy: bool) -> bool:
        """Mark a connection as answering a request (never closed to make room) or idle again.

        Returns False when the connection was closed to make room for another.
        """
        with self._connections_lock:
            if sock not in self._connections:
                return False
            self._connections[sock] = None if busy else time.monotonic()
            return True

    def process_request(self, request, client_address) -> None:
        """Track the connection (making room for it at the cap) so ``stop()`` can close it."""
        with self._connections_lock:
            full = len(self._connections) >= self.max_connections
            idle = [(since, sock) for sock, since in self._connections.items() if since is not None] if full else []
            if idle:
                _, oldest = min(idle, key=lambda pair: pair[0])
                del self._connections[oldest]
                _close(oldest)  # its thread sees the end of the stream and exits
            if not full or idle:
                self._connections[request] = time.monotonic()
        if full and not idle:
            self._refuse(request)
            return
        super().process_request(request, client_address)

    def _refuse(self, sock: socket.socket) -> None:
        response = self.error(503, f"more than {self.max_connections} connections are busy; retry", "", "")
        try:
            sock.settimeout(1.0)
            sock.sendall(response.encode(head=False, keep_alive=False))
        except OSError:
            pass
        self.shutdown_request(sock)

    def shutdown_request(self, request) -> None:
        """Forget the connection once it is closed."""
        with self._connections_lock:
            self._connections.pop(request, None)
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
            _close(conn)
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _close(sock: socket.socket) -> None:
    """End a connection from another thread: its blocked read returns the end of the stream."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
