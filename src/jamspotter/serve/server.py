"""Running the app under uvicorn: in the foreground for `jamspotter serve`, or in a thread for tests and demos."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from jamspotter.errors import JamspotterError


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) for uvicorn; a busy port or an unknown address is a one-line error."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise JamspotterError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise JamspotterError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    return sock


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def make_server(app: Any, host: str, port: int, log_level: str = "info") -> Any:
    """A `uvicorn.Server` for `app` (one process: the model is loaded once).

    When it shuts down it first ends the dashboard's stream and open event streams (`begin_shutdown`):
    uvicorn waits for open responses before the app's own shutdown runs, and a page left open would
    otherwise hold the exit until the graceful-shutdown timeout.
    """
    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            if hasattr(app, "state"):
                from jamspotter.serve.dashboard import begin_shutdown

                begin_shutdown(app)
            await super().shutdown(sockets)

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on", access_log=False,
                            timeout_graceful_shutdown=5)
    return Server(config)


@contextlib.contextmanager
def running_server(app: Any, host: str = "127.0.0.1", port: int = 0, startup_s: float = 60.0,
                   log_level: str = "warning") -> Iterator[str]:
    """Serve `app` from a background thread; yields its base URL (`http://127.0.0.1:PORT`), stops it on exit.

    `port=0` takes a free port. Raises JamspotterError when the server has not started within `startup_s`.
    """
    sock = bind_socket(host, port)
    bound = sock.getsockname()[1]
    server = make_server(app, host, bound, log_level=log_level)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="jamspotter-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            sock.close()
            raise JamspotterError(f"the service did not start on {host}:{bound}")
        time.sleep(0.02)
    try:
        yield f"http://{'[' + host + ']' if ':' in host else host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
