"""The card's object rules in the predictor: object size (auto diameter), ROI, instances."""

import numpy as np
import pytest
import torch

from napari_attnseg.inference import Predictor
from napari_attnseg.models import ModelCard, SegmentationModel


class Bright(SegmentationModel):
    """Foreground = brighter than half the image's range (min-max input > 0.5), at any scale."""

    size_multiple = 1
    #: logit per unit of brightness above half the range (lower: less sure)
    gain = 20.0

    def __init__(self, in_channels: int = 1) -> None:
        super().__init__(in_channels, 1)
        self.seen: list[tuple[int, int]] = []

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(x.shape[-2:]))
        return self.gain * (x.mean(dim=1, keepdim=True) - 0.5)


SIX = ((40, 40), (40, 100), (40, 160), (150, 60), (140, 140), (100, 100))


def discs(size=200, radius=15, centres=SIX):
    yy, xx = np.mgrid[:size, :size]
    image = np.zeros((size, size), np.float32)
    for cy, cx in centres:
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = 1.0
    return image


def model(**card):
    m = Bright()
    m.card = ModelCard(normalization={"mode": "minmax"}, **card)
    return m.eval()


def P(**settings):
    return Predictor(device="cpu", precision="fp32", **settings)


def test_auto_diameter_resamples_objects_to_the_trained_size():
    net = model(object_diameter=10.0)
    result = P().predict(net, discs())  # discs ~30 px across, trained on 10 px
    assert result.diameter == pytest.approx(30, abs=1.5)
    assert result.zoom == pytest.approx(10 / result.diameter, rel=1e-6)
    # one measuring pass at reduced resolution (0.45² ≈ 20 % of the pixels) …
    assert net.seen[:1] == [(90, 90)]
    assert net.seen[1:] == [(round(200 * result.zoom),) * 2]  # … then the resampled one
    assert result.labels.shape == (200, 200)
    # mapped back onto the image: every disc found where it is
    truth, found = discs() > 0, result.labels > 0
    assert (truth & found).sum() / (truth | found).sum() > 0.9
    assert all(found[cy, cx] for cy, cx in SIX) and not found[0, 0]
    assert any("resampled ×0.33" in m for m in result.messages)


def test_a_given_diameter_skips_the_measuring_pass_and_none_keeps_the_scale():
    net = model(object_diameter=10.0)
    result = P(diameter=20).predict(net, discs())
    assert net.seen == [(100, 100)] and result.zoom == 0.5 and result.diameter == 20
    net = model(object_diameter=10.0)
    assert P(diameter=None).predict(net, discs()).zoom == 1.0 and net.seen == [(200, 200)]


def test_too_few_objects_to_measure_keep_the_trained_scale():
    net = model(object_diameter=10.0)
    result = P().predict(net, discs(centres=SIX[:2]))
    # the reduced pass found two objects, the prediction at the trained scale as well: it
    # is the result, not resampled, and the note says why
    assert result.zoom == 1.0 and net.seen == [(90, 90), (200, 200)]
    assert any("only 2 object(s) found" in m and "not resampled" in m for m in result.messages)
    assert not any("×" in m for m in result.messages)


def test_objects_near_the_trained_size_are_not_resampled():
    net = model(object_diameter=29.0)
    result = P().predict(net, discs())
    # the measuring pass and the prediction at the trained scale, nothing else
    assert result.zoom == 1.0 and net.seen == [(90, 90), (200, 200)]
    assert any("not resampled" in m for m in result.messages)


def test_small_objects_the_reduced_pass_cannot_see_are_measured_at_the_trained_scale():
    # discs 6 px across: 2.7 px in the reduced pass, too small to trust; the prediction at
    # the trained scale measures them and the image is resampled up to the trained 16 px
    centres = [(y, x) for y in range(20, 200, 40) for x in range(20, 200, 40)]
    net = model(object_diameter=16.0)
    result = P().predict(net, discs(radius=3, centres=centres))
    assert result.diameter == pytest.approx(6.1, abs=0.3)
    assert result.zoom == pytest.approx(16 / result.diameter, rel=1e-6)
    assert net.seen[:2] == [(90, 90), (200, 200)] and net.seen[2][0] > 400
    assert result.labels.shape == (200, 200) and result.labels[20, 20] == 1


