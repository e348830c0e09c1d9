"""Sync calls that work inside a running event loop (a notebook's, an async test's).

The library's sync functions start event loops of their own (``anyio.run``: the engine, a
catalog fetch), which asyncio refuses in a thread whose loop is already running ("Already
running asyncio in this thread"). :func:`off_the_loop` runs such a call in a worker thread
when this thread has a running loop, and in place otherwise.

>>> off_the_loop(sum, [1, 2, 3])
6
>>> import asyncio
>>> async def inside() -> int:
...     return off_the_loop(sum, [4, 5])
>>> asyncio.run(inside())
9
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")


def loop_running() -> bool:
    """Whether this thread is running an event loop (asyncio, or anyio over asyncio)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def off_the_loop(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call(*args, **kwargs)``, in a worker thread when this thread runs an event loop.

    The caller's loop is blocked until it returns, as any sync call blocks it; its context
    variables go with it, and whatever it raises is raised here.
    """
    if not loop_running():
        return call(*args, **kwargs)
    context = contextvars.copy_context()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["value"] = context.run(call, *args, **kwargs)
        except BaseException as exc:  # handed back to the caller's thread below
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="orchestrator-sync-call", daemon=True)
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]
