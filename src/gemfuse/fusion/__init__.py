"""Fusion: one prompt through a pool of models, one answer from a judge or a vote, with a full trace."""

from .api import FusionResult, afuse
from .engine import FusionError, QuorumError
from .preset import FusionPreset, Member

__all__ = ["FusionError", "FusionPreset", "FusionResult", "Member", "QuorumError", "afuse"]
