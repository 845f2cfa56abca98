"""Building blocks shared by the architectures (attention modules first)."""

from .attention import AttentionModule, Passthrough
from .focal import FocalLayer, clamp_focal_weights
from .gate import AttentionGate, SigmoidGate
from .se import SqueezeExcitation

__all__ = [
    "AttentionGate",
    "AttentionModule",
    "FocalLayer",
    "Passthrough",
    "SigmoidGate",
    "SqueezeExcitation",
    "clamp_focal_weights",
]
