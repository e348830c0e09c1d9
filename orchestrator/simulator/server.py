"""Serving the simulator: uvicorn on loopback, in a background thread or in the foreground.

>>> from orchestrator.simulator import load_profile
>>> with SimulatorServer(load_profile("calm").with_overrides(time_scale=0.001)) as server:
...     server.api_base.startswith("http://127.0.0.1:")
True
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType
from typing import Self

import uvicorn

from orchestrator.catalog import Catalog
from orchestrator.simulator.app import build_app
from orchestrator.simulator.clock import Clock
from orchestrator.simulator.profile import Profile
from orchestrator.simulator.state import Simulator

API_HOST = "127.0.0.1"
FILE_HOST = "localhost"


class SimulatorServer:
    """A real HTTP server for one :class:`Simulator`, started in a daemon thread.

    The API answers at ``api_base`` (``http://127.0.0.1:PORT``) and videos are served from
    ``files_base`` (``http://localhost:PORT``): one socket, two host names.
    """

    def __init__(
        self,
        profile: Profile,
        *,
        port: int = 0,
        clock: Clock | None = None,
        catalog: Catalog | None = None,
        token: str | None = None,
        host: str = API_HOST,
        file_host: str = FILE_HOST,
        log_level: str = "warning",
    ) -> None:
        self.simulator = Simulator(profile, clock=clock, catalog=catalog, token=token)
        # An explicit IPPROTO_TCP lets asyncio set TCP_NODELAY on accepted connections (it
        # skips sockets whose proto is 0); without it every keep-alive reply waits ~40 ms.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        # Listen at once: connections made as soon as the port is announced (the ``simulate``
        # banner is printed before uvicorn starts) wait in the backlog instead of being refused.
        self._socket.listen(2048)
        self.port: int = self._socket.getsockname()[1]
        self.simulator.api_base = f"http://{host}:{self.port}"
        self.simulator.files_base = f"http://{file_host}:{self.port}"
        config = uvicorn.Config(
            build_app(self.simulator, api_host=host, file_host=file_host),
            log_level=log_level,
            access_log=False,
            http="httptools",
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def api_base(self) -> str:
        return self.simulator.api_base

    @property
    def files_base(self) -> str:
        return self.simulator.files_base

    def start(self) -> Self:
        """Serve in a daemon thread; returns once the socket accepts connections."""
        started = threading.Event()
        original = self._server.startup

        async def startup(sockets: list[socket.socket] | None = None) -> None:
            await original(sockets=sockets)
            started.set()

        self._server.startup = startup  # type: ignore[method-assign]
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self._thread.start()
        if not started.wait(timeout=10):
            raise RuntimeError("the simulator did not start within 10 seconds")
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (the ``simulate`` command)."""
        self._server.run(sockets=[self._socket])

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._socket.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
