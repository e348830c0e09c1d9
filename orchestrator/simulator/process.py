"""The simulator in a process of its own (benchmarks: it must not share the client's GIL).

>>> with SimulatorProcess(["--time-scale", "0.001"]) as sim:  # doctest: +SKIP
...     sim.api_base
'http://127.0.0.1:40123'
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from typing import IO, TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

API_LINE = re.compile(rb"API:\s+(http://\S+)")


class SimulatorProcess:
    """``orchestrator simulate --port 0 ARGS`` as a child process; stopped on exit."""

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        stderr: IO[bytes] | int | None = subprocess.DEVNULL,
        env: dict[str, str] | None = None,
        start_timeout: float = 20.0,
    ) -> None:
        self.args = list(args)
        self.stderr = stderr
        self.env = env
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.api_base = ""

    def start(self) -> Self:
        command = [sys.executable, "-m", "orchestrator", "simulate", "--port", "0", *self.args]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=self.stderr, env=self.env
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + self.start_timeout
        buffer = b""
        while time.monotonic() < deadline and self.process.poll() is None:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.2)
            if not ready:
                continue
            buffer += os.read(self.process.stdout.fileno(), 4096)
            found = API_LINE.search(buffer)
            if found:
                self.api_base = found.group(1).decode()
                return self
        self.stop()
        raise RuntimeError(f"the simulator did not start: {buffer.decode(errors='replace')}")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> Any:
        self.stop()
