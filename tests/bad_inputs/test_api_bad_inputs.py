"""Bad inputs through the Python API: named errors or correct results, and no file changed."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from napari_attnseg.data import InputSpec, Sample, pair_folder
from napari_attnseg.data.io import ImageFileError, read_image, read_mask
from napari_attnseg.inference import InferenceSettings, Predictor, evaluate_folder
from napari_attnseg.models import ModelFileError, load_model, model_cost, read_card, save_model
from napari_attnseg.progress import Cancelled, CancelToken
from napari_attnseg.training import TrainConfig, finetune
from napari_attnseg.training.interactive import AnnotatedImage, build_samples, class_warnings

from .conftest import disc_image, garbage, tiny_model
from .snapshot import Unchanged

PREDICTOR = Predictor(device="cpu", precision="fp32")


# -- image files ----------------------------------------------------------------------------------
def _png_bytes(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _tiff_bytes(array) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array)
    return buffer.getvalue()


GREY = disc_image()[0]
BAD_IMAGE_FILES = {
    "truncated.png": (lambda p: p.write_bytes(_png_bytes(GREY)[:200]), "cannot read"),
    "truncated.tif": (lambda p: p.write_bytes(_tiff_bytes(GREY)[:300]), "cannot read"),
    "garbage.png": (lambda p: p.write_bytes(garbage(500)), "cannot read"),
    "garbage.tif": (lambda p: p.write_bytes(garbage(500)), "cannot read"),
    "empty.png": (lambda p: p.write_bytes(b""), "empty file"),
    "folder.png": (lambda p: p.mkdir(), "is a folder"),
    "complex.tif": (
        lambda p: tifffile.imwrite(p, np.ones((8, 8), np.complex64)),
        "unsupported pixel type complex64",
    ),
    "text.tif": (lambda p: p.write_text("a,b,c\n1,2,3\n"), "cannot read"),
    "notes.txt": (lambda p: p.write_text("hello"), "unsupported file type '.txt'"),
    "noext": (lambda p: p.write_bytes(_png_bytes(GREY)), "unsupported file type '(no suffix)'"),
    "5d.tif": (
        lambda p: tifffile.imwrite(p, np.zeros((2, 3, 2, 8, 8), np.uint8)),
        "(2, 3, 2, 8, 8)",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_IMAGE_FILES))
@pytest.mark.parametrize("reader", [read_image, read_mask], ids=["image", "mask"])
def test_unreadable_image_files_raise_a_named_error(tmp_path, name, reader):
    make, message = BAD_IMAGE_FILES[name]
    make(tmp_path / name)
    with Unchanged(tmp_path), pytest.raises(ImageFileError) as error:
        reader(tmp_path / name)
    assert name in str(error.value)
    if reader is read_image or name != "5d.tif":
        assert message in str(error.value)


def test_missing_image_file_is_both_named_errors(tmp_path):
    with pytest.raises(ImageFileError, match="missing.png") as error:
        read_image(tmp_path / "missing.png")
    assert isinstance(error.value, FileNotFoundError)


@pytest.mark.parametrize(
    ("name", "array"),
    [
        ("rgba.png", np.dstack([GREY, GREY, GREY, np.full_like(GREY, 128)])),
        ("deep.png", GREY.astype(np.uint16) * 257),
        ("float.tif", GREY.astype(np.float32) / 255),
        ("negative.tif", GREY.astype(np.float32) - 500.0),
        ("signed.tif", GREY.astype(np.int16) - 300),
        ("bool.tif", GREY > 100),
    ],
)
def test_unusual_but_valid_images_read_and_segment(tmp_path, name, array):
    path = tmp_path / name
    (
        Image.fromarray(array).save
        if name.endswith(".png")
        else lambda p: tifffile.imwrite(p, array)
    )(path)
    with Unchanged(tmp_path):
        image = read_image(path)
        assert image.shape == array.shape
        prediction = PREDICTOR.predict(tiny_model(), image)
    assert prediction.labels.shape == GREY.shape


@pytest.mark.parametrize("shape", [(7,), (0, 5), (3, 0, 4), ()])
def test_arrays_that_are_not_images_are_named(shape):
    with pytest.raises(ValueError, match=r"shape|empty"):
        PREDICTOR.predict(tiny_model(), np.zeros(shape, np.float32))


def test_nan_image_is_segmented_and_the_replacement_counted():
    image = GREY.astype(np.float32)
    image[:2, :5] = np.nan
    image[10, 10] = -np.inf
    model = tiny_model()
    prediction = PREDICTOR.predict(model, image)
    assert prediction.messages == [
        "11 NaN/Inf pixel value(s) were replaced by their channel's median"
    ]
    clean = image.copy()
    clean[~np.isfinite(clean)] = np.median(image[np.isfinite(image)])
    reference = PREDICTOR.predict(model, clean)
    np.testing.assert_allclose(prediction.probabilities, reference.probabilities, atol=1e-6)


def test_two_channel_image_with_and_without_channel_axis():
    image = np.stack([GREY, disc_image(seed=1)[0]])
    two = tiny_model(in_channels=2)
    with pytest.raises(ValueError, match="1 channel.*expects 2"):
        PREDICTOR.predict(two, image)
    assert PREDICTOR.predict(two, image, channel_axis=0).labels.shape == GREY.shape
    assert PREDICTOR.predict(tiny_model(), image).labels.shape == image.shape


# -- model files ----------------------------------------------------------------------------------
class Exploit:
    """Unpickling this writes a marker file: proof that something was unpickled."""

    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _pickled(path):
    exploit = Exploit()
    Exploit.marker = str(path.parent / "UNPICKLED")
    return pickle.dumps({"state": exploit})


def _card_json(folder):
    return (folder / "good.json").read_text()


BAD_MODEL_FILES = {
    "truncated weights": (
        lambda f: (f / "bad.safetensors").write_bytes((f / "good.safetensors").read_bytes()[:900]),
        "truncated or corrupt",
    ),
    "truncated weights beside a card": (
        lambda f: (
            (f / "bad.json").write_text(_card_json(f)),
            (f / "bad.safetensors").write_bytes((f / "good.safetensors").read_bytes()[:-100]),
        ),
        "truncated or corrupt",
    ),
    "garbage weights beside a valid card": (
        lambda f: (
            (f / "bad.json").write_text(_card_json(f)),
            (f / "bad.safetensors").write_bytes(garbage(4096)),
        ),
        "not a valid safetensors file",
    ),
    "a card of the wrong architecture": (
        lambda f: (
            save_model(tiny_model(arch="focal_use_net"), f / "other"),
            (f / "bad.safetensors").write_bytes((f / "good.safetensors").read_bytes()),
            (f / "bad.json").write_text((f / "other.json").read_text()),
        ),
        "do not fit the architecture its card describes (focal_use_net",
    ),
    "a pickle renamed .safetensors": (
        lambda f: (f / "bad.safetensors").write_bytes(_pickled(f / "bad.safetensors")),
        "never unpickles",
    ),
    "torch.save renamed .safetensors": (
        lambda f: torch.save(tiny_model().state_dict(), f / "bad.safetensors"),
        "zip archive",
    ),
    "a non-UTF-8 card": (
        lambda f: (
            (f / "bad.safetensors").write_bytes((f / "good.safetensors").read_bytes()),
            (f / "bad.json").write_bytes(_card_json(f).encode("utf-16")),
        ),
        "not UTF-8 text",
    ),
    "a card that is not JSON": (
        lambda f: (
            (f / "bad.safetensors").write_bytes((f / "good.safetensors").read_bytes()),
            (f / "bad.json").write_text(_card_json(f)[:-20]),
        ),
        "not valid JSON",
    ),
    "a card of a newer format": (
        lambda f: (
            (f / "bad.safetensors").write_bytes((f / "good.safetensors").read_bytes()),
            (f / "bad.json").write_text(
                _card_json(f).replace('"format_version": 1', '"format_version": 7')
            ),
        ),
        "card format 7 is newer",
    ),
    "a card with a threshold of 2": (
        lambda f: (
            (f / "bad.safetensors").write_bytes((f / "good.safetensors").read_bytes()),
            (f / "bad.json").write_text(
                _card_json(f).replace('"threshold": 0.5', '"threshold": 2')
            ),
        ),
        "threshold must be a number between 0 and 1",
    ),
    "NaN weights": (
        lambda f: save_model(_with_nan(tiny_model()), f / "bad"),
        "NaN or infinite weights",
    ),
    "weights without any card": (
        lambda f: __import__("safetensors.torch").torch.save_file(
            tiny_model().state_dict(), str(f / "bad.safetensors")
        ),
        "has no model card",
    ),
    "an empty weights file": (
        lambda f: (f / "bad.safetensors").write_bytes(b""),
        "empty file",
    ),
    "a folder named like a model": (lambda f: (f / "bad.safetensors").mkdir(), "is a folder"),
}


def _with_nan(model):
    with torch.no_grad():
        next(model.parameters())[0].fill_(float("nan"))
    return model


@pytest.mark.parametrize("case", sorted(BAD_MODEL_FILES))
def test_broken_model_files_raise_model_file_error(tmp_path, case):
    save_model(tiny_model(), tmp_path / "good")
    make, message = BAD_MODEL_FILES[case]
    make(tmp_path)
    with Unchanged(tmp_path), pytest.raises(ModelFileError) as error:
        load_model(tmp_path / "bad")
    assert message in str(error.value) and "bad" in str(error.value)
    assert not (tmp_path / "UNPICKLED").exists()
    if case in ("a card of a newer format", "a non-UTF-8 card", "a card that is not JSON"):
        with pytest.raises(ModelFileError, match=message):
            read_card(tmp_path / "bad")


def test_model_given_a_folder_is_named(tmp_path):
    with pytest.raises(ModelFileError, match="is a folder, not a model file"):
        load_model(tmp_path)


def test_save_model_name_is_the_load_model_name(tmp_path):
    model = tiny_model()
    save_model(model, tmp_path / "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json", "x.safetensors"]
    loaded = load_model(tmp_path / "x")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def test_read_only_save_folder_leaves_nothing_behind(tmp_path, monkeypatch):
    import napari_attnseg._files as files_module

    def refuse(*args, dir=None, **kwargs):
        raise PermissionError(13, "Permission denied", str(dir))

    save_model(tiny_model(), tmp_path / "m")
    monkeypatch.setattr(files_module.tempfile, "mkstemp", refuse)
    with Unchanged(tmp_path), pytest.raises(PermissionError):
        save_model(tiny_model(), tmp_path / "m")


def test_failed_save_keeps_the_old_model(tmp_path, monkeypatch):
    """A write that dies half-way leaves the previous model file, not a half-written one."""
    import napari_attnseg.models.persistence as persistence

    save_model(tiny_model(), tmp_path / "m")

    def half(state, target, metadata=None):
        with open(target, "wb") as f:
            f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(persistence, "save_file", half)
    with Unchanged(tmp_path), pytest.raises(OSError, match="No space"):
        save_model(tiny_model(), tmp_path / "m")
    load_model(tmp_path / "m")


# -- settings and sizes ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"threshold": 2}, "between 0 and 1, got 2"),
        ({"threshold": -1}, "between 0 and 1, got -1"),
        ({"tile_size": 0}, "at least 16"),
        ({"overlap": 1.0}, r"\[0, 1\)"),
        ({"batch_size": 0}, "at least 1"),
    ],
)
def test_inference_settings_name_the_allowed_range(settings, message):
    with pytest.raises(ValueError, match=message):
        InferenceSettings(**settings)


@pytest.mark.parametrize("size", [(0, 0), (-5, -5), (16, 0), (2.5, 3), (1, 2, 3), "ab", (70000, 8)])
def test_model_cost_sizes(size):
    with pytest.raises(ValueError, match=r"size|height|width"):
        model_cost(tiny_model(), size)


@pytest.mark.slow
def test_model_cost_counts_tiny_and_huge_inputs_without_memory():
    small = model_cost(tiny_model(), (1, 1))
    huge = model_cost(tiny_model(), (8192, 8192))  # meta device: no 2 GB activations
    assert 0 < small.flops < huge.flops


# -- training labels ------------------------------------------------------------------------------
def test_labels_of_one_class_are_warned_about():
    spec = InputSpec(in_channels=1)
    for labels in (np.zeros_like(GREY), np.ones_like(GREY)):
        samples, _ = build_samples(
            [AnnotatedImage("a", GREY, labels)], spec, n_classes=1, val_fraction=0
        )
        warnings = class_warnings(samples, 1)
        assert warnings, labels.max()


def test_labels_of_another_shape_are_named():
    with pytest.raises(ValueError, match=r"labels for 'a' are 40×40 but the image is 40×48"):
        build_samples(
            [AnnotatedImage("a", GREY, np.zeros((40, 40), np.uint8))],
            InputSpec(in_channels=1),
            n_classes=1,
        )


# -- cancel at every stage ------------------------------------------------------------------------
class CancelAfter:
    """A progress callback that cancels its token after ``n`` reports."""

    def __init__(self, n: int) -> None:
        self.n, self.calls, self.token = n, 0, CancelToken()

    def __call__(self, done, total, message=""):
        self.calls += 1
        if self.calls >= self.n:
            self.token.cancel()


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("after", [0, 1, 3])
def test_cancel_predict_at_every_stage(after):
    model = tiny_model()
    before = _state(model)
    stop = CancelAfter(after)
    if after == 0:
        stop.token.cancel()
    predictor = Predictor(device="cpu", tile_size=16, overlap=0.0, batch_size=1)
    with pytest.raises(Cancelled):
        predictor.predict(model, np.stack([GREY] * 3), progress=stop, cancel=stop.token)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize("after", [0, 1, 2])
def test_cancel_evaluate_at_every_stage(work, after):
    model = tiny_model()
    stop = CancelAfter(after)
    if after == 0:
        stop.token.cancel()
    with Unchanged(work), pytest.raises(Cancelled):
        evaluate_folder(
            model, work / "images", work / "masks", predictor=PREDICTOR,
            progress=stop, cancel=stop.token,
        )  # fmt: skip
    assert len(pair_folder(work / "images", work / "masks")) == 3


@pytest.mark.parametrize("after", [0, 1, 3])
@pytest.mark.slow
def test_cancel_finetune_at_every_stage(tmp_path, after):
    model = tiny_model()
    before = _state(model)
    samples = [
        Sample(
            f"s{i}",
            disc_image(seed=i)[0][None].astype(np.float32),
            disc_image(seed=i)[1].astype(np.int64),
        )
        for i in range(3)
    ]
    config = TrainConfig(
        epochs=3, batch_size=2, patch_size=32, lr=1e-2, loss="dice", loss_params={},
        augment=None, device="cpu", early_stopping=None, schedule="none",
    )  # fmt: skip
    stop = CancelAfter(after)
    if after == 0:
        stop.token.cancel()
    with Unchanged(tmp_path), pytest.raises(Cancelled):
        finetune(
            model,
            samples,
            samples[:1],
            config,
            out=tmp_path / "tuned",
            progress=stop,
            cancel=stop.token,
        )
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_a_damaged_tiff_is_one_error_not_a_log_line_per_tag(tmp_path, caplog):
    path = tmp_path / "damaged.tif"
    path.write_bytes(_tiff_bytes(GREY)[:200])
    with pytest.raises(ImageFileError, match="damaged.tif.*truncated or corrupt"):
        read_image(path)
    assert not [r for r in caplog.records if r.name == "tifffile"]
