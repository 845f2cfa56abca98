"""bioimage.io export: the package validates, bioimage.io's own test passes with our numbers,
and napari-attnseg loads it back exactly; foreign packages get a clear refusal."""

import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from napari_attnseg import zoo
from napari_attnseg.cli import main
from napari_attnseg.export import (
    ExportError,
    ForeignPackageError,
    citations_for,
    export_bioimageio,
)
from napari_attnseg.export.bioimageio import FOCAL_ATTENTION, U_NET, preprocessing_steps
from napari_attnseg.inference import Predictor
from napari_attnseg.models import ModelCard, ModelFileError, create_model, save_model
from napari_attnseg.zoo.bioimageio import CARD_NAME, WEIGHTS_NAME

spec = pytest.importorskip("bioimageio.spec")
core = pytest.importorskip("bioimageio.core")


def tiny(arch="unet", n_classes=1, in_channels=1, **card):
    torch.manual_seed(0)
    model = create_model(arch, in_channels=in_channels, n_classes=n_classes, width=4, depth=2)
    defaults = dict(
        name=f"tiny.{arch}",
        description="A tiny test model.",
        class_names=["background", "nucleus"],
        license="MIT",
        metadata={"task": "nuclei"},
        training={"dataset": "generated noise", "epochs_run": 1, "config": {"loss": "dice"}},
    )
    model.card = ModelCard(**{**defaults, **card})
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny U-Net saved as a user would, exported with ``attnseg export``."""
    folder = tmp_path_factory.mktemp("export")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NAPARI_ATTNSEG_CACHE_DIR", str(folder / "cache"))
        source = save_model(tiny(), folder / "tiny.safetensors")
        out = folder / "tiny.zip"
        assert main(["export", str(source), "--out", str(out), "--author", "Test Author"]) == 0
        yield source, out


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_ATTNSEG_CACHE_DIR", str(tmp_path / "cache"))


def test_package_is_valid_bioimageio_0_5(exported):
    _, package = exported
    descr = spec.load_description(package)
    summary = descr.validation_summary
    errors = [e for d in summary.details for e in d.errors]
    assert summary.status == "valid-format" and not errors, summary.display() or errors
    assert descr.format_version.startswith("0.5")
    weights = descr.weights
    assert weights.torchscript is not None and weights.torchscript.parent == "pytorch_state_dict"
    arch = weights.pytorch_state_dict.architecture
    assert (arch.import_from, str(arch.callable)) == ("napari_attnseg.export", "build_model")
    assert arch.kwargs["config"]["name"] == "unet"
    assert [str(c.doi) for c in descr.cite] == [U_NET.doi]
    assert str(descr.license) == "MIT"
    assert [a.name for a in descr.authors] == ["Test Author"]
    [step] = [p for p in descr.inputs[0].preprocessing if p.id != "ensure_dtype"]
    assert step.id == "zero_mean_unit_variance" and list(step.kwargs.axes) == ["y", "x"]
    assert [str(c) for c in descr.outputs[0].axes[1].channel_names] == ["background", "nucleus"]
    names = set(zipfile.ZipFile(package).namelist())
    assert {WEIGHTS_NAME, CARD_NAME, "cover.png", "README.md", "rdf.yaml"} <= names
    readme = zipfile.ZipFile(package).read("README.md").decode()
    assert "## Validation" in readme and "generated noise" in readme


@pytest.mark.slow  # bioimage.io's test runs both weight formats at 6 input shapes (~10 s)
def test_bioimageio_core_test_passes_and_matches_our_predictor(exported):
    source, package = exported
    result = core.test_model(package)
    failed = [(d.name, [e.msg for e in d.errors]) for d in result.details if d.status == "failed"]
    assert result.status == "passed", failed
    names = {d.name for d in result.details}
    assert any("torchscript" in n for n in names) and any("pytorch_state_dict" in n for n in names)

    # a new image of an odd size, through bioimage.io's pipeline (its own z-score)
    image = np.random.default_rng(1).gamma(2.0, 40.0, (45, 38)).astype(np.float32)
    ours = Predictor(device="cpu", tile_size=None, precision="fp32").predict(
        zoo.load(source), image
    )
    descr = spec.load_description(package)
    for weights in ("torchscript", "pytorch_state_dict"):
        pipeline = core.create_prediction_pipeline(descr, weight_format=weights, devices=["cpu"])
        theirs = core.predict(model=pipeline, inputs=image[None, None])
        probabilities = theirs.members["probabilities"].data.values[0]
        np.testing.assert_allclose(probabilities, ours.probabilities, atol=1e-4)


def test_package_loads_back_with_identical_weights(exported, tmp_path):
    source, package = exported
    original, loaded = zoo.load(source), zoo.load(package)
    assert loaded.card == original.card and loaded.config == original.config
    expected = original.state_dict()
    for key, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, expected[key]), key
    extracted = zoo.resolve(package)
    stamp = extracted.stat().st_mtime_ns
    assert zoo.resolve(package) == extracted and extracted.stat().st_mtime_ns == stamp  # reused

    image = (np.random.default_rng(0).random((40, 36)) * 255).astype(np.uint8)
    import tifffile

    tifffile.imwrite(tmp_path / "img.tif", image)
    for model, folder in ((package, "a"), (source, "b")):
        args = ["predict", "--model", str(model), str(tmp_path / "img.tif")]
        assert main([*args, "--out", str(tmp_path / folder), "--quiet"]) == 0
    assert np.array_equal(
        tifffile.imread(tmp_path / "a/img.tif"), tifffile.imread(tmp_path / "b/img.tif")
    )


@pytest.mark.slow  # a fresh interpreter that imports torch
def test_torchscript_weights_run_without_napari_attnseg(exported, tmp_path):
    _, package = exported
    with zipfile.ZipFile(package) as archive:
        archive.extractall(tmp_path)
    code = (
        "import sys; sys.modules['napari_attnseg'] = None\n"
        "import numpy as np, torch\n"
        f"m = torch.jit.load({str(tmp_path / 'weights_torchscript.pt')!r})\n"
        f"x = np.load({str(tmp_path / 'test_input.npy')!r})\n"
        f"y = np.load({str(tmp_path / 'test_output.npy')!r})\n"
        "mean, std = x.mean(axis=(2, 3), keepdims=True), x.std(axis=(2, 3), keepdims=True)\n"
        "x = (x - mean) / (std + 1e-6)\n"
        "out = m(torch.from_numpy(x)).detach().numpy()\n"
        "print(float(np.abs(out - y).max()))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-800:]
    assert float(run.stdout.strip()) < 1e-4


def test_foreign_packages_are_refused_with_the_reason(exported, tmp_path):
    _, package = exported
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(foreign, "w") as dst:
        for item in src.infolist():
            if item.filename not in (WEIGHTS_NAME, CARD_NAME):
                dst.writestr(item, src.read(item))
    with pytest.raises(ForeignPackageError, match="napari-attnseg did not export"):
        zoo.load(foreign)
    not_a_package = tmp_path / "plain.zip"
    with zipfile.ZipFile(not_a_package, "w") as dst:
        dst.writestr("notes.txt", "hello")
    with pytest.raises(ModelFileError, match="not a bioimage.io model package"):
        zoo.load(not_a_package)
    (tmp_path / "broken.zip").write_text("not a zip")
    with pytest.raises(ModelFileError, match="not a readable zip"):
        zoo.load(tmp_path / "broken.zip")

    unpacked = tmp_path / "unpacked"
    shutil.unpack_archive(foreign, unpacked)
    with pytest.raises(ForeignPackageError):
        zoo.load(unpacked)


def test_cli_reports_a_foreign_package(exported, tmp_path, capsys):
    _, package = exported
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(foreign, "w") as dst:
        for item in src.infolist():
            if item.filename != WEIGHTS_NAME:
                dst.writestr(item, src.read(item))
    image = tmp_path / "img.tif"
    import tifffile

    tifffile.imwrite(image, np.zeros((20, 20), np.uint8))
    out = tmp_path / "out"
    assert main(["predict", "--model", str(foreign), str(image), "--out", str(out)]) == 1
    assert not out.exists()
    assert "did not export" in capsys.readouterr().err


@pytest.mark.slow
def test_percentile_softmax_and_resizing_models_match_through_bioimageio(tmp_path):
    """Per-channel scale_range + clip, three classes (softmax), an input scale in the network."""
    model = tiny(
        n_classes=3,
        in_channels=2,
        class_names=["background", "cell", "Cell"],
        normalization={"mode": "percentile", "low": 2, "high": 99},
        input_scale=0.5,
        license="research use only (not an SPDX identifier)",
    )
    image = np.random.default_rng(2).random((2, 60, 52)).astype(np.float32) * [[[1000]], [[9]]]
    report = export_bioimageio(model, tmp_path / "m.zip", image=image)
    assert any("LICENSE.md" in note for note in report.notes)
    descr = spec.load_description(report.path)
    assert [p.id for p in descr.inputs[0].preprocessing] == [
        "ensure_dtype",
        "scale_range",
        "clip",
        "ensure_dtype",
    ]
    assert [str(c) for c in descr.outputs[0].axes[1].channel_names] == [
        "background",
        "cell",
        "cell_2",
    ]
    pipeline = core.create_prediction_pipeline(descr, weight_format="torchscript", devices=["cpu"])
    other = np.random.default_rng(3).random((2, 41, 57)).astype(np.float32) * [[[500]], [[3]]]
    theirs = core.predict(model=pipeline, inputs=other[None].astype(np.float32))
    predictor = Predictor(device="cpu", tile_size=None, precision="fp32")
    ours = predictor.predict(model, other, channel_axis=0).probabilities  # (C, H, W) in
    np.testing.assert_allclose(theirs.members["probabilities"].data.values[0], ours, atol=1e-4)
    assert zoo.load(report.path).card.input_scale == 0.5


def test_normalisations_map_to_bioimageio_preprocessing():
    assert preprocessing_steps({"mode": "zscore"}, 1)[0][0]["id"] == "zero_mean_unit_variance"
    [step], _ = preprocessing_steps({"mode": "dataset", "mean": [1, 2, 3], "std": [4, 5, 6]}, 3)
    assert step == {
        "id": "fixed_zero_mean_unit_variance",
        "kwargs": {"mean": [1.0, 2.0, 3.0], "std": [4.0, 5.0, 6.0], "axis": "channel"},
    }
    [step], _ = preprocessing_steps({"mode": "minmax"}, 1)
    assert (step["kwargs"]["min_percentile"], step["kwargs"]["max_percentile"]) == (0.0, 100.0)
    assert preprocessing_steps({"mode": "none"}, 1)[0] == []
    with pytest.raises(ExportError, match="CLAHE"):
        preprocessing_steps({"mode": "zscore", "clahe": True}, 1)
    with pytest.raises(ExportError, match="one mean and std per channel"):
        preprocessing_steps({"mode": "dataset", "mean": [1, 2], "std": [1, 2]}, 3)


def test_clahe_model_is_refused_before_anything_is_written(tmp_path):
    model = tiny(normalization={"mode": "zscore", "clahe": True})
    with pytest.raises(ExportError, match="CLAHE"):
        export_bioimageio(model, tmp_path / "m.zip")
    assert not list(tmp_path.iterdir())


def test_export_never_overwrites_by_accident(exported, tmp_path, capsys):
    source, package = exported
    assert main(["export", str(source), "--out", str(package)]) == 1
    assert "already exists" in capsys.readouterr().err
    with pytest.raises(ExportError, match=r"\.zip"):
        export_bioimageio(tiny(), tmp_path / "model.tar")
    copy = tmp_path / "copy.safetensors"
    assert main(["export", str(source), "--format", "safetensors", "--out", str(copy)]) == 0
    assert torch.equal(
        zoo.load(copy).state_dict()["head.weight"], tiny().state_dict()["head.weight"]
    )


def test_citations_follow_the_architecture():
    cite = {
        arch: [c.doi for c in citations_for(create_model(arch, width=2, depth=1).config)]
        for arch in ("unet", "focal_use_net", "focal_attention_unet")
    }
    assert cite["unet"] == [U_NET.doi]
    assert (
        FOCAL_ATTENTION.doi in cite["focal_use_net"]
        and "10.1109/CVPR.2018.00745" in (cite["focal_use_net"])
    )
    assert "10.48550/arXiv.1804.03999" in cite["focal_attention_unet"]
    assert citations_for({"name": "focusnet"})[0].doi == "10.48550/arXiv.1902.03091"
    assert citations_for({"name": "afnet"})[0].doi == "10.32604/cmc.2021.017481"
    assert citations_for({"name": "denseunet"})[0].doi == "10.1109/ISBI52829.2022.9761624"


@pytest.mark.slow  # bioimage.io's pipeline, three images
@pytest.mark.parametrize("weights", ["torchscript", "pytorch_state_dict"])
def test_package_predicts_what_our_predictor_predicts_at_three_sizes(exported, weights):
    source, package = exported
    model = zoo.load(source)
    predictor = Predictor(device="cpu", tile_size=None, precision="fp32", tta=False)
    descr = spec.load_description(package)
    pipeline = core.create_prediction_pipeline(descr, weight_format=weights, devices=["cpu"])
    for seed, size in enumerate([(64, 64), (97, 130), (200, 150)]):
        image = np.random.default_rng(seed).gamma(2.0, 40.0, size).astype(np.float32)
        ours = predictor.predict(model, image).probabilities
        theirs = core.predict(model=pipeline, inputs=image[None, None])
        np.testing.assert_allclose(
            theirs.members["probabilities"].data.values[0], ours, atol=1e-4
        )


def test_the_readme_says_how_labels_are_made_for_each_kind_of_output():
    from napari_attnseg.export.spec_text import labelling_rule

    binary = labelling_rule(ModelCard(name="b", threshold=0.4), ["background", "nucleus"],
                            binary=True)  # fmt: skip
    assert binary == "as nucleus where P(nucleus) ≥ 0.4"
    classes = labelling_rule(ModelCard(name="c"), ["bg", "a", "b"], binary=False)
    assert classes == "with the class of highest probability"
    bands = ModelCard(name="n", instances={"method": "bands", "decode": "centre"})
    text = labelling_rule(bands, ["background", "interior", "boundary", "centre"], binary=False)
    assert "1 − P(background) ≥ 0.5" in text and "connected centre region" in text
    assert "highest probability" not in text  # arg-max would label interiors, not nuclei
