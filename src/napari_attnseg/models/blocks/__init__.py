"""Building blocks shared by the architectures (attention modules first)."""

from .attention import AttentionModule, Passthrough
from .dual_attention import ChannelAttention, DualAttention, SpatialAttention
from .focal import FocalLayer, clamp_focal_weights
from .gate import AttentionGate, SigmoidGate
from .joint import JointAttention, PointwiseAttention, SelfAttention
from .se import SqueezeExcitation

__all__ = [
    "AttentionGate",
    "AttentionModule",
    "ChannelAttention",
    "DualAttention",
    "FocalLayer",
    "JointAttention",
    "Passthrough",
    "PointwiseAttention",
    "SelfAttention",
    "SigmoidGate",
    "SpatialAttention",
    "SqueezeExcitation",
    "clamp_focal_weights",
]
