"""FocusNet against the shared architecture contract, plus its own topology checks."""

import pytest
import torch
from torch import nn

import napari_attnseg.models.architectures.focusnet  # noqa: F401  (registers "focusnet")
from napari_attnseg.models import (
    attention_modules,
    capture_attention,
    count_parameters,
    create_model,
    focal_weights,
)
from napari_attnseg.models.architectures.focusnet import ResidualBlock
from napari_attnseg.models.blocks.gate import SigmoidGate

from .contract import ArchitectureContract

SMALL = {"width_multiplier": 0.125}
LEVELS = ("level1", "level2", "level3")
EXPECTED_ATTENTION = {
    **{
        f"main.{level}.{part}": kind
        for level in LEVELS
        for part, kind in (("se1", "channel"), ("gate", "spatial"), ("se2", "channel"))
    },
    "main.level4.se1": "channel",
}
#: residual blocks: attention 6 + 3 (d5..d7), main encoder 8, main decoder 3 + 3 (u4)
N_RESIDUAL_BLOCKS = 23


class TestFocusNet(ArchitectureContract):
    name = "focusnet"
    options = SMALL
    cases = [
        {},
        {"dropout_mode": "paper"},
        {"focal": 1.0},
        {"focal": 0.0, "dropout": 0.0},
    ]

    def test_seven_se_blocks_and_three_gates(self):
        assert attention_modules(self.build()) == EXPECTED_ATTENTION

    def test_focal_reaches_se_blocks_and_gates(self):
        assert set(focal_weights(self.build({"focal": 1.0}))) == set(EXPECTED_ATTENTION)
        assert focal_weights(self.build()) == {}

    def test_gates_are_per_channel_spatial_maps_at_their_scale(self):
        model = self.build().eval()
        gates = {f"main.{lv}.gate": model.get_submodule(f"main.{lv}.gate") for lv in LEVELS}
        seen = {}
        for name, gate in gates.items():
            assert isinstance(gate, SigmoidGate) and gate.kind == "spatial"
            gate.tap.register_forward_hook(lambda m, i, out, name=name: seen.update({name: out}))
        with torch.no_grad():
            model(torch.randn(1, 1, 64, 64))
        for i, name in enumerate(gates):
            channels = model.get_submodule(name.replace("gate", "block")).conv2.out_channels
            assert seen[name].shape == (1, channels, 64 >> i, 64 >> i), name
        native = capture_attention(model, torch.randn(1, 1, 64, 64), native=True)
        assert [native[name].shape[-1] for name in gates] == [64, 32, 16]

    def test_paper_width_parameter_count(self):
        model = create_model("focusnet", in_channels=1, n_classes=1)
        # 4.11 M attention branch + 11.57 M main encoder + 3.24 M decoder + head
        assert 18.5e6 < count_parameters(model) < 19.5e6
        assert model.main.level4.block.conv2.out_channels == 512
        assert model.attention.d7.blocks[-1].conv2.out_channels == 64

    def test_width_multiplier_scales_channels_with_a_floor(self):
        model = self.build({"width_multiplier": 0.25})
        assert model.attention.stem[0].out_channels == 8
        assert model.main.stem[0].out_channels == 16
        assert model.main.level4.block.conv2.out_channels == 128
        assert [b.conv2.out_channels for b in model.decoder.u4.blocks] == [8, 4, 4]

    def test_many_classes_widen_the_last_block(self):
        model = self.build(n_classes=6).eval()
        assert model.decoder.u4.blocks[-1].conv2.out_channels == 6
        with torch.no_grad():
            assert model(torch.randn(1, 1, 32, 32)).shape == (1, 6, 32, 32)

    def test_dropout_modes(self):
        def count(model, kind):
            return sum(type(m) is kind for m in model.modules())

        code = self.build()
        assert count(code, nn.Dropout) == 1 and count(code, nn.Dropout2d) == 0
        assert isinstance(code.attention.dropout, nn.Dropout)
        paper = self.build({"dropout_mode": "paper"})
        assert count(paper, nn.Dropout) == 0
        assert count(paper, nn.Dropout2d) == N_RESIDUAL_BLOCKS - 1
        assert isinstance(paper.decoder.u4.blocks[-1].dropout, nn.Identity)
        off = self.build({"dropout_mode": "paper", "dropout": 0.0})
        assert count(off, nn.Dropout) + count(off, nn.Dropout2d) == 0
        # the dropout mode changes no weight: checkpoints are interchangeable
        assert code.state_dict().keys() == paper.state_dict().keys()

    def test_residual_block_quirks(self):
        plain = ResidualBlock(8, 8)
        assert isinstance(plain.preact, nn.Identity) and isinstance(plain.shortcut, nn.Identity)
        down = ResidualBlock(8, 16, stride=2)
        assert isinstance(down.preact[0], nn.BatchNorm2d)
        assert isinstance(down.shortcut, nn.Conv2d) and down.shortcut.stride == (2, 2)
        assert down.shortcut.kernel_size == (1, 1)
        assert down(torch.randn(1, 8, 16, 16)).shape == (1, 16, 8, 8)

    def test_keras_batchnorm_and_leaky_relu(self):
        model = self.build()
        norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        assert norms and all(m.momentum == 0.01 and m.eps == 1e-3 for m in norms)
        assert model.attention.stem[2].negative_slope == 0.3

    def test_head_returns_logits(self):
        model = self.build().eval()
        with torch.no_grad():
            y = model(torch.randn(1, 1, 32, 32) * 10)
        assert isinstance(model.head, nn.Conv2d) and model.head.kernel_size == (1, 1)
        assert float(y.min()) < 0.0 or float(y.max()) > 1.0


@pytest.mark.parametrize(
    "bad",
    [
        {"width_multiplier": 0},
        {"dropout_mode": "everywhere"},
        {"dropout": 1.0},
        {"se_reduction": 0},
        {"focal": -1.0},
        {"init": "orthogonal"},
    ],
)
def test_bad_options_name_the_problem(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        create_model("focusnet", **bad)
