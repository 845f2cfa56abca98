"""AF-Net against the shared architecture contract, plus its own blocks and switches."""

import pytest
import torch

import napari_attnseg.models.architectures.afnet  # noqa: F401  (registers "afnet")
from napari_attnseg.models import attention_modules, create_model, focal_weights, prune
from napari_attnseg.models.architectures.afnet import (
    AFNetConfig,
    GlobalChannelGate,
    GlobalFeatureFusion,
    ResNetEncoder,
)
from napari_attnseg.models.blocks.attention import Passthrough
from napari_attnseg.models.blocks.dual_attention import (
    ChannelAttention,
    DualAttention,
    SpatialAttention,
)

from .contract import ArchitectureContract

#: compact: width 8, one BasicBlock per stage
SMALL = {"width": 8, "layers": [1, 1, 1, 1]}


class TestAFNet(ArchitectureContract):
    name = "afnet"
    options = SMALL
    cases = [
        {},
        {"da": False},
        {"mff": False},
        {"gff": False},
        {"attention": "serial"},
        {"focal": 0.0},
        {"focal": 1.0, "da_placement": "stage", "layers": [2, 1, 2, 1]},
        {
            "da_shared_mlp": False,
            "da_mlp_norm": True,
            "spatial_kernel": 3,
            "mff_norm": True,
            "gff_norm": False,
        },
    ]

    def test_attention_positions(self):
        kinds = attention_modules(self.build())
        expected = {}
        for k in range(1, 5):
            expected[f"encoder.layer{k}.0.da.channel"] = "channel"
            expected[f"encoder.layer{k}.0.da.spatial"] = "spatial"
        expected.update({f"fuse.{k}.gate": "channel" for k in range(3)})
        assert kinds == expected

    def test_da_off_builds_no_da_modules(self):
        model = self.build({"da": False})
        assert not any(isinstance(m, DualAttention) for m in model.modules())
        assert list(attention_modules(model)) == [f"fuse.{k}.gate" for k in range(3)]
        assert attention_modules(self.build({"da": False, "gff": False})) == {}

    def test_mff_and_gff_off(self):
        assert not any("centre" in k for k in self.build({"mff": False}).state_dict())
        assert not any(k.startswith("fuse.") for k in self.build({"gff": False}).state_dict())

    def test_placement_block_vs_stage(self):
        layers = {"layers": [2, 1, 3, 1]}
        count = lambda m: sum(isinstance(x, DualAttention) for x in m.modules())  # noqa: E731
        assert count(self.build(layers)) == 7
        stage = self.build({**layers, "da_placement": "stage"})
        assert count(stage) == 4
        assert "encoder.layer3.2.da.channel" in attention_modules(stage)

    def test_serial_and_parallel_differ_with_same_weights(self):
        torch.manual_seed(0)
        parallel = self.build().eval()
        serial = self.build({"attention": "serial"}).eval()
        serial.load_state_dict(parallel.state_dict())
        x = torch.randn(1, 1, 64, 64)
        with torch.no_grad():
            assert not torch.allclose(parallel(x), serial(x))

    def test_prune_one_da_branch_leaves_the_other(self):
        model = self.build({"focal": 1.0})
        with torch.no_grad():
            model.get_submodule("encoder.layer2.0.da.spatial").focal.weight.fill_(0.0)
        pruned = prune(model)
        assert isinstance(pruned.get_submodule("encoder.layer2.0.da.spatial"), Passthrough)
        assert isinstance(pruned.get_submodule("encoder.layer2.0.da.channel"), ChannelAttention)
        assert len(focal_weights(pruned)) == len(focal_weights(model)) - 1

    def test_batch_of_one_with_gff_norm_names_the_option(self):
        model = self.build().train()
        with pytest.raises(ValueError, match="gff_norm"):
            model(torch.randn(1, 1, 64, 64))  # 64 px: layer4 still has 2×2 values per channel
        self.build({"gff_norm": False}).train()(torch.randn(1, 1, 64, 64))


def test_encoder_is_resnet34():
    """Default widths and depths give exactly ResNet34's conv/BN parameter count (no fc)."""
    encoder = ResNetEncoder(3, [64, 128, 256, 512], AFNetConfig(da=False))
    assert sum(p.numel() for p in encoder.parameters()) == 21_284_672
    assert [len(getattr(encoder, f"layer{k}")) for k in range(1, 5)] == [3, 4, 6, 3]
    features = encoder(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in features] == [
        (64, 16, 16),
        (128, 8, 8),
        (256, 4, 4),
        (512, 2, 2),
    ]


def test_size_multiple_is_32():
    model = create_model("afnet", **SMALL)
    assert model.size_multiple == 32
    assert model.padding(33, 64) == (0, 0, 15, 16)


# -- the DA block ---------------------------------------------------------------


def test_branch_coefficients_shapes_and_range():
    x = torch.randn(2, 32, 9, 11)
    channel, spatial = ChannelAttention(32), SpatialAttention(7)
    with torch.no_grad():
        a_c, a_s = channel.coefficients(x), spatial.coefficients(x)
    assert a_c.shape == (2, 32, 1, 1) and a_s.shape == (2, 1, 9, 11)
    for a in (a_c, a_s):
        assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    assert torch.equal(channel.recalibrate(x, a_c), x * a_c)


def test_shared_mlp_is_stored_once():
    assert not any("mlp_max" in k for k in ChannelAttention(32).state_dict())
    assert any("mlp_max" in k for k in ChannelAttention(32, shared_mlp=False).state_dict())


@pytest.mark.parametrize("mode,factor", [("parallel", 2.0), ("serial", 1.0)])
def test_dual_attention_with_unit_maps(mode, factor):
    """Focal w = 0 sets both maps to 1: parallel gives 2F (documented), serial gives F."""
    block = DualAttention(16, mode=mode, focal=0.0).eval()
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        assert torch.allclose(block(x), factor * x)


def test_bad_da_options():
    with pytest.raises(ValueError, match="mode"):
        DualAttention(8, mode="sequential")
    with pytest.raises(ValueError, match="kernel_size"):
        SpatialAttention(4)


# -- the GFF block --------------------------------------------------------------


def test_gff_gate_of_ones_returns_the_multiplied_input():
    fusion = GlobalFeatureFusion(8, AFNetConfig(focal=0.0)).eval()
    high, low = torch.randn(2, 8, 6, 6), torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        assert torch.allclose(fusion(high, low), fusion.low(low) + high)
    gate = GlobalChannelGate(8)
    assert gate.coefficients(low, high).shape == (2, 8, 1, 1)


@pytest.mark.parametrize(
    "bad",
    [
        {"layers": [1, 1, 1]},
        {"width": 0},
        {"attention": "sequential"},
        {"da_placement": "unit"},
        {"spatial_kernel": 4},
        {"focal": -1.0},
        {"colour": 1},
    ],
)
def test_bad_options_name_the_problem(bad):
    key = next(iter(bad))
    with pytest.raises(ValueError, match=key if key != "colour" else "unknown option"):
        create_model("afnet", **bad)
