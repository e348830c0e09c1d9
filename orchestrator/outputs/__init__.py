"""Where results land: output paths (and, in later issues, sidecars, exports, reports)."""

from __future__ import annotations
