"""What a download may reach and take: allowed hosts, the overall deadline, the coding.

Pure pieces of :mod:`.download`, kept apart so they can be tested without a socket.
:func:`host_allowed` judges the first URL and every redirect alike.

**The deadline.** The HTTP client's read timeout catches a host that goes silent; it cannot
catch one that sends a byte every few seconds forever. So each download also has an overall
deadline, :func:`download_deadline`: ``max(60 s, expected bytes / 256 KiB/s)``, or 600 s
when the size is not announced (then, as bytes arrive, never less than what they would
earn at that rate: a slow but steady transfer of an unannounced size is not cut).

- 256 KiB/s (2 Mbit/s) is a poor link, well below any file host's: a 5 s 1080p clip of
  ~12 MB arrives in 47 s at that rate, so a healthy transfer is never near its deadline,
  and the download size cap (2 GiB) still gets over two hours;
- the 60 s floor covers connecting, TLS and TCP slow start for the small clips most
  models make (everything under 15 MiB gets the floor);
- 600 s for an unknown size is what 150 MiB take at the rate, ten times a typical clip;
- a host dripping one byte every 2 s has sent 30 bytes when its 60 s are up: the download
  fails, and is retried like any other failed download (never re-rolled).

The deadline is checked as each piece of the body arrives, so a download ends at most one
read timeout after its deadline.

**Content codings.** A file host may compress a body it was not asked to (``gzip``);
:class:`Gunzip` decodes it as a stream, in pieces of at most :data:`PIECE` bytes, so a
small compressed body that inflates to gigabytes (a "gzip bomb") meets the size cap, counted
on the decoded bytes, long before it meets the memory.

>>> download_deadline(None), download_deadline(1024), download_deadline(512 * 1024 * 1024)
(600.0, 60.0, 2048.0)
"""

from __future__ import annotations

import ipaddress
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

RUNCOMFY_DOMAINS = ("runcomfy.net", "runcomfy.com")

#: The largest piece a decoder returns at once (and the downloader's write size).
PIECE = 256 * 1024
#: Codings a download accepts: what a 200 may carry in its Content-Encoding header.
ACCEPT_ENCODING = "identity, gzip"
_GZIP_WBITS = 16 + zlib.MAX_WBITS


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_allowed(url: str, trusted: Iterable[str]) -> str | None:
    """Why ``url`` may not be downloaded, or None when it may.

    Allowed: https on RunComfy's domains or a trusted host; plain http only on loopback
    trusted hosts (the local simulator). No credentials in URLs.

    >>> host_allowed("https://files.runcomfy.net/a.mp4", []) is None
    True
    >>> print(host_allowed("https://evil.example/a.mp4", []))  # doctest: +ELLIPSIS
    host evil.example is not on the download allowlist ...
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.username or parts.password:
        return "download URLs with credentials are refused"
    trusted_hosts = {t.lower() for t in trusted}
    runcomfy = any(host == d or host.endswith("." + d) for d in RUNCOMFY_DOMAINS)
    if parts.scheme == "https" and (runcomfy or host in trusted_hosts):
        return None
    if parts.scheme == "http" and host in trusted_hosts and is_loopback(host):
        return None
    if parts.scheme not in ("https", "http"):
        return f"scheme {parts.scheme!r} is not allowed for downloads"
    if parts.scheme == "http" and not is_loopback(host):
        return f"plain http download from {host} refused (https only)"
    return (
        f"host {host} is not on the download allowlist (RunComfy domains, the API host, "
        "--trust-host)"
    )


@dataclass(frozen=True, slots=True)
class DeadlinePolicy:
    """The overall deadline of one download (see the module for the figures' reasons)."""

    floor: float = 60.0
    """Seconds any download may take, however small."""
    rate: float = 256 * 1024
    """Bytes per second a download must average beyond the floor."""
    unknown: float = 600.0
    """Seconds for a download whose size is not announced."""


def download_deadline(expected_bytes: int | None, policy: DeadlinePolicy | None = None) -> float:
    """Seconds a download of ``expected_bytes`` (None: not announced) may take in all.

    >>> download_deadline(30 * 1024 * 1024)
    120.0
    >>> download_deadline(10, DeadlinePolicy(floor=5.0))
    5.0
    """
    policy = policy or DeadlinePolicy()
    if expected_bytes is None:
        return policy.unknown
    return max(policy.floor, max(0, expected_bytes) / policy.rate)


class Identity:
    """A body sent as it is."""

    complete = True

    def feed(self, data: bytes) -> Iterator[bytes]:
        if data:
            yield data


class Gunzip:
    """A gzip body decoded as it arrives; :attr:`complete` once its last member ended.

    Corrupt data raises :class:`zlib.error`. Several members one after another are one
    body (RFC 1952).

    >>> import gzip
    >>> body = Gunzip()
    >>> b"".join(body.feed(gzip.compress(b"video" * 1000))) == b"video" * 1000, body.complete
    (True, True)
    """

    def __init__(self, piece: int = PIECE) -> None:
        self.piece = piece
        self._inflate = zlib.decompressobj(_GZIP_WBITS)
        self._members = 0
        self._midway = False  # bytes of a member that has not ended yet were fed

    @property
    def complete(self) -> bool:
        return self._members > 0 and not self._midway

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The decoded bytes ``data`` brings, in pieces of at most :attr:`piece` bytes."""
        while True:
            if data:
                self._midway = True
            out = self._inflate.decompress(data, self.piece)
            if out:
                yield out
            if self._inflate.eof:
                self._members += 1
                self._midway = False
                data = self._inflate.unused_data
                self._inflate = zlib.decompressobj(_GZIP_WBITS)
                if not data:
                    return
                continue
            data = self._inflate.unconsumed_tail
            # A full piece may leave more output inside zlib with no input left (one byte of
            # a long run decodes to more than a piece): drain it now rather than with the
            # next input, so nothing decoded waits on the network.
            if not data and len(out) < self.piece:
                return


def decoder_for(content_encoding: str | None) -> Identity | Gunzip | None:
    """The decoder for a Content-Encoding header, or None for a coding not accepted.

    >>> type(decoder_for(None)).__name__, type(decoder_for("GZip")).__name__
    ('Identity', 'Gunzip')
    >>> decoder_for("br") is None, decoder_for("gzip, gzip") is None
    (True, True)
    """
    codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
    applied = [c for c in codings if c not in ("", "identity")]
    if not applied:
        return Identity()
    if applied in (["gzip"], ["x-gzip"]):
        return Gunzip()
    return None
