"""Fusion: one prompt through a pool of models, one answer from a judge or a vote, with a full trace."""

from .api import afuse
from .engine import FusionError, QuorumError
from .preset import FusionPreset, Member
from .trace import FusionResult

__all__ = ["FusionError", "FusionPreset", "FusionResult", "Member", "QuorumError", "afuse"]
