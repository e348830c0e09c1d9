"""Talking to RunComfy's Model API (the client arrives with the engine issue).

For now: :func:`build_request_payload` turns a stored payload, whose images are path +
hash references, into the JSON body a submit sends, with each image as a ``data:`` URI.
"""

from __future__ import annotations

from orchestrator.api.payload import build_request_payload as build_request_payload
