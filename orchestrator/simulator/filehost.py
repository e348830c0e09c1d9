"""The file host on a listener of its own, so that an outage can really refuse connections.

:class:`FileHost` serves :func:`.app.build_files_app` with its own uvicorn server in a
daemon thread. A ``refuse`` outage (:mod:`.outages`) closes the listening socket and aborts
every open connection, so connects get ECONNREFUSED; a monitor thread then reads the
simulator's clock every few milliseconds and, once the window has passed, listens again on
the same port with a fresh uvicorn server. ``open`` is set while the listener accepts
connections, so a test waits for the reopening with ``open.wait(timeout)``, not a sleep.

With any of the profile's ``file_tricks`` on, :class:`.filetricks.TrickedFiles` stands in
front of the app (``FileHost.tricks``): redirect hops reach it on either name of this
listener, the file host's and its address.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import socket
import threading
from typing import TYPE_CHECKING

import uvicorn

from orchestrator.simulator.app import build_files_app
from orchestrator.simulator.filetricks import TrickedFiles

if TYPE_CHECKING:
    from collections.abc import Callable

    from orchestrator.simulator.state import Simulator

#: How often (real seconds) the monitor reads the clock while the listener is closed.
MONITOR_INTERVAL = 0.005
START_TIMEOUT = 10.0
log = logging.getLogger("orchestrator.simulator")


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``(host, port)`` and already listening.

    Listening at once means connections made as soon as the port is announced (the
    ``simulate`` banner is printed before uvicorn starts) wait in the backlog instead of
    being refused. An explicit IPPROTO_TCP lets asyncio set TCP_NODELAY on accepted
    connections (it skips sockets whose proto is 0); without it every keep-alive reply
    waits ~40 ms. SO_REUSEADDR lets a reopened file listener take its port back at once.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def serve_in_thread(
    server: uvicorn.Server,
    sock: socket.socket,
    *,
    name: str,
    on_started: Callable[[asyncio.AbstractEventLoop], None] | None = None,
    on_ended: Callable[[], None] | None = None,
) -> threading.Thread:
    """Run ``server`` on ``sock`` in a daemon thread; returns once it accepts connections.

    ``on_started(loop)`` runs on the server's event loop right after its startup.
    """
    started = threading.Event()
    original = server.startup

    async def startup(sockets: list[socket.socket] | None = None) -> None:
        await original(sockets=sockets)
        if on_started is not None:
            on_started(asyncio.get_running_loop())
        started.set()

    server.startup = startup  # type: ignore[method-assign]

    def run() -> None:
        try:
            server.run(sockets=[sock])
        finally:
            sock.close()
            if on_ended is not None:
                on_ended()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    if not started.wait(timeout=START_TIMEOUT):
        raise RuntimeError(f"the simulator's {name} did not start within {START_TIMEOUT:g} s")
    return thread


class FileHost:
    """The file host's listener, the uvicorn servers behind it and its outages."""

    def __init__(
        self,
        simulator: Simulator,
        *,
        host: str,
        file_host: str,
        port: int = 0,
        log_level: str = "warning",
    ) -> None:
        self.simulator = simulator
        self.host = host
        self._socket: socket.socket | None = listening_socket(host, port)
        self.port: int = self._socket.getsockname()[1]
        self.base = f"http://{file_host}:{self.port}"
        #: Set while the listener accepts connections (clear during a ``refuse`` outage).
        self.open = threading.Event()
        app = build_files_app(simulator, file_host=file_host, go_dark=self._go_dark_here)
        #: The tricks in front of the app, when the profile asks for any (else None).
        self.tricks: TrickedFiles | None = None
        if simulator.profile.file_tricks.enabled:
            self.tricks = TrickedFiles(
                app, simulator, file_host=file_host, address=host, port=self.port
            )
            app = self.tricks
        self._config = uvicorn.Config(
            app,
            log_level=log_level,
            access_log=False,
            http="httptools",
            loop="asyncio",
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None  # the newest one
        self._loop: asyncio.AbstractEventLoop | None = None
        self._servers: dict[asyncio.AbstractEventLoop, uvicorn.Server] = {}
        self._threads: list[threading.Thread] = []
        self._dark = threading.Event()  # set while closed: wakes the monitor
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None
        self._warned = False

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Serve in daemon threads; returns once the listener accepts connections (or is
        closed by a ``refuse`` outage already open)."""
        sock, self._socket = self._socket, None
        if sock is None:
            raise RuntimeError("the file host was already started")
        self._serve(sock)
        self._monitor = threading.Thread(target=self._watch, name="sim-files-monitor", daemon=True)
        self._monitor.start()

    def stop(self) -> None:
        self._stopping.set()
        self._dark.set()
        if self._monitor is not None:
            self._monitor.join(timeout=10)
            self._monitor = None
        with self._lock:
            for server in self._servers.values():
                server.should_exit = True
            threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self.open.clear()

    def close_now(self) -> None:
        """Close the listener and every connection now (a ``refuse`` outage has opened)."""
        with self._lock:
            server, loop = self._server, self._loop
            if server is None or loop is None or not self.open.is_set():
                return  # closed already, or not started: the startup hook closes it
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            with self._lock:
                self._close(server)
            return

        async def close() -> None:
            with self._lock:
                self._close(server)
            await asyncio.sleep(0)  # the aborted connections' sockets close in this turn

        # The loop may have ended meanwhile: then nothing listens on it any more.
        with contextlib.suppress(RuntimeError, concurrent.futures.TimeoutError):
            asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=5)

    # -- internals -------------------------------------------------------------------------

    def _serve(self, sock: socket.socket) -> None:
        server = uvicorn.Server(self._config)

        def started(loop: asyncio.AbstractEventLoop) -> None:
            with self._lock:
                self._servers[loop] = server
                self._server, self._loop = server, loop
                window = self.simulator.outages.current()
                if window is not None and window.kind == "refuse":
                    self._close(server)
                else:
                    self._dark.clear()
                    self.open.set()

        def ended() -> None:
            with self._lock:
                for loop in [loop for loop, known in self._servers.items() if known is server]:
                    del self._servers[loop]

        thread = serve_in_thread(server, sock, name="file host", on_started=started, on_ended=ended)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    def _close(self, server: uvicorn.Server) -> None:
        """Stop ``server`` listening and abort its connections (on its loop, lock held)."""
        for listener in getattr(server, "servers", []):
            listener.close()
        for connection in list(server.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
        server.should_exit = True
        if server is self._server:
            self.open.clear()
            self._dark.set()

    def _go_dark_here(self) -> None:
        """The file app met a ``refuse`` outage: close the server it runs on, now."""
        loop = asyncio.get_running_loop()
        with self._lock:
            server = self._servers.get(loop)
            if server is not None:
                self._close(server)

    def _watch(self) -> None:
        """While the listener is closed, reopen it once no ``refuse`` outage is open."""
        outages = self.simulator.outages
        while True:
            self._dark.wait()
            while not self._stopping.wait(MONITOR_INTERVAL):
                window = outages.current()
                if window is None or window.kind != "refuse":
                    self._reopen()
                if not self._dark.is_set():
                    break
            if self._stopping.is_set():
                return

    def _reopen(self) -> None:
        try:
            sock = listening_socket(self.host, self.port)
        except OSError as exc:  # someone else took the port meanwhile: try again soon
            if not self._warned:
                log.warning("file host: cannot listen on port %d again yet: %s", self.port, exc)
                self._warned = True
            return
        self._warned = False
        try:
            self._serve(sock)
        except RuntimeError:
            log.exception("file host: the reopened listener did not start")
            sock.close()
