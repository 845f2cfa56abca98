"""Inference: whole-image vs tiled prediction, TTA equivariance, stacks, scale, devices.

Exact comparisons run at fp32 (``P``); ``auto`` would use bf16 on CPUs that have it.
"""

import numpy as np
import pytest
import torch

from napari_attnseg.inference import Predictor, available_devices, resolve_device
from napari_attnseg.models import ModelCard, create_model
from napari_attnseg.progress import Cancelled, CancelToken


def tiny(norm="batch", in_channels=1, n_classes=1, depth=2):
    model = create_model(
        "unet",
        in_channels=in_channels,
        n_classes=n_classes,
        width=4,
        depth=depth,
        norm=norm,
        order="cna",
    )
    model.card = ModelCard(normalization={"mode": "zscore"})
    return model.eval()


def P(**settings) -> Predictor:
    """A CPU predictor at fp32 (exact comparisons)."""
    return Predictor(device="cpu", precision="fp32", **settings)


def _away_from_seams(size, tile, overlap, margin):
    """1D mask of positions at least ``margin`` inside every window that covers them
    (windows placed as MONAI places them: a fixed step, the last one flush with the end)."""
    step = int(tile * (1 - overlap))
    count = int(np.ceil((size - tile) / step)) + 1
    ok = np.ones(size, bool)
    for i in range(count):
        start = min(i * step, size - tile)
        inside = np.arange(start, start + tile)
        near_edge = (inside - start < margin) & (start > 0) | (start + tile - inside <= margin) & (
            start + tile < size
        )
        ok[inside[near_edge]] = False
    return ok


def test_tiled_equals_whole_image_away_from_seams():
    # batch norm in eval mode keeps each output pixel local (instance norm would not);
    # a depth-1 U-Net sees about +-6 px, so pixels 8 px away from every seam match exactly
    model = tiny(depth=1)
    image = np.random.default_rng(0).normal(size=(150, 170)).astype(np.float32)
    whole = P(tile_size=None).predict(model, image).probabilities
    tiled = (
        P(tile_size=64, overlap=0.25, blend="gaussian").predict(model, image).probabilities
    )
    away = np.outer(_away_from_seams(150, 64, 0.25, 8), _away_from_seams(170, 64, 0.25, 8))
    assert away.mean() > 0.2
    assert np.allclose(tiled[1][away], whole[1][away], atol=1e-5)
    assert not np.allclose(tiled[1], whole[1], atol=1e-5)  # the seams do differ


def test_tiling_bounds_each_forward_pass():
    model = tiny()
    sizes = []
    model.register_forward_pre_hook(lambda m, inp: sizes.append(tuple(inp[0].shape[-2:])))
    P(tile_size=64, batch_size=2).predict(model, np.zeros((200, 130), np.float32))
    assert sizes and max(max(s) for s in sizes) <= 64


def test_tta_is_flip_equivariant():
    model = tiny(norm="instance")
    image = np.random.default_rng(1).normal(size=(45, 61)).astype(np.float32)
    predictor = P(tta=True)
    p = predictor.predict(model, image).probabilities
    for axis in (0, 1):
        flipped = predictor.predict(model, np.flip(image, axis).copy()).probabilities
        assert np.allclose(np.flip(flipped, axis + 1), p, atol=1e-5)


def test_tta_differs_from_plain_prediction():
    model = tiny(norm="instance")
    image = np.random.default_rng(1).normal(size=(45, 61)).astype(np.float32)
    plain = P().predict(model, image).probabilities
    tta = P(tta=True).predict(model, image).probabilities
    assert not np.allclose(plain, tta)


def test_tta_by_default_where_the_card_recommends_it():
    model = tiny(norm="instance")
    image = np.random.default_rng(1).normal(size=(45, 61)).astype(np.float32)
    plain = P(tta=False).predict(model, image).probabilities
    flips = P(tta=True).predict(model, image).probabilities
    assert np.array_equal(P().predict(model, image).probabilities, plain)  # no recommendation
    model.card.metadata = {"recommended_tta": True}
    assert np.array_equal(P().predict(model, image).probabilities, flips)
    assert np.array_equal(P(tta=False).predict(model, image).probabilities, plain)


def test_rgb_image_and_labels():
    model = tiny(in_channels=3, n_classes=3)
    image = np.random.default_rng(2).integers(0, 255, size=(40, 50, 3), dtype=np.uint8)
    result = P().predict(model, image)
    assert result.probabilities.shape == (3, 40, 50)
    assert np.allclose(result.probabilities.sum(0), 1, atol=1e-5)
    assert result.labels.shape == (40, 50) and result.labels.max() <= 2
    assert np.array_equal(result.labels, result.probabilities.argmax(0))


def test_grey_image_into_rgb_model():
    model = tiny(in_channels=3)
    assert P().predict(model, np.zeros((32, 32), np.uint8)).labels.shape == (32, 32)


def test_stack_slice_by_slice_with_progress():
    model = tiny()
    stack = np.random.default_rng(3).normal(size=(3, 33, 40)).astype(np.float32)
    calls = []
    result = P().predict(model, stack, progress=lambda d, t, m="": calls.append((d, t)))
    assert result.labels.shape == (3, 33, 40)
    assert result.probabilities.shape == (3, 2, 33, 40)
    single = P().predict(model, stack[1]).probabilities
    assert np.allclose(result.probabilities[1], single, atol=1e-6)
    assert calls[-1][0] == calls[-1][1]


