"""Attention maps for the Attention widget: prepared like a prediction, aligned with the image."""

import numpy as np
import pytest
import torch

from napari_attnseg.data import InputSpec
from napari_attnseg.inference import attention_maps, most_informative
from napari_attnseg.models import AttentionMap, ModelCard, capture, create_model
from napari_attnseg.progress import Cancelled, CancelToken


def gated(in_channels=1, norm="instance", **card):
    model = create_model(
        "focal_attention_unet", in_channels=in_channels, n_classes=1, width=4, depth=2, norm=norm
    )
    model.card = ModelCard(**card)
    return model.eval()


def image(h=50, w=70, seed=0):
    return np.random.default_rng(seed).normal(size=(h, w)).astype(np.float32)


def test_one_map_per_spatial_module_at_the_image_size():
    maps = attention_maps(gated(), image())
    assert [m.name for m in maps] == ["decoder.0.gate", "decoder.1.gate"]
    for m in maps:
        assert m.kind == "spatial" and m.focal_w == 1.0
        assert m.resized.shape == (1, 1, 50, 70)
        assert m.resized.device.type == "cpu"
        assert 0.0 <= float(m.resized.min()) <= float(m.resized.max()) <= 1.0


def test_same_maps_as_a_forward_pass_on_the_prepared_image():
    model, img = gated(normalization={"mode": "minmax"}), image()
    x = InputSpec(1, {"mode": "minmax"}).prepare(img[..., None]).tensor
    _, expected = capture(model, x)
    got = attention_maps(model, img, device="cpu", precision="fp32")
    for a, want in zip(got, expected, strict=True):
        assert torch.allclose(a.resized, want.resized, atol=1e-6)


def test_capture_leaves_no_hooks_behind():
    model = gated()
    attention_maps(model, image())
    taps = [m.tap for m in model.modules() if hasattr(m, "tap")]
    assert taps and all(not t._forward_hooks for t in taps)


def test_large_images_are_mapped_tile_by_tile_with_progress_and_cancel():
    # batch norm in eval mode keeps each map pixel local, so tiles agree with the whole image
    # away from the seams (instance norm would normalise each tile by its own statistics)
    model, big = gated(norm="batch"), image(150, 170)
    sizes = []
    model.register_forward_pre_hook(lambda m, inp: sizes.append(tuple(inp[0].shape[-2:])))
    calls = []
    maps = attention_maps(
        model, big, device="cpu", tile_size=64, progress=lambda d, t, m="": calls.append((d, t))
    )
    assert max(max(s) for s in sizes) <= 64  # memory bounded by the tile
    assert calls[-1] == (12, 12)  # 3 × 4 tiles
    whole = attention_maps(model, big, device="cpu", tile_size=None)
    for tiled, one in zip(maps, whole, strict=True):
        assert tiled.resized.shape == one.resized.shape == (1, 1, 150, 170)
        assert float((tiled.resized - one.resized).abs().mean()) < 0.05
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        attention_maps(model, big, tile_size=64, cancel=token)


@pytest.mark.parametrize("card", [{"input_scale": 0.5}, {"input_size": [32, 40]}])
def test_input_scale_and_size_are_applied_and_undone(card):
    plain = attention_maps(gated(), image())
    scaled = attention_maps(gated(**card), image())
    for a, b in zip(plain, scaled, strict=True):
        assert b.resized.shape == (1, 1, 50, 70)
        assert b.native.shape[-1] < a.native.shape[-1]  # the model saw a smaller image


def test_rgb_image_and_rgb_flag():
    rgb = np.random.default_rng(1).integers(0, 255, (40, 30, 3), dtype=np.uint8)
    maps = attention_maps(gated(in_channels=3), rgb, rgb=True)
    assert all(m.resized.shape == (1, 1, 40, 30) for m in maps)


def test_channel_attention_gives_weights_and_no_informative_map():
    model = create_model("focal_use_net", in_channels=1, n_classes=1, width=4, depth=2)
    maps = attention_maps(model, image(32, 32))
    assert maps and all(m.kind == "channel" for m in maps)
    assert maps[0].resized.ndim == 2 and maps[0].resized.shape[0] == 1
    assert most_informative(maps) is None


def test_a_stack_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="single slice"):
        attention_maps(gated(), np.zeros((5, 32, 32), np.float32), rgb=False)


def test_most_informative_is_the_map_with_most_spatial_contrast():
    flat = torch.full((1, 1, 8, 8), 0.5)
    varied = torch.linspace(0, 1, 64).reshape(1, 1, 8, 8)
    maps = [
        AttentionMap("flat", "spatial", flat, flat),
        AttentionMap("varied", "spatial", varied, varied),
        AttentionMap("se", "channel", torch.rand(1, 4), torch.rand(1, 4)),
    ]
    assert most_informative(maps) == "varied"
