"""DenseUNet with self-, point-wise and joint attention (Zhang, Dong & Li, ISBI 2022, §2)."""

import pytest
import torch
import torch.nn.functional as F

import napari_attnseg.models.architectures.denseunet  # noqa: F401  (registers denseunet*)
from napari_attnseg.models import attention_modules, capture_attention, create_model, get_entry
from napari_attnseg.models.architectures.denseunet import DENSENET161, DenseUNetConfig
from napari_attnseg.models.blocks.joint import JointAttention, PointwiseAttention, SelfAttention
from napari_attnseg.models.introspection import disable_attention

from .contract import ArchitectureContract

TINY = {"growth_rate": 4, "block_layers": [1, 1, 1, 1], "init_features": 8}


class TestDenseUNet(ArchitectureContract):
    name = "denseunet"
    options = TINY
    cases = [
        {},  # joint attention, structure 1
        {"attention": "none"},
        {"attention": "sa"},
        {"attention": "pwa"},
        {"attention": "pwa", "focal": 1.0},
        {"attention": "pwa", "focal": 0.0},
        *({"ja_structure": k} for k in range(2, 10)),
        {"focal": 1.0},
        {"focal": 0.0},
        {"ja_structure": 5, "focal": 1.0},
        {"ja_structure": 9, "focal": 0.0},
        {"decoder_widths": [12, 8, 8, 4, 4], "upsample": "bilinear"},
    ]

    def test_module_names(self):
        for attention, kinds in (("none", ()), ("sa", ("sa",)), ("pwa", ("pwa",))):
            names = set(attention_modules(self.build({"attention": attention})))
            assert names == {f"skips.{i}.{k}" for i in range(4) for k in kinds}
        names = list(attention_modules(self.build()))
        assert names == [f"skips.{i}.{k}" for i in range(4) for k in ("pwa", "sa")]


# -- self-attention ----------------------------------------------------------------


def _randomise_wz(module: torch.nn.Module) -> None:
    """Give every SA's zero-initialised W_z batch norm non-zero weights, so S(x) != 0."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, SelfAttention):
                m.wz[1].weight.normal_()
                m.wz[1].bias.normal_()


def naive_term(sa: SelfAttention, x: torch.Tensor) -> torch.Tensor:
    """S(x) with the explicit N×N affinity f_ij = θ_iᵀφ_j / N."""
    n, _, h, w = x.shape
    theta, phi, g = (conv(x).flatten(2) for conv in (sa.theta, sa.phi, sa.g))
    f = theta.transpose(1, 2) @ phi / (h * w)  # (n, N, N)
    y = g @ f.transpose(1, 2)  # y_i = Σ_j f_ij g_j
    return sa.wz(y.view(n, -1, h, w))


def naive_pwa(pwa: PointwiseAttention, u: torch.Tensor, guide: torch.Tensor | None = None):
    guide = u if guide is None else guide
    a = torch.sigmoid(F.conv2d(guide, pwa.conv.weight, pwa.conv.bias, padding=1))
    if pwa.focal is not None:
        a = a.clamp(1e-7, 1).pow(pwa.focal.weight)
    return u * a


def test_efficient_self_attention_equals_naive():
    sa = SelfAttention(6).double().eval()
    _randomise_wz(sa)
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    assert torch.allclose(sa(x), naive_term(sa, x), atol=1e-12)


def test_self_attention_memory_is_linear():
    # 256×256 positions: an N×N affinity would need 17 GB; θ·(φᵀg)/N needs a few MB
    sa = SelfAttention(4).eval()
    with torch.no_grad():
        assert sa(torch.randn(1, 4, 256, 256)).shape == (1, 4, 256, 256)


def test_self_attention_starts_as_zero_term():
    sa = SelfAttention(8)
    x = torch.randn(2, 8, 6, 6)
    assert torch.equal(sa.train()(x), torch.zeros_like(x))
    assert torch.equal(sa.eval()(x), torch.zeros_like(x))


def test_fresh_sa_model_equals_plain_model():
    """W_z's BN starts at 0, so DenseUNet-SA is exactly DenseUNet until it trains."""
    plain = create_model("denseunet", **TINY, attention="none")
    with_sa = create_model("denseunet", **TINY, attention="sa")
    missing, unexpected = with_sa.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("skips.") for k in missing)
    x = torch.randn(2, 1, 64, 64)
    for mode in ("train", "eval"):
        getattr(plain, mode)(), getattr(with_sa, mode)()
        outputs = []
        for model in (plain, with_sa):
            torch.manual_seed(1)  # the same dropout mask in train mode
            outputs.append(model(x))
        assert torch.equal(*outputs), mode


def test_self_attention_rejects_focal():
    with pytest.raises(ValueError, match="focal"):
        SelfAttention(8, focal=1.0)
    with pytest.raises(ValueError, match="focal"):
        JointAttention(8, "sa", focal=1.0)
    for attention in ("sa", "none"):
        with pytest.raises(ValueError, match="focal"):
            create_model("denseunet", **TINY, attention=attention, focal=1.0)


def test_self_attention_cannot_be_pruned():
    model = create_model("denseunet", **TINY, focal=1.0)
    with pytest.raises(ValueError, match="cannot be pruned"):
        disable_attention(model, ["skips.0.sa"])


