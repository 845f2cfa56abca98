"""Small building blocks chosen by name, so variants are configuration.

``norm_layer("batch" | "instance" | "none", C)`` and ``activation("relu" |
"leaky_relu" | "none")`` follow MONAI's habit of naming layers instead of
copying blocks. BatchNorm defaults follow PyTorch; callers that port Keras
models pass ``momentum=0.01, eps=1e-3`` (Keras' momentum 0.99 and eps 1e-3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("batch", "instance", "none")
ACTIVATIONS = ("relu", "leaky_relu", "none")


class InstanceNorm2d(nn.InstanceNorm2d):
    """Affine instance norm computed as a group norm with one channel per group.

    The same function and parameters as ``nn.InstanceNorm2d(C, affine=True)``
    (identical state dict, so saved models load unchanged), but PyTorch's CPU
    group-norm kernel is 2–3× faster than the instance-norm path (which
    reshapes to a batch norm over N·C channels and repeats the affine
    parameters) and keeps channels-last inputs channels-last (measured by
    ``attnseg bench``; see docs/benchmarks.md). Running statistics are not
    supported (the project never tracks them for instance norm).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.track_running_stats or x.dim() != 4:
            return super().forward(x)
        return F.group_norm(x, self.num_features, self.weight, self.bias, self.eps)


def norm_layer(kind: str, channels: int, **kwargs) -> nn.Module:
    """A 2D normalisation layer by name (instance norm is affine, as tfa's)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels, **kwargs)
    if kind == "instance":
        kwargs.pop("momentum", None)
        return InstanceNorm2d(channels, affine=True, **kwargs)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose one of {NORMS}")


def activation(kind: str, negative_slope: float = 0.01) -> nn.Module:
    """An activation by name."""
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "leaky_relu":
        return nn.LeakyReLU(negative_slope, inplace=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown activation {kind!r}; choose one of {ACTIVATIONS}")


class ConvNormAct(nn.Sequential):
    """conv k×k -> norm -> activation, or conv -> activation -> norm.

    ``order="cna"`` is the usual conv-norm-act; ``order="can"`` is the
    conv -> ReLU -> InstanceNorm order of mlyg's MIScnn U-Net (the backbone of
    Yeung et al., ISBI 2022).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        dilation: int = 1,
        norm: str = "batch",
        act: str = "relu",
        order: str = "cna",
        bias: bool | None = None,
    ) -> None:
        if order not in ("cna", "can"):
            raise ValueError(f"order must be 'cna' or 'can', got {order!r}")
        padding = dilation * (kernel_size - 1) // 2
        if bias is None:
            bias = norm == "none" or order == "can"
        conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            bias=bias,
        )
        layers = [conv, norm_layer(norm, out_channels), activation(act)]
        if order == "can":
            layers = [conv, activation(act), norm_layer(norm, out_channels)]
        super().__init__(*layers)


def init_weights(module: nn.Module, scheme: str = "xavier") -> None:
    """Initialise conv / linear weights (Keras glorot_uniform or he_normal)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            if scheme == "xavier":
                nn.init.xavier_uniform_(m.weight)
            elif scheme == "kaiming":
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            else:
                raise ValueError(f"unknown init scheme {scheme!r}")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
