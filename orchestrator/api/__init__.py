"""Talking to RunComfy's Model API.

:class:`RunComfyClient` is the async client; every failure it raises is one of the kinds
in :mod:`orchestrator.api.errors`. :func:`build_request_payload` turns a stored payload,
whose images are path + hash references, into the JSON body a submit sends.
"""

from __future__ import annotations

from orchestrator.api.client import RunComfyClient as RunComfyClient
from orchestrator.api.errors import AmbiguousSubmission as AmbiguousSubmission
from orchestrator.api.errors import AuthError as AuthError
from orchestrator.api.errors import InsufficientBalance as InsufficientBalance
from orchestrator.api.errors import PermanentError as PermanentError
from orchestrator.api.errors import RateLimited as RateLimited
from orchestrator.api.errors import RequestNotFound as RequestNotFound
from orchestrator.api.errors import RunComfyError as RunComfyError
from orchestrator.api.errors import TransientError as TransientError
from orchestrator.api.errors import UnknownModel as UnknownModel
from orchestrator.api.errors import WrongRequest as WrongRequest
from orchestrator.api.payload import build_request_payload as build_request_payload
from orchestrator.api.responses import CancelReply as CancelReply
from orchestrator.api.responses import ModelInfo as ModelInfo
from orchestrator.api.responses import RemoteResult as RemoteResult
from orchestrator.api.responses import RemoteStatus as RemoteStatus
from orchestrator.api.responses import Submitted as Submitted
from orchestrator.defaults import DEFAULT_API_BASE as DEFAULT_API_BASE
