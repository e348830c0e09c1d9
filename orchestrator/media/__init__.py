"""Local input images: check them against a model's rules and send them as data URIs.

``rules`` parses a schema's image ``validations``; ``probe`` reads an image's header, displayed
size and sha256 (cached per unchanged file); ``fit`` plans a resize, pad or crop into the
rules' limits as pure geometry; ``encode`` re-checks the hash at submit time and builds the
``data:`` URI, re-encoding as PNG/JPEG only when the original cannot be sent as it is.
``video`` (imported on its own: it loads PyAV) reads a downloaded video to its end before it
is kept.
"""

from __future__ import annotations

from orchestrator.media.encode import DEFAULT_MAX_BYTES as DEFAULT_MAX_BYTES
from orchestrator.media.encode import EncodedImage as EncodedImage
from orchestrator.media.encode import encode_image as encode_image
from orchestrator.media.errors import BreaksRules as BreaksRules
from orchestrator.media.errors import CannotFit as CannotFit
from orchestrator.media.errors import ImageChanged as ImageChanged
from orchestrator.media.errors import ImageError as ImageError
from orchestrator.media.errors import ImageNotFound as ImageNotFound
from orchestrator.media.errors import ImageUnreadable as ImageUnreadable
from orchestrator.media.errors import NotAnImage as NotAnImage
from orchestrator.media.errors import TooLarge as TooLarge
from orchestrator.media.fit import FIT_MODES as FIT_MODES
from orchestrator.media.fit import FitMode as FitMode
from orchestrator.media.fit import FitPlan as FitPlan
from orchestrator.media.fit import plan_fit as plan_fit
from orchestrator.media.probe import ImageInfo as ImageInfo
from orchestrator.media.probe import ProbeCache as ProbeCache
from orchestrator.media.probe import check_image as check_image
from orchestrator.media.probe import format_problem as format_problem
from orchestrator.media.probe import probe_bytes as probe_bytes
from orchestrator.media.probe import probe_image as probe_image
from orchestrator.media.rules import ImageLimits as ImageLimits
from orchestrator.media.rules import ImageRule as ImageRule
from orchestrator.media.rules import parse_rules as parse_rules
from orchestrator.media.rules import violations as violations
