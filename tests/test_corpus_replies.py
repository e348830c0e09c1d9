"""The corpus of hostile replies (``tests/corpus_replies/``) against every client call.

Each reply is served to submit, status, result, cancel, model info and the model list.
Every call must end in a parsed reply or one of the client's own error kinds
(:class:`~orchestrator.api.RunComfyError`): never another exception, never a hang. The
whole corpus runs once more in a child process, whose peak RSS must stay under 300 MB.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml

from orchestrator.api import RunComfyClient, RunComfyError

CORPUS = Path(__file__).parent / "corpus_replies"
CASES = sorted(p.stem for p in CORPUS.glob("*.yaml"))
REQUEST = "3f1c2b9e-0000-4000-8000-000000000001"
MODEL = "bytedance/seedance-1-0/pro/image-to-video"
RSS_LIMIT_MB = 300
Call = Callable[[RunComfyClient], Awaitable[Any]]
CALLS: dict[str, Call] = {
    "submit": lambda api: api.submit(MODEL, {"prompt": "x"}),
    "status": lambda api: api.status(REQUEST),
    "result": lambda api: api.result(REQUEST, include_cost=True),
    "cancel": lambda api: api.cancel(REQUEST),
    "model_info": lambda api: api.model_info(MODEL),
    "list_models": lambda api: api.list_models(),
}


def reply(case: str) -> httpx.Response:
    """The case's reply, built fresh for each request."""
    spec = yaml.safe_load((CORPUS / f"{case}.yaml").read_text(encoding="utf-8"))
    headers = dict(spec.get("headers") or {})
    if "json" in spec:
        content = json.dumps(spec["json"]).encode()
        headers.setdefault("content-type", "application/json")
    elif "hex" in spec:
        content = bytes.fromhex(spec["hex"])
    elif "make" in spec:
        content = make(spec["make"])
    else:
        content = str(spec.get("body", "")).encode()
    return httpx.Response(int(spec["status"]), headers=headers, content=content)


def make(recipe: str) -> bytes:
    kind, size = recipe.split()
    count = int(size)
    if kind == "nested":
        return b"[" * count + b"]" * count
    if kind == "huge":
        return b'{"status": "completed", "error": "' + b"x" * count + b'"}'
    if kind == "many":
        return json.dumps({f"k{n}": n for n in range(count)}).encode()
    raise ValueError(recipe)


def outcome(case: str, call: Call) -> str:
    """``ok: <type>`` or ``error: <kind>``; anything else escapes and fails the test."""

    async def main() -> str:
        transport = httpx.MockTransport(lambda _request: reply(case))
        async with RunComfyClient(
            "https://api.example", token="corpus-token-0123", transport=transport
        ) as api:
            try:
                with anyio.fail_after(30):  # a hang is a failure, not a stuck suite
                    value = await call(api)
            except RunComfyError as exc:
                return f"error: {type(exc).__name__}"
        return f"ok: {type(value).__name__}"

    return anyio.run(main)


@pytest.mark.parametrize("route", sorted(CALLS))
@pytest.mark.parametrize("case", CASES)
@pytest.mark.slow
def test_every_hostile_reply_is_parsed_or_refused(case: str, route: str) -> None:
    assert outcome(case, CALLS[route]).startswith(("ok: ", "error: "))


def test_nothing_in_the_corpus_parses_as_a_success_it_is_not() -> None:
    # A completed status with no usable output, or a body that is not an object, is never
    # a finished job with a video.
    for case in ("02-json-array", "03-json-string", "05-nested-100k", "18-not-utf8"):
        assert outcome(case, CALLS["submit"]).startswith("error: "), case


@pytest.mark.slow
def test_the_corpus_stays_under_the_memory_limit() -> None:
    child = subprocess.run(
        [sys.executable, __file__, "--all"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=Path(__file__).parent,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    peak_mb = float(child.stdout.strip().splitlines()[-1])
    assert peak_mb < RSS_LIMIT_MB, f"peak RSS {peak_mb:.0f} MB"


def peak_rss_mb() -> float:
    """This process's peak RSS. ``VmHWM`` belongs to the process image since ``exec``:
    ``ru_maxrss`` would also count the parent pytest's pages at the moment of the fork."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__" and sys.argv[1:] == ["--all"]:
    for name in CASES:
        for call in CALLS.values():
            outcome(name, call)
    sys.stdout.write(f"{peak_rss_mb()}\n")