def test_self_attention_map_is_normalised_response():
    model = create_model("denseunet", **TINY, attention="sa")
    x = torch.randn(2, 1, 64, 64)
    fresh = capture_attention(model, x, native=True)
    assert all(torch.equal(a, torch.zeros_like(a)) for a in fresh.values())  # S = 0
    _randomise_wz(model)
    for name, a in capture_attention(model, x, native=True).items():
        assert torch.allclose(a.amin(dim=(1, 2, 3)), torch.zeros(2)), name
        assert torch.allclose(a.amax(dim=(1, 2, 3)), torch.ones(2)), name


# -- joint attention -------------------------------------------------------------


def expected_output(ja: JointAttention, x: torch.Tensor) -> torch.Tensor:
    """The formula of ``ja.structure`` (Zhang, Dong & Li, ISBI 2022, §2.2), from naive S and P."""

    def S(u):
        return naive_term(ja.sa, u)

    def P(u, guide=None):
        return naive_pwa(ja.pwa, u, guide)

    k = ja.structure
    if k == 1:
        gate = torch.sigmoid(F.conv2d(x, ja.pwa.conv.weight, ja.pwa.conv.bias, padding=1))
        return (x + S(x)) * gate  # the map comes from x, not from x + S(x)
    if k == 2:
        return x + S(x) + P(x)
    if k == 3:
        return (x + S(x)) + (x + P(x))
    if k == 4:
        return P(x + S(x))
    if k == 5:
        return x + P(S(x))
    if k == 6:
        return (x + S(x)) + P(x + S(x))
    if k == 7:
        return P(x) + S(P(x))
    if k == 8:
        return x + S(P(x))
    return (x + P(x)) + S(x + P(x))


@pytest.mark.parametrize("structure", range(1, 10))
def test_each_structure_computes_its_formula(structure):
    ja = JointAttention(6, structure).double().eval()
    _randomise_wz(ja)
    x = torch.randn(2, 6, 5, 4, dtype=torch.float64)
    assert torch.allclose(ja(x), expected_output(ja, x), atol=1e-10)


def _copy_pwa(ja: JointAttention) -> JointAttention:
    alone = JointAttention(6, "pwa")
    alone.pwa.load_state_dict(ja.pwa.state_dict())
    return alone


@pytest.mark.parametrize("structure", range(1, 10))
def test_fresh_structures(structure):
    """At initialisation (S = 0): 1, 4, 7 are the PWA block, 5, 8 the identity."""
    ja = JointAttention(6, structure).eval()
    x = torch.randn(2, 6, 8, 8)
    with torch.no_grad():
        y, pwa_alone = ja(x), _copy_pwa(ja)(x)
    if structure in (1, 4, 7):
        assert torch.allclose(y, pwa_alone)
    elif structure in (5, 8):
        assert torch.allclose(y, x)
    else:  # 2, 3, 6, 9 add a second copy of x or of P(x)
        assert not torch.allclose(y, pwa_alone) and not torch.allclose(y, x)


@pytest.mark.parametrize("structure", [1, 4, 7])
def test_pwa_off_leaves_the_non_local_block(structure):
    """Focal w = 0 (or pruning) turns structures 1, 4, 7 into x + S(x)."""
    ja = JointAttention(6, structure, focal=0.0).eval()
    _randomise_wz(ja)
    x = torch.randn(2, 6, 8, 8)
    with torch.no_grad():
        assert torch.allclose(ja(x), x + ja.sa(x), atol=1e-6)


def test_pruned_pwa_still_runs_every_structure():
    x = torch.randn(1, 1, 40, 40)
    for k in range(1, 10):
        model = create_model("denseunet", **TINY, ja_structure=k, focal=1.0, pruned=["skips.1.pwa"])
        assert "skips.1.pwa" not in attention_modules(model)
        assert model.eval()(x).shape == (1, 1, 40, 40)


# -- configuration ------------------------------------------------------------------


def test_densenet161_preset_matches_h_denseunet():
    cfg = DenseUNetConfig(**DENSENET161)
    assert cfg.skip_channels() == [96, 384, 768, 2112, 2208]
    assert cfg.resolved_decoder_widths() == [768, 384, 96, 96, 64]
    auto = DenseUNetConfig(**{**DENSENET161, "decoder_widths": None})
    assert auto.resolved_decoder_widths() == [768, 384, 96, 96, 64]
    assert get_entry("denseunet161").options()["growth_rate"] == 48


def test_compact_default():
    model = create_model("denseunet", in_channels=3)
    assert model.config["attention"] == "ja" and model.size_multiple == 32
    assert DenseUNetConfig().resolved_decoder_widths() == [144, 96, 32, 32, 24]
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    # only s3 (200 channels) meets a decoder feature of another width (196)
    projections = [type(stage.project).__name__ for stage in model.decoder]
    assert projections == ["Conv2d", "Identity", "Identity", "Identity", "Identity"]


@pytest.mark.parametrize(
    "bad",
    [
        {"attention": "both"},
        {"ja_structure": 10},
        {"ja_structure": True},
        {"ja_structure": 2.0},
        {"block_layers": [1, 2, 3]},
        {"growth_rate": 0},
        {"decoder_widths": [8, 8]},
        {"dropout": 1.0},
        {"upsample": "cubic"},
        {"focal": -1.0},
    ],
)
def test_bad_options_name_the_problem(bad):
    key = next(iter(bad))
    with pytest.raises(ValueError, match=key):
        create_model("denseunet", **{**TINY, **bad})
