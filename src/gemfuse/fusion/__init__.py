"""Fusion: one prompt through a pool of models, one answer from a judge or a vote, with a full trace."""

from typing import TYPE_CHECKING

from .._lazy import lazy_face

lazy_face(__name__, {
    "afuse": ".api", "FusionError": ".engine", "QuorumError": ".engine", "FusionPreset": ".preset",
    "Member": ".preset", "FusionResult": ".trace",
})

if TYPE_CHECKING:
    from .api import afuse
    from .engine import FusionError, QuorumError
    from .preset import FusionPreset, Member
    from .trace import FusionResult

__all__ = ["FusionError", "FusionPreset", "FusionResult", "Member", "QuorumError", "afuse"]
