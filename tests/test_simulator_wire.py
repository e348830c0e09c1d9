"""An independent client written from docs/runcomfy-api.md alone, against the simulator.

Only the server is started with the package; every URL is built by hand from the documented
paths and only documented fields are read, so this test fails if the simulator drifts from
the wire format even where the project's own client would happen to agree with it.
"""

from __future__ import annotations

import base64
import io
from urllib.parse import urlsplit

import httpx
from PIL import Image

from orchestrator.simulator import ManualClock, SimulatorServer, load_profile

MODEL_ID = "bytedance/seedance-1-0/pro/image-to-video"
TOKEN = "wire-test-token"
DOCUMENTED_STATES = {"in_queue", "in_progress", "completed", "failed", "cancelled"}


def png_data_uri() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (400, 400), (90, 140, 200)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_submit_poll_result_download_by_the_documented_wire_format() -> None:
    clock = ManualClock()
    with SimulatorServer(load_profile("calm"), clock=clock) as server:
        base = server.api_base  # what a user would export as the API base
        headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}
        with httpx.Client(headers=headers, timeout=10, follow_redirects=False) as api:
            # §1.5 the price, from the same path as submit but with GET
            entry = api.get(f"{base}/v1/models/{MODEL_ID}")
            assert entry.status_code == 200
            assert isinstance(entry.json()["base_price_usd"], int | float)
            assert entry.json()["price_unit"] == "second"

            # §1.1 submit: the body keys are the model's input schema, no envelope
            body = {"prompt": "slow dolly-in", "first_frame_image_url": png_data_uri()}
            submitted = api.post(f"{base}/v1/models/{MODEL_ID}", json=body)
            assert 200 <= submitted.status_code < 300
            request_id = submitted.json()["request_id"]
            assert isinstance(request_id, str)
            assert request_id

            # §1.2 poll the status path built by hand until it is terminal
            seen = []
            for _ in range(50):
                status = api.get(f"{base}/v1/requests/{request_id}/status")
                assert status.status_code == 200
                state = status.json()["status"]
                assert state in DOCUMENTED_STATES
                if state == "in_queue":
                    assert isinstance(status.json()["queue_position"], int)
                else:
                    assert "queue_position" not in status.json()
                seen.append(state)
                if state in ("completed", "failed", "cancelled"):
                    break
                clock.advance(15)
            assert seen[-1] == "completed"

            # §1.3 the result, with the actual charge
            result = api.get(
                f"{base}/v1/requests/{request_id}/result", params={"include_cost": "true"}
            )
            assert result.status_code == 200
            data = result.json()
            assert data["status"] == "completed"
            assert isinstance(data["cost"], int | float)
            assert data["cost"] > 0
            assert data["model_id"] == MODEL_ID
            video_url = data["output"]["video"]

            # §1.4 a finished job cannot be cancelled, and saying so is not an error
            cancel = api.post(f"{base}/v1/requests/{request_id}/cancel")
            assert 200 <= cancel.status_code < 300
            assert cancel.json()["outcome"] == "not_cancellable"

        # Outputs live on another host and are fetched without the token (§1.3).
        assert urlsplit(video_url).hostname != urlsplit(base).hostname
        with httpx.Client(timeout=10, follow_redirects=False) as files:
            video = files.get(video_url)
        assert video.status_code == 200
        assert video.headers["content-type"].startswith("video/")
        assert video.content[4:8] == b"ftyp"  # an MP4 file
        assert len(video.content) == int(video.headers["content-length"])
