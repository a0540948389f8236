"""Serve an ASGI app with uvicorn on loopback, in a background thread.

:class:`ServerThread` binds its socket before starting (so the port is known,
``0`` picks a free one), waits for the server to be up with a deadline, and
on :meth:`ServerThread.stop` asks uvicorn to exit and joins the thread, so no
thread outlives it. :class:`SandboxServer` is that for the sandbox app.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp

from connectors.sandbox.app import create_app
from connectors.sandbox.config import SandboxConfig
from connectors.sandbox.state import SandboxState


class ServerThread:
    """One uvicorn server for ``app`` on ``host:port`` in a daemon-free thread."""

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> None:
        """Prepare (nothing runs until :meth:`start`).

        Args:
            app: The ASGI app.
            host: The address to bind (loopback by default).
            port: The port; 0 picks a free one.
        """
        self.app = app
        self.host = host
        self.requested_port = port
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> ServerThread:
        """Bind, start serving, and wait until the server accepts requests.

        Args:
            timeout_s: How long to wait for it to come up.

        Returns:
            self.

        Raises:
            RuntimeError: If it did not start in time.
            OSError: If the port is taken.
        """
        # proto must be IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted
        # connections only then, and without it every keep-alive answer
        # waits ~40 ms for a delayed ACK (Nagle).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.requested_port))
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=2,
            access_log=False,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run,
            kwargs={"sockets": [sock]},
            name=f"server-{self.port}",
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"server on {self.url} exited while starting")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"server on {self.url} did not start in {timeout_s}s"
                )
            time.sleep(0.005)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the server to exit and join its thread.

        Args:
            timeout_s: How long to wait for the thread.
        """
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class SandboxServer(ServerThread):
    """The sandbox platforms served on loopback (see :func:`create_app`)."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        """Prepare the sandbox app for ``config``.

        Args:
            config: The configuration (host, port, seed, faults, webhooks).
        """
        self.config = config or SandboxConfig()
        super().__init__(create_app(self.config), self.config.host, self.config.port)

    @property
    def state(self) -> SandboxState:
        """The sandbox's state (read it only while no request is running)."""
        state: SandboxState = self.app.state.sandbox  # type: ignore[attr-defined]
        return state

    def __enter__(self) -> SandboxServer:
        self.start()
        return self