def test_cancel_stops_prediction():
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        P().predict(tiny(), np.zeros((32, 32), np.float32), cancel=token)


def test_input_scale_resizes_and_returns_input_size():
    model = tiny()
    model.card.input_scale = 0.5
    seen = []
    model.register_forward_pre_hook(lambda m, inp: seen.append(tuple(inp[0].shape[-2:])))
    result = P().predict(model, np.zeros((64, 80), np.float32))
    assert seen == [(32, 40)]
    assert result.labels.shape == (64, 80)


def test_input_size_fixed():
    model = tiny()
    model.card.input_size = [48, 48]
    seen = []
    model.register_forward_pre_hook(lambda m, inp: seen.append(tuple(inp[0].shape[-2:])))
    assert P().predict(model, np.zeros((100, 70), np.float32)).labels.shape == (100, 70)
    assert seen == [(48, 48)]


def test_threshold_setting():
    model = tiny()
    image = np.random.default_rng(4).normal(size=(32, 32)).astype(np.float32)
    low = P(threshold=0.0).predict(model, image).labels
    assert low.all()
    probabilities = P().predict(model, image).probabilities[1]
    high = P(threshold=float(probabilities.max())).predict(model, image).labels
    assert 0 < high.sum() < high.size
    for bad in (-0.1, 1.01, 2):
        with pytest.raises(ValueError, match="threshold must be a probability between 0 and 1"):
            P(threshold=bad)


def test_any_stack_layout_and_a_channel_axis():
    model, grey = tiny(), tiny(in_channels=2)
    labels = P().predict(model, np.zeros((2, 3, 32, 33), np.float32)).labels
    assert labels.shape == (2, 3, 32, 33)
    two_channel = np.random.default_rng(5).normal(size=(2, 32, 33)).astype(np.float32)
    assert P().predict(grey, two_channel, channel_axis=0).labels.shape == (32, 33)
    with pytest.raises(ValueError, match="1 channel.*expects 2"):
        P().predict(grey, two_channel)  # without the axis: a stack of two grey planes
    with pytest.raises(ValueError, match="two spatial axes"):
        P().predict(model, np.zeros(32))


def test_devices():
    assert resolve_device("auto").type in ("cuda", "mps", "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert available_devices()[0] == ("auto", "auto")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            resolve_device("cuda")


def test_oom_falls_back_to_smaller_tiles_then_cpu_for_this_call_only(monkeypatch):
    from napari_attnseg.inference import predictor as module

    model = tiny()
    predictor = P(tile_size=128)
    failures = iter([True, True, False])
    original = module.Run.tiled
    seen = []

    def flaky(self, forward, x, progress, cancel):
        seen.append((self.device.type, self.tile))
        if next(failures):
            raise torch.cuda.OutOfMemoryError("fake")
        return original(self, forward, x, progress, cancel)

    def pretend_gpu(self, predictor, model):  # the run starts "on CUDA"
        real_init(self, predictor, model)
        self.device = torch.device("cuda")

    real_init = module.Run.__init__
    monkeypatch.setattr(module.Run, "__init__", pretend_gpu)
    monkeypatch.setattr(module.Run, "tiled", flaky)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = predictor.predict(model, np.zeros((40, 40), np.float32))
    assert result.labels.shape == (40, 40)
    assert seen == [("cuda", 128), ("cuda", 64), ("cpu", 64)]
    assert any("64px" in m for m in result.messages)
    assert any("CPU" in m for m in result.messages)
    # the fallbacks belonged to that call: settings and the caller's model are untouched
    assert predictor.settings.tile_size == 128
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_caller_s_model_is_never_moved_or_switched_to_eval():
    model = tiny()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    P().predict(model, np.random.default_rng(6).normal(size=(32, 32)).astype(np.float32))
    assert model.training  # the predictor used a private eval copy
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert next(model.parameters()).device.type == "cpu"


def test_messages_belong_to_each_call():
    image = np.zeros((16, 16), np.float32)
    image[0, 0] = np.nan
    predictor = P()
    first = predictor.predict(tiny(), image)
    second = predictor.predict(tiny(), np.zeros((16, 16), np.float32))
    assert first.messages == ["1 NaN/Inf pixel value(s) were replaced by their channel's median"]
    assert second.messages == []


@pytest.mark.parametrize("size", [1, 5, 16, 17])
def test_images_smaller_than_the_network_minimum_are_padded_and_cropped(size):
    for norm in ("instance", "batch"):
        model = tiny(norm=norm, depth=2)
        result = P().predict(model, np.random.default_rng(size).normal(size=(size, size + 3)))
        assert result.labels.shape == (size, size + 3)
        assert np.isfinite(result.probabilities).all()


def test_progress_counts_tiles():
    calls = []
    P(tile_size=64, overlap=0.25, batch_size=4).predict(
        tiny(), np.zeros((150, 170), np.float32), progress=lambda d, t, m="": calls.append((d, t))
    )
    tiles = 3 * 4  # 150 and 170 px at 64 px tiles with a 48 px step: 3 and 4 windows
    assert {t for _, t in calls if t > 1} == {tiles}
    assert [d for d, t in calls if t == tiles] == [4, 8, 12]
