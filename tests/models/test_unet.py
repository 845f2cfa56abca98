"""The U-Net family against the shared architecture contract."""

import pytest
import torch

from napari_attnseg.models import attention_modules, capture_attention, create_model

from .contract import ArchitectureContract

SMALL = {"width": 4}


class TestUNet(ArchitectureContract):
    name = "unet"
    options = SMALL
    cases = [{}, {"norm": "batch", "order": "cna"}]
    supports_focal = False

    def test_has_no_attention(self):
        model = self.build()
        assert attention_modules(model) == {}
        assert capture_attention(model, torch.zeros(1, 1, 32, 32)) == {}


class TestUSENet(ArchitectureContract):
    name = "use_net"
    options = SMALL
    cases = [{}, {"focal": 1.0}, {"focal": 0.0}, {"se": [False] * 7 + [True, True]}]

    def test_nine_positions(self):
        assert len(attention_modules(self.build())) == 9

    def test_enable_list_builds_only_listed_positions(self):
        model = self.build({"se": [False] * 7 + [True, True], "focal": 1.0})
        assert list(attention_modules(model)) == ["decoder.2.se", "decoder.3.se"]


class TestAttentionUNet(ArchitectureContract):
    name = "attention_unet"
    options = SMALL
    cases = [{}, {"focal": 1.0}, {"focal": 0.0}, {"gates": [False, True, False, True]}]

    def test_four_gates(self):
        kinds = attention_modules(self.build())
        assert kinds == {f"decoder.{i}.gate": "spatial" for i in range(4)}


class TestFocalPresets(ArchitectureContract):
    name = "focal_use_net"
    options = SMALL
    cases = [{}, {"depth": 3}]


@pytest.mark.parametrize(
    "bad", [{"depth": 0}, {"norm": "group"}, {"se": [True, False]}, {"colour": 1}]
)
def test_bad_options_name_the_problem(bad):
    key = next(iter(bad))
    with pytest.raises(ValueError, match=key if key != "colour" else "unknown option"):
        create_model("unet", **bad)
