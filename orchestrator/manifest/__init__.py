"""Manifests: safe YAML in, concrete jobs out.

:func:`load_manifest` reads a manifest (:func:`expand_manifest` takes its content as a
mapping), checks every field against the model catalog and every local image against the
model's rules, and expands defaults, matrices, globs and repeats into :class:`JobSpec`
objects with deterministic keys and output paths.
"""

from __future__ import annotations

from orchestrator.manifest.expand import Expansion as Expansion
from orchestrator.manifest.expand import expand_manifest as expand_manifest
from orchestrator.manifest.expand import load_manifest as load_manifest
from orchestrator.manifest.keys import canonical_json as canonical_json
from orchestrator.manifest.keys import job_key as job_key
from orchestrator.manifest.model import IMAGE_MARKER as IMAGE_MARKER
from orchestrator.manifest.model import BatchSettings as BatchSettings
from orchestrator.manifest.model import ImageRef as ImageRef
from orchestrator.manifest.model import JobSpec as JobSpec
from orchestrator.manifest.model import Limits as Limits
from orchestrator.manifest.model import OutputSpec as OutputSpec
from orchestrator.manifest.model import RetryPolicy as RetryPolicy
