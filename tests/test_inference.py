"""Inference: whole-image vs tiled prediction, TTA equivariance, stacks, scale, devices."""

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
    whole = Predictor(model, tile_size=None).predict(image).probabilities
    tiled = (
        Predictor(model, tile_size=64, overlap=0.25, blend="gaussian").predict(image).probabilities
    )
    away = np.outer(_away_from_seams(150, 64, 0.25, 8), _away_from_seams(170, 64, 0.25, 8))
    assert away.mean() > 0.2
    assert np.allclose(tiled[1][away], whole[1][away], atol=1e-5)
    assert not np.allclose(tiled[1], whole[1], atol=1e-5)  # the seams do differ


def test_tiling_bounds_each_forward_pass():
    model = tiny()
    sizes = []
    model.register_forward_pre_hook(lambda m, inp: sizes.append(tuple(inp[0].shape[-2:])))
    Predictor(model, tile_size=64, batch_size=2).predict(np.zeros((200, 130), np.float32))
    assert sizes and max(max(s) for s in sizes) <= 64


def test_tta_is_flip_equivariant():
    model = tiny(norm="instance")
    image = np.random.default_rng(1).normal(size=(45, 61)).astype(np.float32)
    predictor = Predictor(model, tta=True)
    p = predictor.predict(image).probabilities
    for axis in (0, 1):
        flipped = predictor.predict(np.flip(image, axis).copy()).probabilities
        assert np.allclose(np.flip(flipped, axis + 1), p, atol=1e-5)


def test_tta_differs_from_plain_prediction():
    model = tiny(norm="instance")
    image = np.random.default_rng(1).normal(size=(45, 61)).astype(np.float32)
    plain = Predictor(model).predict(image).probabilities
    tta = Predictor(model, tta=True).predict(image).probabilities
    assert not np.allclose(plain, tta)


def test_rgb_image_and_labels():
    model = tiny(in_channels=3, n_classes=3)
    image = np.random.default_rng(2).integers(0, 255, size=(40, 50, 3), dtype=np.uint8)
    result = Predictor(model).predict(image)
    assert result.probabilities.shape == (3, 40, 50)
    assert np.allclose(result.probabilities.sum(0), 1, atol=1e-5)
    assert result.labels.shape == (40, 50) and result.labels.max() <= 2
    assert np.array_equal(result.labels, result.probabilities.argmax(0))


def test_grey_image_into_rgb_model():
    model = tiny(in_channels=3)
    assert Predictor(model).predict(np.zeros((32, 32), np.uint8)).labels.shape == (32, 32)


def test_stack_slice_by_slice_with_progress():
    model = tiny()
    stack = np.random.default_rng(3).normal(size=(3, 33, 40)).astype(np.float32)
    calls = []
    result = Predictor(model).predict_stack(stack, progress=lambda d, t, m="": calls.append((d, t)))
    assert result.labels.shape == (3, 33, 40)
    assert result.probabilities.shape == (3, 2, 33, 40)
    single = Predictor(model).predict(stack[1]).probabilities
    assert np.allclose(result.probabilities[1], single, atol=1e-6)
    assert calls[-1][0] == calls[-1][1]


def test_cancel_stops_prediction():
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        Predictor(tiny()).predict(np.zeros((32, 32), np.float32), cancel=token)


def test_input_scale_resizes_and_returns_input_size():
    model = tiny()
    model.card.input_scale = 0.5
    seen = []
    model.register_forward_pre_hook(lambda m, inp: seen.append(tuple(inp[0].shape[-2:])))
    result = Predictor(model).predict(np.zeros((64, 80), np.float32))
    assert seen == [(32, 40)]
    assert result.labels.shape == (64, 80)


def test_input_size_fixed():
    model = tiny()
    model.card.input_size = [48, 48]
    seen = []
    model.register_forward_pre_hook(lambda m, inp: seen.append(tuple(inp[0].shape[-2:])))
    assert Predictor(model).predict(np.zeros((100, 70), np.float32)).labels.shape == (100, 70)
    assert seen == [(48, 48)]


def test_threshold_setting():
    model = tiny()
    image = np.random.default_rng(4).normal(size=(32, 32)).astype(np.float32)
    low = Predictor(model, threshold=0.0).predict(image).labels
    high = Predictor(model, threshold=1.01).predict(image).labels
    assert low.all() and not high.any()


def test_wrong_dimensionality_names_the_problem():
    with pytest.raises(ValueError, match="predict_stack"):
        Predictor(tiny()).predict(np.zeros((2, 3, 32, 32)))


def test_devices():
    assert resolve_device("auto").type in ("cuda", "mps", "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert available_devices()[0] == ("auto", "auto")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            resolve_device("cuda")


def test_oom_falls_back_to_smaller_tiles_then_cpu(monkeypatch):
    model = tiny()
    predictor = Predictor(model, tile_size=128)
    predictor.device = torch.device("cuda")  # pretend
    failures = iter([True, True, False])
    original = predictor._run

    def flaky(x, progress, cancel):
        if next(failures):
            raise torch.cuda.OutOfMemoryError("fake")
        return original(x, progress, cancel)

    monkeypatch.setattr(predictor, "_run", flaky)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(model, "to", lambda device: model)
    result = predictor.predict(np.zeros((40, 40), np.float32))
    assert result.labels.shape == (40, 40)
    assert any("64px" in m for m in result.messages)
    assert any("CPU" in m for m in result.messages)
