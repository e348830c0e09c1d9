"""Baseline (a): the official CLI's flow, one job at a time, scripted from the API docs alone.

What a careful user writes without the orchestrator: for each seed, submit
(``POST {api}/v1/models/{model_id}``, JSON body, Bearer token), poll
``GET {api}/v1/requests/{id}/status`` every 2 s (scaled by ``--time-scale`` so a simulated
minute lasts what it does on the simulator), then ``GET .../result`` and download the video
URL *without* the token. Plain synchronous httpx; nothing from the orchestrator package.
Each video lands in ``OUT/{request_id}.mp4``. A JSON summary goes to stdout.

    RUNCOMFY_API_TOKEN=... python bench/baseline_sequential.py --api-base URL \\
        --image frame.jpg --jobs 100 --out out --time-scale 0.01
"""

from __future__ import annotations

import argparse
import base64
import json
import mimetypes
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

MODEL_ID = "runwayml/runway-gen-4/turbo/image-to-video"
TERMINAL = {"completed", "succeeded", "failed", "cancelled", "canceled"}
SUCCESS = {"completed", "succeeded"}
POLL_SECONDS = 2.0  # the CLI's interval, in real (unscaled) seconds


def data_uri(image: Path) -> str:
    """``promptImage`` as a data URI (the API takes a public URL or a data URI)."""
    kind = mimetypes.guess_type(image.name)[0] or "image/jpeg"
    return f"data:{kind};base64,{base64.b64encode(image.read_bytes()).decode('ascii')}"


def body_for(image_uri: str, prompt: str, seed: int) -> dict[str, Any]:
    """Runway Gen-4 Turbo input: promptImage (required), promptText, seed, ratio, duration."""
    return {
        "promptImage": image_uri,
        "promptText": prompt,
        "seed": seed,
        "ratio": "1280:720",
        "duration": 5,
    }


def video_url(result: dict[str, Any]) -> str | None:
    output = result.get("output")
    if not isinstance(output, dict):
        return None
    url = output.get("video")
    if isinstance(url, str):
        return url
    videos = output.get("videos")
    if isinstance(videos, list) and videos and isinstance(videos[0], str):
        return videos[0]
    return None


def run_one(
    client: httpx.Client,
    api: str,
    auth: dict[str, str],
    body: dict[str, Any],
    out: Path,
    poll: float,
) -> str:
    """Submit, poll, fetch the result, download. Returns the request id; raises on failure."""
    reply = client.post(f"{api}/v1/models/{MODEL_ID}", json=body, headers=auth)
    reply.raise_for_status()
    request_id = str(reply.json()["request_id"])
    while True:
        status = client.get(f"{api}/v1/requests/{request_id}/status", headers=auth)
        status.raise_for_status()
        if str(status.json().get("status", "")).lower() in TERMINAL:
            break
        time.sleep(poll)
    result = client.get(f"{api}/v1/requests/{request_id}/result", headers=auth)
    result.raise_for_status()
    data = result.json()
    url = video_url(data)
    if str(data.get("status", "")).lower() not in SUCCESS or url is None:
        raise RuntimeError(f"{request_id}: {data.get('status')} {data.get('error')}")
    # Output URLs are pre-signed: no token, no redirects.
    with client.stream("GET", url, follow_redirects=False) as download:
        download.raise_for_status()
        target = out / f"{request_id}.mp4"
        with open(target, "wb") as handle:
            for chunk in download.iter_bytes():
                handle.write(chunk)
    return request_id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api-base", required=True)
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--jobs", type=int, required=True, help="seeds 0..N-1")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--prompt", default="a slow pan")
    parser.add_argument("--time-scale", type=float, default=1.0)
    args = parser.parse_args()
    token = os.environ.get("RUNCOMFY_API_TOKEN") or os.environ.get("RUNCOMFY_TOKEN")
    if not token:
        print("set RUNCOMFY_API_TOKEN", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    api = args.api_base.rstrip("/")
    auth = {"Authorization": f"Bearer {token}"}
    image_uri = data_uri(args.image)
    poll = POLL_SECONDS * args.time_scale
    succeeded, failed = 0, 0
    # The CLI's timeouts: 60 s per call, 10 s to connect.
    with httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0)) as client:
        for seed in range(args.jobs):
            try:
                run_one(client, api, auth, body_for(image_uri, args.prompt, seed), args.out, poll)
                succeeded += 1
            except (httpx.HTTPError, RuntimeError, KeyError, ValueError) as exc:
                failed += 1
                print(f"seed {seed}: {exc}", file=sys.stderr)
    print(json.dumps({"succeeded": succeeded, "failed": failed}))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
