"""Log redaction: registered secrets, bearer values and data URIs never reach a log line."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import structlog

from orchestrator import redact as redaction
from orchestrator.logs import JsonLinesFile, configure_logging, redact_secrets, register_secret

if TYPE_CHECKING:
    from collections.abc import Iterator

SECRET = "sk-live-4f9a8b7c6d5e"
DATA_URI = "data:image/png;base64," + "iVBORw0KGgoAAAANSUhEUgAA" * 4


@pytest.fixture(autouse=True)
def fresh_secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test registers its own secrets; logging goes back to defaults afterwards."""
    monkeypatch.setattr(redaction, "_secrets", set())
    yield
    structlog.reset_defaults()


def redact(**event: object) -> dict[str, object]:
    return dict(redact_secrets(None, "info", {"event": "x", **event}))


def test_a_registered_secret_is_replaced_wherever_it_appears() -> None:
    register_secret(SECRET)
    event = redact(
        message=f"token {SECRET} refused",
        url=f"https://x.test/?t={SECRET}",
        count=3,
        ratio=0.5,
        flag=True,
        nothing=None,
    )
    assert event["message"] == "token <redacted> refused"
    assert event["url"] == "https://x.test/?t=<redacted>"
    assert (event["count"], event["ratio"], event["flag"], event["nothing"]) == (3, 0.5, True, None)
    assert SECRET not in json.dumps(event)


def test_an_empty_secret_is_not_registered() -> None:
    register_secret("")
    assert redact(message="plain text")["message"] == "plain text"


def test_bearer_values_are_redacted_even_when_not_registered() -> None:
    event = redact(
        header="Bearer abc.def-123",
        quoted="{'Authorization': 'Bearer xyz789'}",
        spaced="Authorization: Bearer    q1w2e3, next",
    )
    assert event["header"] == "Bearer <redacted>"
    assert event["quoted"] == "{'Authorization': 'Bearer <redacted>'}"
    assert event["spaced"] == "Authorization: Bearer <redacted>, next"


def test_data_uris_are_replaced_by_a_short_marker() -> None:
    event = redact(body=f'{{"image": "{DATA_URI}"}}', short="data:image/png;base64,AAAA")
    assert event["body"] == '{"image": "data:<image omitted>"}'
    assert event["short"] == "data:image/png;base64,AAAA"  # too short to be an image


def test_nested_values_are_redacted_too() -> None:
    register_secret(SECRET)
    event = redact(
        headers={"Authorization": f"Bearer {SECRET}", "Accept": "application/json"},
        payloads=[{"image": DATA_URI, "n": 1}, SECRET],
    )
    assert event["headers"] == {"Authorization": "Bearer <redacted>", "Accept": "application/json"}
    assert event["payloads"] == [{"image": "data:<image omitted>", "n": 1}, "<redacted>"]


def test_other_objects_are_logged_as_their_redacted_repr() -> None:
    register_secret(SECRET)
    event = redact(error=RuntimeError(f"401 for {SECRET}"), pair=("a", SECRET))
    assert event["error"] == "RuntimeError('401 for <redacted>')"
    assert event["pair"] == "('a', '<redacted>')"


@pytest.mark.parametrize("json_lines", [False, True])
def test_configured_logging_writes_redacted_lines_to_the_stream(json_lines: bool) -> None:
    register_secret(SECRET)
    stream = io.StringIO()
    configure_logging(stream, json_lines=json_lines)
    structlog.get_logger("test").warning(
        "submit failed", error=f"HTTP 401 with {SECRET}", header=f"Bearer {SECRET}"
    )
    text = stream.getvalue()
    assert SECRET not in text
    assert "submit failed" in text
    assert "<redacted>" in text
    if json_lines:
        line = json.loads(text)
        assert line["level"] == "warning"
        assert line["error"] == "HTTP 401 with <redacted>"
        assert line["header"] == "Bearer <redacted>"
        assert line["timestamp"].endswith("Z")


@pytest.mark.parametrize("json_lines", [False, True])
def test_a_logged_traceback_is_redacted(json_lines: bool) -> None:
    register_secret(SECRET)
    stream = io.StringIO()
    configure_logging(stream, json_lines=json_lines)
    log = structlog.get_logger("test")
    try:
        raise RuntimeError(f"401 for {SECRET} with Bearer {SECRET}")
    except RuntimeError as exc:
        log.exception("submit failed")
        log.error("again", exc_info=exc)
    text = stream.getvalue()
    assert SECRET not in text
    assert text.count("RuntimeError: 401 for <redacted> with Bearer <redacted>") == 2


def test_a_full_disk_turns_the_batch_log_off_instead_of_crashing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # /dev/full answers every write with ENOSPC, like the disk holding the videos and
    # their batch log on a bad night.
    sink = JsonLinesFile(Path("/dev/full"))
    event = {"event": "downloaded", "job": "a"}
    assert sink(None, "info", dict(event)) == event  # the line is dropped, the event goes on
    assert sink(None, "info", dict(event)) == event  # and the file stays off
    sink.close()
    warning = capsys.readouterr().err
    assert warning.count("the batch log /dev/full is off") == 1
    assert "No space left on device" in warning


def test_a_batch_log_that_cannot_be_opened_is_off(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    sink = JsonLinesFile(blocked / "logs" / "b.jsonl")
    assert sink(None, "info", {"event": "x"}) == {"event": "x"}
    sink.close()
    assert "is off" in capsys.readouterr().err
