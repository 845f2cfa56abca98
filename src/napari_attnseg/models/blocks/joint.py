"""Point-wise attention, self-attention and their 9 joint arrangements (Zhang et al., ISBI 2022).

Zhang, Dong & Li (ISBI 2022) write both spatial attentions as one
aggregation formula and combine them into a *joint attention* module.

* :class:`PointwiseAttention` (PWA, §2.1, eqs. 2-4): ``P(u) = u ⊙ σ(conv3×3(u))``
  with one 3×3 conv (C -> 1, bias). The paper does not name the activation;
  sigmoid is the usual choice (CBAM/BAM/Attention U-Net). Its map may go
  through a Focal layer, like every other sigmoid gate in this package.
* :class:`SelfAttention` (SA, §2.1, eq. 5, with the weights of §2.2): the
  dot-product non-local block *without* softmax, ``f_ij = θ(x_i)ᵀφ(x_j) / N``,
  ``y_i = Σ_j f_ij g(x_j)``, ``S(x) = W_z y`` (the residual ``x +`` is added by
  the caller). θ, φ, g are 1×1 convs to C/2 channels; ``W_z`` is 1×1 conv + BN
  with the BN weight and bias initialised to 0, so ``S(x) = 0`` at
  initialisation (Wang et al.). Because there is no softmax,
  ``y = θ·((φᵀg)/N)`` exactly: the C/2×C/2 product is formed first, so time is
  O(N·C²) and memory is linear in N — a 128×128 skip costs no N×N matrix.
* :class:`JointAttention` (§2.2, Fig. 2): SA and PWA arranged in one of the
  paper's 9 structures (3 arrangements × 3 places for the SA shortcut; the
  figure itself is not available, so the exact wiring below is inferred).
  ``x`` is the skip feature, ``S`` and ``P`` as above:

  ====  ===========================  ==========================================
  no.   arrangement / SA shortcut    output
  ====  ===========================  ==========================================
  1     parallel / inside PWA        ``(x + S(x)) ⊙ σ(conv3×3(x))``
  2     parallel / outside PWA       ``x + S(x) + P(x)``
  3     parallel / own PWA shortcut  ``[x + S(x)] + [x + P(x)]``
  4     SA first / inside PWA        ``P(x + S(x))``
  5     SA first / outside PWA       ``x + P(S(x))``
  6     SA first / own PWA shortcut  ``u + P(u)``, ``u = x + S(x)``
  7     PWA first / inside PWA       ``v + S(v)``, ``v = P(x)``
  8     PWA first / outside PWA      ``x + S(P(x))``
  9     PWA first / own PWA shortcut ``v + S(v)``, ``v = x + P(x)``
  ====  ===========================  ==========================================

  ``structure="sa"`` (``x + S(x)``, the plain non-local block) and
  ``structure="pwa"`` (``P(x)``) are the single-module ablations
  (DenseUNet-SA / DenseUNet-PWA), built by the same class so that module
  names (``….pwa``, ``….sa``) are the same in every variant.

Why structure 1 is the default (the paper's best is in its unavailable
supplement): in structures 1, 4 and 7 the module *is* the PWA ablation at
initialisation (``S = 0``) and *is* the SA ablation once its PWA is switched
off (Focal ``w = 0`` or pruned: ``P(u) = u``); no other structure has both
properties (with PWA off, 2, 3, 6, 9 give 2x or 3x plus an SA term; 5 and 8
start as the identity and their PWA gets no gradient until ``S ≠ 0``). Among
those three, 1 computes both maps from the same skip feature, so each map
reads as it would in its own ablation.

Attention maps (for ``capture_attention``): PWA records its sigmoid
coefficients (after Focal). SA is not a gate, so it records a *response map*
instead: the channel mean of ``|S(x)|``, min–max normalised per image into
[0, 1] (a constant map, e.g. ``S = 0`` at initialisation, records as zeros).
It shows where self-attention changes the feature most, not a weight.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import AttentionModule

#: valid ``JointAttention`` structures: the 9 joint ones plus the two single modules
STRUCTURES = (1, 2, 3, 4, 5, 6, 7, 8, 9, "sa", "pwa")


class PointwiseAttention(AttentionModule):
    """PWA: ``u * σ(conv3×3(guide))``, ``guide = u`` unless given (structure 1)."""

    kind = "spatial"

    def __init__(self, channels: int, *, focal: float | None = None) -> None:
        super().__init__(focal)
        self.conv = nn.Conv2d(channels, 1, 3, padding=1, bias=True)

    def coefficients(self, x: torch.Tensor, guide: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self.conv(x if guide is None else guide))


class SelfAttention(AttentionModule):
    """Dot-product non-local term ``S(x) = W_z(θ·(φᵀg)/N)``, without the residual.

    Not a multiplicative gate: :meth:`forward` returns the additive term, so the
    module cannot be pruned to a pass-through (``prunable = False``) and has no
    Focal layer (which modulates sigmoid coefficients only).
    """

    kind = "spatial"
    prunable = False

    def __init__(
        self, channels: int, inter_channels: int | None = None, *, focal: float | None = None
    ) -> None:
        if focal is not None:
            raise ValueError(
                f"focal={focal!r}: self-attention has no sigmoid coefficients, "
                "the Focal layer applies to point-wise attention only"
            )
        super().__init__(None)
        inter = inter_channels or max(1, channels // 2)
        self.theta = nn.Conv2d(channels, inter, 1)
        self.phi = nn.Conv2d(channels, inter, 1)
        self.g = nn.Conv2d(channels, inter, 1)
        self.wz = nn.Sequential(nn.Conv2d(inter, channels, 1, bias=False), nn.BatchNorm2d(channels))
        nn.init.zeros_(self.wz[1].weight)
        nn.init.zeros_(self.wz[1].bias)

    def aggregate(self, x: torch.Tensor) -> torch.Tensor:
        """``y_i = Σ_j (θ_iᵀφ_j / N) g_j`` computed as ``θ·((φᵀg)/N)`` (exact, linear memory)."""
        n, _, h, w = x.shape
        positions = h * w
        theta = self.theta(x).flatten(2)  # (n, c', N)
        phi = self.phi(x).flatten(2) / positions  # scale first: no large sums in fp16
        g = self.g(x).flatten(2)
        context = torch.bmm(phi, g.transpose(1, 2))  # (n, c', c'): Σ_j φ_cj g_dj / N
        y = torch.bmm(context.transpose(1, 2), theta)  # (n, c', N): Σ_c θ_ci · context_cd
        return y.view(n, -1, h, w)

    def term(self, x: torch.Tensor) -> torch.Tensor:
        return self.wz(self.aggregate(x))

    @staticmethod
    def response_map(term: torch.Tensor) -> torch.Tensor:
        """Channel-mean ``|S(x)|``, min–max normalised per image: (N, 1, h, w) in [0, 1]."""
        m = term.detach().float().abs().mean(dim=1, keepdim=True)
        low = m.amin(dim=(2, 3), keepdim=True)
        span = m.amax(dim=(2, 3), keepdim=True) - low
        return (m - low) / span.clamp_min(1e-12)

    def coefficients(self, x: torch.Tensor) -> torch.Tensor:
        return self.response_map(self.term(x))

    def as_map(self, tapped: torch.Tensor) -> torch.Tensor:
        return self.response_map(tapped)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the additive term is tapped; its response map is computed only when someone looks
        return self.tap(self.term(x))


class JointAttention(nn.Module):
    """SA and PWA combined in one of the 9 structures of the paper's §2.2 (or alone: "sa", "pwa").

    Submodules are ``pwa`` and/or ``sa``; a pruned ``pwa`` becomes a
    :class:`Passthrough` (``P(u) = u``) and every structure still runs.
    """

    def __init__(
        self,
        channels: int,
        structure: int | str = 1,
        *,
        focal: float | None = None,
        inter_channels: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(structure, bool) or structure not in STRUCTURES:
            raise ValueError(f"structure must be one of {STRUCTURES}, got {structure!r}")
        if structure == "sa" and focal is not None:
            raise ValueError(f"focal={focal!r} needs point-wise attention; structure 'sa' has none")
        self.structure = structure
        if structure != "sa":
            self.pwa = PointwiseAttention(channels, focal=focal)
        if structure != "pwa":
            self.sa = SelfAttention(channels, inter_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.structure
        if k == "pwa":
            return self.pwa(x)
        sa = self.sa
        if k == "sa":
            return x + sa(x)
        pwa = self.pwa
        if k == 1:
            return pwa(x + sa(x), x)  # map from x, applied to the non-local output
        if k == 2:
            return x + sa(x) + pwa(x)
        if k == 3:
            return (x + sa(x)) + (x + pwa(x))
        if k == 4:
            return pwa(x + sa(x))
        if k == 5:
            return x + pwa(sa(x))
        if k == 6:
            u = x + sa(x)
            return u + pwa(u)
        if k == 7:
            v = pwa(x)
            return v + sa(v)
        if k == 8:
            return x + sa(pwa(x))
        v = x + pwa(x)  # k == 9
        return v + sa(v)

    def extra_repr(self) -> str:
        return f"structure={self.structure}"


__all__ = [
    "STRUCTURES",
    "JointAttention",
    "PointwiseAttention",
    "SelfAttention",
]