def test_noise_is_not_resampled_and_costs_one_reduced_pass_more():
    rng = np.random.default_rng(0)
    noise = (rng.random((200, 200)) > 0.97).astype(np.float32)  # isolated bright pixels
    net = model(object_diameter=10.0)
    result = P().predict(net, noise)
    assert result.zoom == 1.0 and net.seen == [(90, 90), (200, 200)]
    assert any("object size not measured" in m for m in result.messages)


def test_auto_zoom_is_clipped_to_the_card_s_zoom_range():
    net = model(object_diameter=10.0, zoom_range=[0.5, 2.0])
    result = P().predict(net, discs())  # 30 px objects would want ×0.33
    assert result.zoom == 0.5 and net.seen[-1] == (100, 100)
    assert any("resampled ×0.50" in m for m in result.messages)


def test_models_without_an_object_size_are_unaffected():
    net = model()
    result = P().predict(net, discs())
    assert net.seen == [(200, 200)] and result.diameter is None and result.zoom == 1.0


@pytest.mark.parametrize("bad", [0, -3, "big", True, float("inf")])
def test_bad_diameters_name_the_allowed_values(bad):
    with pytest.raises(ValueError, match="diameter must be 'auto', 'none' or a number of pixels"):
        P(diameter=bad)


def test_a_region_of_interest_limits_the_prediction():
    roi = np.zeros((200, 200), bool)
    roi[:, :100] = True
    result = P().predict(model(), discs(), roi=roi)
    assert not result.labels[:, 100:].any() and result.labels[:, :100].any()
    assert np.all(result.probabilities[0][:, 100:] == 1.0)
    with pytest.raises(ValueError, match="region of interest is 10×10 but the image is 200×200"):
        P().predict(model(), discs(), roi=np.ones((10, 10)))


def test_the_card_s_fundus_field_of_view_is_found_automatically():
    from skimage.data import retina
    from skimage.transform import resize

    image = (resize(retina(), (128, 128)) * 255).astype(np.uint8)
    net = Bright(in_channels=3)
    net.card = ModelCard(roi={"method": "fundus"})
    result = P().predict(net, image)
    assert result.roi is not None and result.roi[64, 64] and not result.roi[0, 0]
    assert not result.labels[~result.roi].any()
    assert P(roi="none").predict(net, image).roi is None


def test_instances_split_touching_objects_when_the_card_says_so():
    touching = discs(centres=((100, 80), (100, 108)), radius=15)
    plain = P().predict(model(), touching)
    assert plain.instances is None
    result = P().predict(model(instances={"method": "watershed"}), touching)
    assert result.instances.max() == 2
    assert np.array_equal(result.instances > 0, result.labels > 0)
    assert P(instances=True).predict(model(), touching).instances.max() == 2
    assert (
        P(instances=False).predict(model(instances={"method": "watershed"}), touching).instances
        is None
    )


def test_cells_from_membranes_for_a_cells_card():
    image = np.ones((60, 60), np.float32)
    image[30, :] = 0  # a membrane across the image: two cells
    result = P(instances=True).predict(model(instances={"source": "cells"}), image)
    assert result.instances.max() == 2


def test_stacks_get_instances_per_plane():
    stack = np.stack([discs(), discs(centres=((100, 100),))])
    result = P(instances=True).predict(model(), stack)
    assert result.instances.shape == (2, 200, 200)
    assert len(np.unique(result.instances[0])) - 1 == 6
    assert len(np.unique(result.instances[1])) - 1 == 1


