"""Git servers on loopback for the tests: git's smart HTTP (``git http-backend``
run as a CGI behind a small HTTP server, with basic auth and TLS when asked),
``git daemon`` for ``git://``, and a server that accepts and never answers."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.support.gitrepo import GIT_ENV

USER = "syncd"
_ADVERTISEMENT = "application/x-git-upload-pack-advertisement"


def pkt_line(text: str) -> bytes:
    """One line of git's wire protocol."""
    data = text.encode()
    return f"{len(data) + 4:04x}".encode() + data


def remote_error(message: str) -> bytes:
    """A ref advertisement that is git's ``ERR`` packet: git shows the message."""
    return pkt_line("# service=git-upload-pack\n") + b"0000" + pkt_line(f"ERR {message}")


@dataclass
class Seen:
    """A request the HTTP server answered."""

    method: str
    path: str
    authorization: str | None
    status: int = 0


@dataclass
class SmartHttp:
    """``git http-backend`` serving the repositories under ``root``.

    With ``token``, every request needs basic auth as ``USER:token``. Each
    request first calls ``on_request`` (a test looks at the world while git waits
    on the answer, or holds the answer back)."""

    root: Path
    token: str | None = None
    on_request: Callable[[Seen], None] = lambda seen: None
    # An answer of the test's own instead of git's, for an authorized request.
    answer: Callable[[Seen], bytes | None] = lambda seen: None
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    def fetches(self) -> int:
        """How many pack requests (one per fetch) were answered."""
        return sum(1 for s in self.seen if s.method == "POST" and s.status == 200)

    def repo_url(self, name: str) -> str:
        """The repository's URL, naming the user basic auth expects when a token is."""
        if self.token is None:
            return f"{self.url}/{name}"
        scheme, _, rest = self.url.partition("://")
        return f"{scheme}://{USER}@{rest}/{name}"


def _handler(server: SmartHttp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: object) -> None:
            return None

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            seen = Seen(self.command, self.path, self.headers.get("Authorization"))
            server.seen.append(seen)
            body = self._body()
            server.on_request(seen)
            if server.token is not None and not self._authorized(server.token):
                seen.status = 401
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            own = server.answer(seen)
            if own is not None:
                status, headers, payload = 200, [("Content-Type", _ADVERTISEMENT)], own
            else:
                status, headers, payload = _backend(server.root, self, body)
            seen.status = status
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _authorized(self, token: str) -> bool:
            expected = base64.b64encode(f"{USER}:{token}".encode()).decode()
            return self.headers.get("Authorization") == f"Basic {expected}"

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                return _dechunk(self.rfile)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    return Handler


def _dechunk(stream: object) -> bytes:
    read = stream.readline  # type: ignore[attr-defined]
    out = b""
    while True:
        size = int(read().strip().split(b";")[0], 16)
        if size == 0:
            read()
            return out
        out += stream.read(size)  # type: ignore[attr-defined]
        read()


def _backend(
    root: Path, request: BaseHTTPRequestHandler, body: bytes
) -> tuple[int, list[tuple[str, str]], bytes]:
    path, _, query = request.path.partition("?")
    env = {
        "PATH": os.environ["PATH"],
        **GIT_ENV,
        "HOME": str(root),
        "GIT_PROJECT_ROOT": str(root),
        "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "REQUEST_METHOD": request.command,
        "CONTENT_TYPE": request.headers.get("Content-Type", ""),
        "CONTENT_LENGTH": str(len(body)),
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_USER": USER,
    }
    if request.headers.get("Git-Protocol"):
        env["GIT_PROTOCOL"] = request.headers["Git-Protocol"]
    if request.headers.get("Content-Encoding"):
        env["HTTP_CONTENT_ENCODING"] = request.headers["Content-Encoding"]
    result = subprocess.run(
        ["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60
    )
    head, _, payload = result.stdout.partition(b"\r\n\r\n")
    status, headers = 200, []
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.split()[0])
        elif name:
            headers.append((name, value.strip()))
    return status, headers, payload


@contextlib.contextmanager
def smart_http(
    root: Path,
    *,
    token: str | None = None,
    tls: ssl.SSLContext | None = None,
    on_request: Callable[[Seen], None] = lambda seen: None,
    answer: Callable[[Seen], bytes | None] = lambda seen: None,
) -> Iterator[SmartHttp]:
    """Serve ``root``'s repositories over HTTP (HTTPS with ``tls``) on loopback."""
    server = SmartHttp(root, token, on_request, answer)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    httpd.daemon_threads = True
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    scheme = "https" if tls is not None else "http"
    server.url = f"{scheme}://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextlib.contextmanager
def stalling_server() -> Iterator[int]:
    """A port that accepts connections and never answers; yields the port."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                connection, _ = listener.accept()
                held.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for connection in held:
            connection.close()
        listener.close()


@contextlib.contextmanager
def git_daemon(root: Path) -> Iterator[str]:
    """``git daemon`` exporting ``root``'s repositories; yields its ``git://`` URL."""
    for _ in range(5):
        port = _free_port()
        proc = subprocess.Popen(
            [
                "git",
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--informative-errors",
                f"--base-path={root}",
                "--listen=127.0.0.1",
                f"--port={port}",
                str(root),
            ],
            env={**os.environ, **GIT_ENV},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # `git daemon` runs git-daemon as its child
        )
        if _listening(port, proc):
            break
        _end(proc)
    else:
        raise RuntimeError("git daemon did not start")
    try:
        yield f"git://127.0.0.1:{port}"
    finally:
        _end(proc)


def _end(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port: int = probe.getsockname()[1]
        return port


def _listening(port: int, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        time.sleep(0.02)
    return False


def processes() -> Iterator[tuple[int, bytes, bytes]]:
    """Every process's pid, command line and environment (as /proc shows them)."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = Path(entry.path, "cmdline").read_bytes()
            environ = Path(entry.path, "environ").read_bytes()
        except OSError:
            continue
        yield int(entry.name), cmdline, environ
