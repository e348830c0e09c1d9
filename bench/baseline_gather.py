"""Baseline (b): a naive asyncio script, every job at once with ``asyncio.gather``.

Each task submits, sleeps a fixed interval (2 s, scaled by ``--time-scale``) between status
polls, fetches the result and downloads the video (without the token). One default
``httpx.AsyncClient`` (its defaults: 5 s timeouts, a pool of 100 connections), no
concurrency limit of its own, no retries: any error -- a 429, a timeout -- fails that job.
Nothing from the orchestrator package. Videos land in ``OUT/{request_id}.mp4``; a JSON
summary goes to stdout.

    RUNCOMFY_API_TOKEN=... python bench/baseline_gather.py --api-base URL \\
        --image frame.jpg --jobs 1000 --out out --time-scale 0.01
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import mimetypes
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

MODEL_ID = "runwayml/runway-gen-4/turbo/image-to-video"
TERMINAL = {"completed", "succeeded", "failed", "cancelled", "canceled"}
POLL_SECONDS = 2.0


def data_uri(image: Path) -> str:
    kind = mimetypes.guess_type(image.name)[0] or "image/jpeg"
    return f"data:{kind};base64,{base64.b64encode(image.read_bytes()).decode('ascii')}"


async def run_one(
    client: httpx.AsyncClient,
    api: str,
    auth: dict[str, str],
    body: dict[str, Any],
    out: Path,
    poll: float,
) -> None:
    reply = await client.post(f"{api}/v1/models/{MODEL_ID}", json=body, headers=auth)
    reply.raise_for_status()
    request_id = reply.json()["request_id"]
    while True:
        status = await client.get(f"{api}/v1/requests/{request_id}/status", headers=auth)
        status.raise_for_status()
        if status.json()["status"] in TERMINAL:
            break
        await asyncio.sleep(poll)
    result = await client.get(f"{api}/v1/requests/{request_id}/result", headers=auth)
    result.raise_for_status()
    url = result.json()["output"]["video"]
    video = await client.get(url)
    video.raise_for_status()
    (out / f"{request_id}.mp4").write_bytes(video.content)


async def run_all(
    api: str, token: str, image: Path, jobs: int, out: Path, poll: float
) -> Counter[str]:
    auth = {"Authorization": f"Bearer {token}"}
    uri = data_uri(image)
    bodies = [
        {
            "promptImage": uri,
            "promptText": "a slow pan",
            "seed": seed,
            "ratio": "1280:720",
            "duration": 5,
        }
        for seed in range(jobs)
    ]
    async with httpx.AsyncClient() as client:
        outcomes = await asyncio.gather(
            *(run_one(client, api, auth, body, out, poll) for body in bodies),
            return_exceptions=True,
        )
    tally: Counter[str] = Counter()
    for outcome in outcomes:
        if outcome is None:
            tally["succeeded"] += 1
        else:
            tally["failed"] += 1
            tally[f"error: {type(outcome).__name__}"] += 1
    return tally


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api-base", required=True)
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--jobs", type=int, required=True, help="seeds 0..N-1")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--time-scale", type=float, default=1.0)
    args = parser.parse_args()
    token = os.environ.get("RUNCOMFY_API_TOKEN") or os.environ.get("RUNCOMFY_TOKEN")
    if not token:
        print("set RUNCOMFY_API_TOKEN", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    poll = POLL_SECONDS * args.time_scale
    tally = asyncio.run(
        run_all(args.api_base.rstrip("/"), token, args.image, args.jobs, args.out, poll)
    )
    print(json.dumps({"succeeded": tally["succeeded"], "failed": tally["failed"], **tally}))
    return 0 if tally["failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
