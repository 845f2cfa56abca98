"""Fundus photographs of any camera: the field of view is measured and matched (issue 25)."""

import numpy as np
import pytest
import tifffile

from napari_attnseg.cli import main as attnseg
from napari_attnseg.inference import InferenceSettings, Predictor
from napari_attnseg.inference.fov_scale import check_fov, measure_fov
from napari_attnseg.models import ModelCard, create_model, save_model


def fundus(side: int, radius: float, *, height: int | None = None) -> np.ndarray:
    """A fundus-like photograph: a reddish disc with darker 'vessels' on a black ground."""
    height = height or side
    yy, xx = np.mgrid[:height, :side]
    image = np.zeros((height, side, 3), np.uint8)
    disc = (yy - height / 2) ** 2 + (xx - side / 2) ** 2 <= radius**2
    image[disc] = (190, 90, 40)
    image[disc & (np.abs(xx - side / 2) < max(1, side // 60))] = (120, 40, 20)
    return image


def vessel_model(**card):
    model = create_model("unet", in_channels=3, n_classes=1, width=4, depth=2).eval()
    model.card = ModelCard(name="vessels-tiny", normalization={"mode": "zscore"},
                           roi={"method": "fundus"}, **card)
    return model


def test_the_field_of_view_is_the_width_of_the_disc_even_when_cut_top_and_bottom():
    assert measure_fov(fundus(240, 100), rgb=True).diameter == pytest.approx(200, abs=3)
    cut = fundus(300, 140, height=220)  # the disc runs off the top and bottom edges
    assert measure_fov(cut, rgb=True).diameter == pytest.approx(280, abs=3)
    big = fundus(1600, 700)  # measured on a reduced copy: still in pixels of the image
    assert measure_fov(big, rgb=True).diameter == pytest.approx(1400, rel=0.01)


def test_an_image_without_a_dark_rim_or_a_disc_is_not_measured():
    flat = np.full((100, 120, 3), 150, np.uint8)
    assert not measure_fov(flat, rgb=True).credible
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (128, 128, 3)).astype(np.uint8)
    assert not measure_fov(noise, rgb=True).credible
    inside = fundus(200, 400)  # cropped inside the retina: bright everywhere
    assert not measure_fov(inside, rgb=True).credible


def test_a_larger_camera_is_resampled_to_the_trained_field_of_view_and_mapped_back():
    model = vessel_model(fov_diameter=100.0)
    small, large = fundus(120, 50), fundus(240, 100)

    same = Predictor(InferenceSettings(device="cpu")).predict(model, small)
    assert same.zoom == 1.0 and same.labels.shape == (120, 120)
    assert any("field of view ~101 px across (trained on 100 px): not resampled" in m
               for m in same.messages)

    twice = Predictor(InferenceSettings(device="cpu")).predict(model, large)
    assert twice.zoom == pytest.approx(0.5, abs=0.01) and twice.labels.shape == (240, 240)
    assert any("image resampled ×0.50" in m for m in twice.messages)

    off = Predictor(InferenceSettings(device="cpu", fov_diameter=None)).predict(model, large)
    assert off.zoom == 1.0 and not any("field of view" in m for m in off.messages)

    given = Predictor(InferenceSettings(device="cpu", fov_diameter=150)).predict(model, large)
    assert given.zoom == pytest.approx(100 / 150)
    assert any("field of view taken as 150 px" in m for m in given.messages)


def test_models_without_a_field_of_view_and_pictures_without_a_disc_are_left_alone():
    plain = vessel_model()  # no fov_diameter on the card
    result = Predictor(InferenceSettings(device="cpu")).predict(plain, fundus(240, 100))
    assert result.zoom == 1.0 and not any("field of view" in m for m in result.messages)
    model = vessel_model(fov_diameter=100.0)
    flat = np.full((200, 200, 3), 150, np.uint8)
    result = Predictor(InferenceSettings(device="cpu", roi="none")).predict(model, flat)
    assert result.zoom == 1.0
    assert any("field of view not measured" in m and "not resampled" in m
               for m in result.messages)


@pytest.mark.parametrize("value, expected", [("auto", "auto"), ("none", None), (None, None),
                                             ("540", 540.0), (300, 300.0)])
def test_fov_setting_values(value, expected):
    assert check_fov(value) == expected


@pytest.mark.parametrize("bad", ["wide", 0, -3, float("nan"), float("inf"), "inf", True])
def test_bad_fov_settings_are_refused_by_name(bad):
    with pytest.raises(ValueError, match="field of view"):
        InferenceSettings(fov_diameter=bad)


@pytest.mark.parametrize("value, expected", [(" Auto ", "auto"), ("None", None), ("12.5", 12.5),
                                             (7, 7.0)])
def test_object_diameter_and_field_of_view_take_the_same_values(value, expected):
    settings = InferenceSettings(diameter=value, fov_diameter=value)
    assert settings.diameter == settings.fov_diameter == expected
    for bad in ("big", -1, float("inf")):
        with pytest.raises(ValueError, match="object diameter must be 'auto', 'none' or a"):
            InferenceSettings(diameter=bad)


def test_cli_predict_matches_the_field_of_view_and_says_so(tmp_path, capsys):
    path = save_model(vessel_model(fov_diameter=100.0), tmp_path / "v.safetensors")
    tifffile.imwrite(tmp_path / "photo.tif", fundus(240, 100))
    out = tmp_path / "out"
    assert attnseg(["predict", str(tmp_path / "photo.tif"), "--model", str(path),
                    "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "field of view ~201 px across (trained on 100 px): image resampled ×0.50" in err
    assert tifffile.imread(out / "photo.tif").shape == (240, 240)

    assert attnseg(["predict", str(tmp_path / "photo.tif"), "--model", str(path),
                    "--out", str(tmp_path / "out2"), "--device", "cpu", "--quiet",
                    "--fov-diameter", "none"]) == 0
    assert "field of view" not in capsys.readouterr().err

    with pytest.raises(SystemExit):
        attnseg(["predict", str(tmp_path / "photo.tif"), "--model", str(path),
                 "--out", str(tmp_path / "out3"), "--fov-diameter", "wide"])
    assert "--fov-diameter" in capsys.readouterr().err


def test_block_wise_prediction_does_not_match_the_field_of_view_block_by_block():
    from napari_attnseg.inference.blockwise import blockwise_settings

    card = vessel_model(fov_diameter=100.0).card
    settings, notes = blockwise_settings(InferenceSettings(), card)
    assert settings.fov_diameter is None
    assert any("field of view not matched" in note for note in notes)


def _fundus_sample(side: int, radius: float, name: str = "f"):
    from napari_attnseg.data.samples import Sample

    image = fundus(side, radius).astype(np.float32)
    image = (image - image.mean(axis=(0, 1))) / (image.std(axis=(0, 1)) + 1e-6)  # zscore
    mask = np.zeros((side, side), np.int64)
    mask[side // 2 - 2: side // 2 + 2] = 1
    return Sample(name, np.moveaxis(image, -1, 0).copy(), mask)


def test_training_a_fundus_model_records_its_photographs_field_of_view():
    from napari_attnseg.training.workflows import record_fov

    samples = [_fundus_sample(96, 30), _fundus_sample(96, 40), _fundus_sample(96, 36)]
    card = ModelCard(name="v", roi={"method": "fundus"})
    record_fov(card, samples)
    assert card.fov_diameter == pytest.approx(72, abs=3)  # the median disc, normalised images
    assert "median of 3 of 3" in card.metadata["fov_diameter_source"]
    kept = ModelCard(name="v", roi={"method": "fundus"}, fov_diameter=500.0)
    record_fov(kept, samples)
    assert kept.fov_diameter == 500.0  # a card that has one keeps it
    for other in (ModelCard(name="n"), ModelCard(name="p", roi={"method": "fundus"},
                                                 input_size=[64, 64])):
        record_fov(other, samples)
        assert other.fov_diameter is None  # not fundus / fixed-size input
    flat = ModelCard(name="v", roi={"method": "fundus"})
    from napari_attnseg.data.samples import Sample

    record_fov(flat, [Sample("flat", np.ones((3, 64, 64), np.float32), np.zeros((64, 64)))])
    assert flat.fov_diameter is None  # no disc: nothing invented


@pytest.mark.slow
def test_train_new_gives_a_fundus_card_its_field_of_view_and_prediction_uses_it():
    from napari_attnseg.training import TrainConfig
    from napari_attnseg.training.workflows import DataSpec, train_new

    samples = [_fundus_sample(96, 30, "a"), _fundus_sample(96, 30, "b")]
    model, _ = train_new(
        "unet", {"width": 4, "depth": 2}, samples, [],
        TrainConfig(epochs=1, batch_size=2, samples_per_epoch=2, patch_size=64),
        data=DataSpec(in_channels=3), normalization={"mode": "zscore"},
        card={"roi": {"method": "fundus"}},
    )
    assert model.card.fov_diameter == pytest.approx(60, abs=3)
    result = Predictor(InferenceSettings(device="cpu")).predict(model.eval(), fundus(200, 60))
    assert result.zoom == pytest.approx(0.5, abs=0.02)  # a 120-px disc brought to 60 px


def test_the_automatic_region_is_the_field_of_view_measured(monkeypatch):
    """A fundus card's automatic region (found at full resolution) gives the diameter: the
    photograph is not searched a second time; without that region it is measured."""
    from napari_attnseg.inference import fov_scale

    calls = []
    real = fov_scale.measure_fov
    monkeypatch.setattr(fov_scale, "measure_fov",
                        lambda *a, **k: calls.append(1) or real(*a, **k))  # fmt: skip
    model = vessel_model(fov_diameter=100.0)
    result = Predictor(InferenceSettings(device="cpu")).predict(model, fundus(240, 100))
    assert result.zoom == pytest.approx(0.5, abs=0.01) and calls == []
    alone = Predictor(InferenceSettings(device="cpu", roi="none")).predict(model, fundus(240, 100))
    assert alone.zoom == pytest.approx(0.5, abs=0.01) and calls == [1]
    given = np.ones((240, 240), bool)  # the caller's region says nothing about the disc
    Predictor(InferenceSettings(device="cpu")).predict(model, fundus(240, 100), roi=given)
    assert calls == [1, 1]
