"""Hostile replies, the pure parts: what a reply's output URL is, whether a reply is about
the request asked for, how much of a Retry-After is honoured, and what each means for a
paid job (the engine over sockets: tests/test_hostile_replies.py)."""

from __future__ import annotations

import math
import random
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.api import RunComfyClient, TransientError, WrongRequest
from orchestrator.api.client import same_request
from orchestrator.api.responses import RemoteResult, find_output, shown_reply
from orchestrator.engine.capacity import Capacity
from orchestrator.engine.decisions import (
    RETRY_AFTER_CAP,
    Outcome,
    honoured_retry_after,
    next_state,
    retry_delay,
)
from orchestrator.engine.paidwork import (
    RENDERED,
    SHOWN_URL_CHARS,
    UNUSABLE_OUTPUT,
    FetchPolicy,
    FetchProblem,
    RetryPath,
    after_fetch_failure,
    retry_path,
    unusable_error,
)
from orchestrator.engine.settings import EngineSettings
from orchestrator.simulator.faults import BAD_URLS
from orchestrator.store.states import JobState

RID = "3f1c2b9e-aaaa-bbbb-cccc-000000000001"
OTHER = "9d0e7a51-aaaa-bbbb-cccc-000000000002"

# -- the output URL -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "url", "unusable"),
    [
        # Every form the simulator serves (result_bad_url), as output.video.
        *[({"video": form.format(rid=RID)}, None, form.format(rid=RID)) for form in BAD_URLS],
        ({"videos": ["ftp://x/a.mp4", "https://x/b.mp4"]}, None, "ftp://x/a.mp4"),
        ("file:///tmp/v.mp4", None, "file:///tmp/v.mp4"),
        ({"video": "javascript: alert(1)"}, None, "javascript: alert(1)"),  # a video key
        ({"result": {"url": "s3://bucket/v.mp4"}}, None, "s3://bucket/v.mp4"),
        ({"clip": "out/v.mp4", "caption": "a beach at dusk"}, None, "out/v.mp4"),
        ({"file": "v.MP4"}, None, "v.MP4"),
        ({"video": "https:///etc/passwd"}, None, "https:///etc/passwd"),  # no host
        ({"video": "HTTPS://files.example/V.mp4"}, "HTTPS://files.example/V.mp4", None),
        # The named video decides: a preview is no stand-in for an undownloadable video.
        ({"video": "ftp://x/v.mp4", "preview": "https://x/p.gif"}, None, "ftp://x/v.mp4"),
        # Text that is not a link does not hide a real URL elsewhere.
        ({"video": "not a url", "other": "http://127.0.0.1/v.mp4"}, "http://127.0.0.1/v.mp4", None),
        # Genuinely no output: no URL and nothing like one (images do not count).
        ({"image": "ftp://x/i.png", "thumbnail": "t.png"}, None, None),
        ({"caption": "a slow dolly-in, rain", "frames": 48}, None, None),
        ({}, None, None),
        (None, None, None),
    ],
)
def test_an_output_url_is_downloadable_unusable_or_absent(
    output: Any, url: str | None, unusable: str | None
) -> None:
    assert find_output(output) == (url, unusable)
    result = RemoteResult.parse({"status": "completed", "output": output})
    assert (result.video_url, result.unusable_url) == (url, unusable)
    assert result.succeeded is (url is not None)
    assert result.unusable is (unusable is not None)
    # A failed render is a failure, whatever its output says.
    failed = RemoteResult.parse({"status": "failed", "output": output})
    assert not failed.succeeded
    assert not failed.unusable


def test_a_deeply_nested_output_is_searched_to_a_bound() -> None:
    deep: Any = "ftp://x/deep.mp4"
    for _ in range(10_000):
        deep = {"a": deep}
    assert find_output(deep) == (None, None)  # no RecursionError; too deep to be meant
    shallow: Any = "ftp://x/v.mp4"
    for _ in range(20):
        shallow = [shallow]
    assert find_output({"out": shallow}) == (None, "ftp://x/v.mp4")


def test_an_unusable_url_is_shown_quoted_escaped_and_cut() -> None:
    url = "ftp://x/" + "\x1b[31m" + "a" * 1_000_000
    error = unusable_error(RID, "beach", url)
    assert RID in error
    assert "--resubmit --ids beach" in error
    assert "\x1b" not in error
    assert "\\x1b[31m" in error
    assert len(error) < 400 + SHOWN_URL_CHARS
    assert shown_reply(url, SHOWN_URL_CHARS).endswith("...")
    assert len(shown_reply({"a": list(range(10**5))}, 50)) <= 50  # bounded, not a list


