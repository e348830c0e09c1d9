"""Why an image cannot be used (or a downloaded video kept), in words a user can act on.

Every error carries a short human ``reason`` and, when known, the ``path`` it is about::

    >>> str(NotAnImage("not an image (Pillow could not identify the format)", "a.png"))
    'a.png: not an image (Pillow could not identify the format)'
"""

from __future__ import annotations


class ImageError(Exception):
    """Base class: an input image that cannot be read, checked or encoded."""

    def __init__(self, reason: str, path: str | None = None) -> None:
        # Both go to ``args`` so the error survives pickling (process pools, queues).
        super().__init__(reason, path)
        self.reason = reason
        self.path = path

    def __str__(self) -> str:
        # A reason that already names the file is not prefixed with it a second time.
        if self.path is None or self.path in self.reason:
            return self.reason
        return f"{self.path}: {self.reason}"


class ImageNotFound(ImageError):
    """No file at that path."""


class ImageUnreadable(ImageError):
    """The file exists but cannot be read (permissions, a directory, an I/O error)."""


class NotAnImage(ImageError):
    """Pillow cannot identify the file, or it is truncated or corrupt."""


class ImageChanged(ImageError):
    """The file's bytes differ from the hash recorded when the job was enqueued."""


class BreaksRules(ImageError):
    """The image breaks a model's size or aspect rules and no ``image_fit`` was asked for."""


class CannotFit(ImageError):
    """The requested ``image_fit`` mode cannot bring the image within a model's rules."""


class TooLarge(ImageError):
    """The image cannot be made small enough (bytes or pixels) within the model's rules."""


class BrokenVideo(Exception):
    """A video file that is not playable to its end: not a video, no frame, or cut short.

    Not an :class:`ImageError`: it is about an output RunComfy made, never a user's input.
    """
