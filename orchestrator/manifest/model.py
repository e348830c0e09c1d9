"""What a manifest expands into: batch settings and concrete jobs.

These are plain values; nothing here reads files or talks to the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

DEFAULT_PATTERN = "{batch}/{model_slug}/{id}{variant}.mp4"
DEFAULT_OUTPUT_DIR = "outputs"
IMAGE_FIT_MODES = ("resize", "pad", "crop")
#: The marker that stands for a local image inside a stored payload; the data URI is built
#: from the file at submit time, after checking its sha256 is unchanged.
IMAGE_MARKER = "$image"


@dataclass(frozen=True, slots=True)
class ImageRef:
    """A job's image: a local file (probed, with its content hash) or an https URL."""

    path: str | None = None
    url: str | None = None
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    size_bytes: int | None = None
    format: str | None = None

    def stored(self, fit: str | None = None) -> Any:
        """The form kept in the store: a marker with path, hash and fit mode, or the URL.

        >>> ImageRef(path="/in/a.png", sha256="ab").stored("pad")
        {'$image': {'path': '/in/a.png', 'sha256': 'ab', 'fit': 'pad'}}
        """
        if self.url is not None:
            return self.url
        marker: dict[str, Any] = {"path": self.path, "sha256": self.sha256}
        if fit is not None:
            marker["fit"] = fit
        return {IMAGE_MARKER: marker}

    def keyed(self) -> Any:
        """The form hashed into a job key: the content hash, never the path."""
        if self.url is not None:
            return self.url
        return {IMAGE_MARKER: self.sha256}


@dataclass(frozen=True, slots=True)
class Limits:
    """Concurrency, rate and spend limits of a batch (``limits:`` in the manifest)."""

    max_in_flight: int = 8
    max_in_flight_per_model: int | None = None
    submits_per_second: float | None = None
    max_downloads: int = 4
    max_spend: float | None = None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How failures are retried (``retry:`` in the manifest)."""

    max_attempts: int = 3
    base_delay: float = 2.0
    max_delay: float = 300.0


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """Where videos go: a root folder and a path pattern inside it."""

    dir: str = DEFAULT_OUTPUT_DIR
    pattern: str = DEFAULT_PATTERN


@dataclass(frozen=True)
class BatchSettings:
    """The manifest's batch-wide settings."""

    batch: str
    manifest_path: str
    output: OutputSpec = field(default_factory=OutputSpec)
    limits: Limits = field(default_factory=Limits)
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @classmethod
    def from_dict(cls, batch: str, manifest_path: str, data: Mapping[str, Any]) -> BatchSettings:
        """Rebuild what :meth:`as_dict` stored (missing sections take their defaults), so
        ``work --batch`` on another host follows the manifest's limits and retries.

        >>> s = BatchSettings("b", "m.yaml", limits=Limits(max_in_flight=3))
        >>> BatchSettings.from_dict("b", "m.yaml", s.as_dict()) == s
        True
        """
        return cls(
            batch=batch,
            manifest_path=manifest_path,
            output=OutputSpec(**data.get("output", {})),
            limits=Limits(**data.get("limits", {})),
            retry=RetryPolicy(**data.get("retry", {})),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "output": {"dir": self.output.dir, "pattern": self.output.pattern},
            "limits": {
                "max_in_flight": self.limits.max_in_flight,
                "max_in_flight_per_model": self.limits.max_in_flight_per_model,
                "submits_per_second": self.limits.submits_per_second,
                "max_downloads": self.limits.max_downloads,
                "max_spend": self.limits.max_spend,
            },
            "retry": {
                "max_attempts": self.retry.max_attempts,
                "base_delay": self.retry.base_delay,
                "max_delay": self.retry.max_delay,
            },
        }


@dataclass(frozen=True)
class JobSpec:
    """One concrete job: one model, one native payload, one output file."""

    id: str
    base_id: str
    variant: str
    model_id: str
    model_slug: str
    payload: Mapping[str, Any]
    images: Mapping[str, ImageRef]
    replicate: int
    image_fit: str | None
    key: str
    output_path: str
    source_file: str
    source_line: int | None
    estimated_cost_usd: float | None = None
    known_model: bool = True

    def stored_payload(self) -> dict[str, Any]:
        """The payload as the store keeps it (images as path + hash markers)."""
        return with_images(self.payload, self.images, lambda ref: ref.stored(self.image_fit))

    def keyed_payload(self) -> dict[str, Any]:
        """The payload as hashed into the key (images as content hashes)."""
        return with_images(self.payload, self.images, lambda ref: ref.keyed())


def with_images(
    payload: Mapping[str, Any], images: Mapping[str, ImageRef], render: Callable[[ImageRef], Any]
) -> dict[str, Any]:
    """A copy of ``payload`` with each image reference rendered (one-element lists kept)."""
    out = dict(payload)
    for name, ref in images.items():
        current = out.get(name)
        out[name] = [render(ref)] if isinstance(current, list) else render(ref)
    return out