# -- a reply about another request --------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "wrong"),
    [
        ({"request_id": RID, "status": "completed"}, None),
        ({"status": "completed"}, None),  # no field: taken as meant for us
        ({"request_id": None, "status": "completed"}, None),
        ({"request_id": OTHER, "status": "completed"}, repr(OTHER)),
        ({"request_id": RID.upper()}, repr(RID.upper())),  # ids are compared exactly
        ({"request_id": 7}, "7"),
        ({"request_id": ""}, "''"),
        ({"request_id": "x" * 10_000}, None),  # shown cut (checked below)
    ],
)
def test_a_reply_naming_another_request_is_a_transient_error(
    body: dict[str, Any], wrong: str | None
) -> None:
    answered = body.get("request_id")
    if answered is None or answered == RID:
        assert same_request(body, RID, "result") is body
        return
    with pytest.raises(WrongRequest) as raised:
        same_request(body, RID, "result")
    error = raised.value
    assert isinstance(error, TransientError)  # asked again later, never a success
    assert (error.asked, error.route) == (RID, "result")
    assert RID in str(error)
    assert error.answered in str(error)
    assert error.answered == wrong if wrong is not None else len(error.answered) <= 140


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.parametrize("route", ["status", "result", "cancel"])
async def test_the_client_refuses_another_requests_reply_on_every_route(route: str) -> None:
    body: dict[str, Any] = {"request_id": OTHER, "status": "completed", "outcome": "cancelled"}
    body["output"] = {"video": "https://files.runcomfy.net/other/output.mp4"}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
    async with RunComfyClient("https://api.test", token="t0ken-abc", transport=transport) as api:
        with pytest.raises(WrongRequest) as raised:
            if route == "status":
                await api.status(RID)
            elif route == "result":
                await api.result(RID)
            else:
                await api.cancel(RID)
    assert (raised.value.asked, raised.value.answered, raised.value.route) == (
        RID,
        repr(OTHER),
        route,
    )


# -- Retry-After ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "honoured"),
    [
        (None, None),  # none given: the engine's own backoff
        (0.0, 0.0),
        (3.0, 3.0),
        (299.5, 299.5),
        (300.0, 300.0),
        (301.0, RETRY_AFTER_CAP),
        (86_400.0, RETRY_AFTER_CAP),  # the hostile day
        (math.inf, RETRY_AFTER_CAP),  # "9" * 400 parses to inf
        (-5.0, 0.0),  # a date in the past
        (math.nan, None),
    ],
)
def test_how_much_of_a_retry_after_is_honoured(sent: float | None, honoured: float | None) -> None:
    assert honoured_retry_after(sent) == honoured
    assert honoured_retry_after(86_400.0, cap=0.02) == 0.02  # the tests' scaled cap


@settings(max_examples=300, deadline=None)
@given(
    sent=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    cap=st.floats(min_value=0, max_value=10**6),
)
def test_an_honoured_retry_after_is_always_within_0_and_the_cap(
    sent: float | None, cap: float
) -> None:
    honoured = honoured_retry_after(sent, cap=cap)
    assert honoured is None or 0.0 <= honoured <= cap
    assert (honoured is None) == (sent is None or math.isnan(sent))


@settings(max_examples=300, deadline=None)
@given(
    failures=st.integers(min_value=0, max_value=10**6),
    sent=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    cap=st.floats(min_value=0, max_value=3600),
    retry_after_cap=st.floats(min_value=0, max_value=3600),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_a_retry_delay_is_always_within_0_and_its_caps(
    failures: int, sent: float | None, cap: float, retry_after_cap: float, seed: int
) -> None:
    delay = retry_delay(
        failures,
        base=2.0,
        cap=cap,
        retry_after=sent,
        retry_after_cap=retry_after_cap,
        rng=random.Random(seed),
    )
    assert 0.0 <= delay <= max(cap, retry_after_cap)
    if sent is not None and not math.isnan(sent):
        assert delay >= min(max(0.0, sent), retry_after_cap)  # still a floor, capped


def test_the_engine_caps_retry_after_at_its_longest_backoff() -> None:
    # The engine passes retry.max_delay as the cap: by default the documented 300 s.
    assert EngineSettings().max_delay == RETRY_AFTER_CAP == 300.0


def test_a_submit_429_throttle_ends_on_time_whatever_was_accepted() -> None:
    open_ = Capacity.start(ceiling=32)
    throttled = open_.throttled(until=100.0).throttled(until=160.0)
    assert throttled.value == open_.value // 4
    assert throttled.lifted(159.9) is throttled
    assert throttled.lifted(160.0).value == open_.value
    assert throttled.lifted(160.0).throttle_ends is None
    # Regrown before its time: the end is forgotten too.
    regrown = throttled
    while regrown.throttled_to is not None:
        regrown = regrown.accepted()
    assert regrown.throttle_ends is None
    assert regrown.value == open_.value
    assert open_.lifted(10**9) is open_  # nothing to lift


# -- what an unusable output means for a paid job ---------------------------------------------


def test_an_unusable_output_goes_to_a_person_never_to_a_reroll() -> None:
    for state in (JobState.SUBMITTED, JobState.DOWNLOADING):
        for paid, most in ((1, 3), (3, 3)):
            target = next_state(
                state, Outcome.RESULT_UNUSABLE, paid_attempts=paid, max_attempts=most
            )
            assert target == JobState.NEEDS_RECONCILE
    policy, rng = FetchPolicy(), random.Random(0)
    for failures in (1, 5, 100):
        step = after_fetch_failure(
            FetchProblem.UNUSABLE_URL, failures=failures, policy=policy, rng=rng
        )
        assert (step.outcome, step.delay) == (Outcome.RESULT_UNUSABLE, None)
    # Billed: a later retry treats it as rendered (a re-roll is the user's to ask for).
    assert UNUSABLE_OUTPUT in RENDERED
    assert retry_path(JobState.FAILED, UNUSABLE_OUTPUT, reroll=False) == RetryPath.FETCH_AGAIN
