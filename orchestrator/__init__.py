"""orchestrator: a durable batch orchestrator for RunComfy's image-to-video Model API.

A YAML manifest of prompt + image jobs expands into an SQLite-tracked queue; workers submit
them under concurrency limits, poll, retry and download the videos into organized folders.
"""

from __future__ import annotations

__version__ = "0.1.0"
