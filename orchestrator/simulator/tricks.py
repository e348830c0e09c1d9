"""Hostile replies of the file host: the profile's ``file_tricks`` (all off by default).

Each trick stands for a file host (or a CDN in front of one) that a careful downloader must
survive without losing a paid video or keeping a broken one::

    file_tricks:
      truncate_faststart: false  # a faststart copy of the video (index first) cut to 60 %,
                                 # with a Content-Length that matches the cut: it opens,
                                 # and claims every frame, but most are missing
      redirect_hops: 0           # answer this many 302s first, alternating between the file
                                 # host's name and its address (both on the file listener);
                                 # the last one points to the file host's name
      redirect_untrusted: false  # the last 302 points to https://untrusted.invalid:PORT (a
                                 # host no allowlist names) instead; needs redirect_hops
      gzip_videos: false         # the body gzip-compressed, with Content-Encoding: gzip
      drip_seconds: 0            # > 0: the body sent one byte per this many simulated
                                 # seconds (on the simulator's clock)
      first_downloads: null      # the tricks meet only the first N downloads of each video
                                 # (counted per request id, every URL version); null: all

:mod:`.profile` reads them with :func:`parse_file_tricks`; :mod:`.filetricks` serves them.

>>> tricks = parse_file_tricks({"redirect_hops": 2, "first_downloads": 1})
>>> tricks.redirect_hops, tricks.first_downloads, tricks.enabled, tricks.changes_body
(2, 1, True, False)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

#: Where ``redirect_untrusted`` sends the last hop: ``.invalid`` never resolves (RFC 2606).
UNTRUSTED_HOST = "untrusted.invalid"
#: More hops than any downloader should follow, and no more than a test needs.
MAX_HOPS = 20
FLAGS = ("truncate_faststart", "redirect_untrusted", "gzip_videos")


class TrickError(ValueError):
    """A bad ``file_tricks`` setting (:mod:`.profile` reports it as a ProfileError)."""


@dataclass(frozen=True, slots=True)
class FileTricks:
    """How the file host misbehaves (see the module for each setting)."""

    truncate_faststart: bool = False
    redirect_hops: int = 0
    redirect_untrusted: bool = False
    gzip_videos: bool = False
    drip_seconds: float = 0.0
    first_downloads: int | None = None

    @property
    def enabled(self) -> bool:
        return self.redirect_hops > 0 or self.changes_body

    @property
    def changes_body(self) -> bool:
        return self.truncate_faststart or self.gzip_videos or self.drip_seconds > 0


def parse_file_tricks(raw: Any) -> FileTricks:
    """``file_tricks`` from a profile; a bad key or value raises :class:`TrickError`."""
    if raw is None:
        return FileTricks()
    if not isinstance(raw, Mapping):
        raise TrickError(f"file_tricks must be a mapping, got {raw!r}")
    known = {f.name for f in fields(FileTricks)}
    unknown = set(map(str, raw)) - known
    if unknown:
        raise TrickError(
            f"unknown file_tricks key(s) {', '.join(sorted(unknown))}; known: "
            + ", ".join(sorted(known))
        )
    values: dict[str, Any] = {}
    for key, value in raw.items():
        at = f"file_tricks.{key}"
        if key in FLAGS:
            if not isinstance(value, bool):
                raise TrickError(f"{at} must be true or false, got {value!r}")
            values[key] = value
        elif key == "drip_seconds":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TrickError(f"{at} must be a number of seconds >= 0, got {value!r}")
            if not (math.isfinite(value) and value >= 0):
                raise TrickError(f"{at} must be a number of seconds >= 0, got {value!r}")
            values[key] = float(value)
        elif key == "first_downloads" and value is None:
            values[key] = None
        else:
            limit = MAX_HOPS if key == "redirect_hops" else None
            values[key] = _count(value, at, limit)
    tricks = FileTricks(**values)
    if tricks.redirect_untrusted and tricks.redirect_hops < 1:
        raise TrickError("file_tricks.redirect_untrusted needs redirect_hops >= 1")
    return tricks


def _count(value: Any, at: str, limit: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TrickError(f"{at} must be a whole number >= 0, got {value!r}")
    if limit is not None and value > limit:
        raise TrickError(f"{at} must be at most {limit}, got {value}")
    return value