def test_a_measurement_says_why_its_objects_are_not_credible():
    from napari_attnseg.inference.objects import measure

    good = measure(discs() * 0.98, image_pixels=2.0, network_pixels=1.0)
    assert good.credible and good.objects == 6 and good.diameter == pytest.approx(60, abs=3)
    few = measure(discs(centres=SIX[:3]))
    assert not few.credible and "only 3 object(s)" in few.doubt
    dots = np.zeros((200, 200), np.float32)
    dots[5::20, 5::20] = dots[6::20, 5::20] = dots[5::20, 6::20] = dots[6::20, 6::20] = 1.0
    tiny = measure(dots)  # 2×2 px
    assert not tiny.credible and "px across as the network saw them" in tiny.doubt
    assert measure(dots, network_pixels=4.0).credible  # the same dots seen 4× larger
    faint = measure(discs() * 0.6)
    assert not faint.credible and "low confidence" in faint.doubt


def test_objects_within_the_training_size_range_are_left_alone():
    net = model(object_diameter=10.0, object_diameter_range=[6.0, 32.0])
    result = P().predict(net, discs())  # 30 px: a size the network saw in training
    assert result.zoom == 1.0 and result.diameter == pytest.approx(30, abs=1.5)
    net = model(object_diameter=10.0, object_diameter_range=[6.0, 20.0])
    assert P().predict(net, discs()).zoom == pytest.approx(1 / 3, rel=0.05)


class Banded(SegmentationModel):
    """A 'bands' head read off the image: pixel value k/3 is class k (background, interior,
    boundary, centre)."""

    size_multiple = 1

    def __init__(self) -> None:
        super().__init__(1, 4)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        levels = torch.arange(4, dtype=x.dtype).view(1, 4, 1, 1) / 3
        return -50.0 * (x[:, :1] - levels).abs()


def test_a_separation_head_gives_objects_and_a_binary_prediction():
    from napari_attnseg.data.targets import band_targets

    truth = np.zeros((64, 64), np.int32)
    for i, cx in enumerate((19, 32, 45), start=1):
        yy, xx = np.mgrid[:64, :64]
        truth[(yy - 32) ** 2 + (xx - cx) ** 2 < 100] = i  # three touching discs
    image = band_targets(truth).astype(np.float32) / 3
    net = Banded()
    net.card = ModelCard(normalization={"mode": "none"}, instances={"method": "bands"},
                         class_names=["background", "interior", "boundary", "centre"])
    result = P(diameter=None).predict(net.eval(), image)
    assert result.probabilities.shape == (2, 64, 64) and result.head.shape == (4, 64, 64)
    assert np.array_equal(result.labels > 0, truth > 0)
    assert result.instances.max() == 3
    from napari_attnseg.objects import instance_metrics

    assert instance_metrics(truth, result.instances)["ap75"] == 1.0
    assert net.card.predicted_classes(net.n_classes) == 2
    # the card decides how the head is decoded
    net.card.instances = {"method": "bands", "decode": "foreground"}
    assert P(diameter=None).predict(net, image).instances.max() == 1


def test_every_object_prediction_says_how_confident_it_is():
    net = model(instances={"method": "watershed"})
    result = P().predict(net, discs() * 0.98 + 0.01)
    quality = result.quality
    assert quality.objects == 6 and quality.confidence > 0.9 and not quality.warning()
    said = [m for m in result.messages if m.startswith("confidence ")]
    assert len(said) == 1 and float(said[0].split()[1]) > 0.9 and "(6 objects)" in said[0]
    assert not any(m.startswith("warning") for m in result.messages)
    blank = P().predict(net, np.zeros((64, 64), np.float32))
    assert blank.quality.blank and blank.quality.confidence == 0.0
    assert any("warning: the image is blank" in m for m in blank.messages)
    nothing = P().predict(net, np.pad(np.ones((1, 1), np.float32), 31))  # one 1-px speck
    assert nothing.quality.objects == 0 and not nothing.quality.blank
    assert any("warning: no objects found" in m for m in nothing.messages)
    # a network that is only sure of what stands out: noise leaves it unsure
    net.gain = 4.0
    assert not P().predict(net, discs()).quality.low
    rng = np.random.default_rng(0)
    noise = P().predict(net, rng.random((128, 128)).astype(np.float32))
    assert noise.quality.low and noise.quality.ambiguous > 0.3
    assert any("warning: few confident objects" in m and "ambiguous" in m
               for m in noise.messages)
    # semantic models are not assessed
    assert P().predict(model(), discs()).quality is None
