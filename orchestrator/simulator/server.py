"""Serving the simulator: uvicorn on loopback, in background threads or in the foreground.

>>> from orchestrator.simulator import load_profile
>>> with SimulatorServer(load_profile("calm").with_overrides(time_scale=0.001)) as server:
...     server.api_base.startswith("http://127.0.0.1:"), server.files_port != server.port
(True, True)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

import uvicorn

from orchestrator.simulator.app import build_api_app
from orchestrator.simulator.echo import EchoAuthorization
from orchestrator.simulator.filehost import FileHost, listening_socket, serve_in_thread
from orchestrator.simulator.state import Simulator

if TYPE_CHECKING:
    import threading
    from types import TracebackType

    from orchestrator.catalog import Catalog
    from orchestrator.simulator.clock import Clock
    from orchestrator.simulator.outages import OutageWindow
    from orchestrator.simulator.profile import Profile

API_HOST = "127.0.0.1"
FILE_HOST = "localhost"


class SimulatorServer:
    """Real HTTP servers for one :class:`Simulator`, started in daemon threads.

    The API answers at ``api_base`` (``http://127.0.0.1:PORT``) and videos are served from
    ``files_base`` (``http://localhost:FILES_PORT``): two listeners on the same loopback
    address, each with its own uvicorn server, so the file host can go down on its own
    (``file_outages`` in the profile, :meth:`start_file_outage`, ``POST /_sim/outage``).
    """

    def __init__(
        self,
        profile: Profile,
        *,
        port: int = 0,
        files_port: int = 0,
        clock: Clock | None = None,
        catalog: Catalog | None = None,
        token: str | None = None,
        host: str = API_HOST,
        file_host: str = FILE_HOST,
        log_level: str = "warning",
        echo_authorization: bool = False,
    ) -> None:
        """``echo_authorization`` makes the API host hostile: it plants the caller's
        Authorization header in every free-text string and URL it answers
        (:mod:`.echo`)."""
        self.simulator = Simulator(profile, clock=clock, catalog=catalog, token=token)
        # Both sockets listen at once (see listening_socket): the banner may come first.
        self._socket = listening_socket(host, port)
        try:
            self.files = FileHost(
                self.simulator, host=host, file_host=file_host, port=files_port, log_level=log_level
            )
        except OSError:
            self._socket.close()
            raise
        self.port: int = self._socket.getsockname()[1]
        self.simulator.api_base = f"http://{host}:{self.port}"
        self.simulator.files_base = self.files.base
        app = build_api_app(self.simulator, api_host=host, start_outage=self.start_file_outage)
        config = uvicorn.Config(
            EchoAuthorization(app) if echo_authorization else app,
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

    @property
    def files_port(self) -> int:
        return self.files.port

    @property
    def files_open(self) -> threading.Event:
        """Set while the file listener accepts connections (clear during a refuse outage)."""
        return self.files.open

    def wait_files_open(self, timeout: float | None = None) -> bool:
        """Block until the file listener accepts connections; False if ``timeout`` passed."""
        return self.files.open.wait(timeout)

    def start_file_outage(self, kind: str, seconds: float) -> OutageWindow:
        """Take the file host down now for ``seconds`` simulated seconds.

        ``error``: every file request answers 5xx. ``refuse``: the listener is closed (and
        open connections aborted) before this returns; it reopens on the same port once the
        clock has passed the window. Raises ValueError for a bad kind or seconds <= 0.
        """
        window = self.simulator.outages.start(kind, seconds)
        if kind == "refuse":
            self.files.close_now()
        return window

    def start(self) -> Self:
        """Serve in daemon threads; returns once both sockets accept connections."""
        self.files.start()
        try:
            self._thread = serve_in_thread(self._server, self._socket, name="API host")
        except BaseException:
            self.files.stop()
            raise
        return self

    def serve_forever(self) -> None:
        """Serve the API in the calling thread until interrupted (the ``simulate`` command);
        the file host runs in daemon threads."""
        self.files.start()
        try:
            self._server.run(sockets=[self._socket])
        finally:
            self.files.stop()

    def stop(self) -> None:
        self._server.should_exit = True  # both servers shut down at the same time
        self.files.stop()
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
