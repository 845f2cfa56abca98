"""Prediction on Dask: one task per file, one large image block by block; resuming; the CLI.

The distributed paths must give what the single-process ``Predictor`` gives:
masks of a folder are identical (the same code runs per file), and a
block-wise prediction is identical bit for bit with ``batch_size=1`` and fp32
(each block follows the whole plane's window grid; see
``inference/blockwise.py``), within ~1e-5 with larger tile batches (the
backend rounds differently per batch composition, as it does in one process).
One LocalCluster of two worker processes serves the cluster tests.
"""

from __future__ import annotations

import os
from contextlib import nullcontext

import dask.array as da
import numpy as np
import pytest
import tifffile
import torch
import zarr
from monai.data.utils import dense_patch_slices
from monai.inferers.utils import _get_scan_interval

from napari_attnseg.cli import main
from napari_attnseg.data.input_spec import InputSpec
from napari_attnseg.data.io import read_image, read_mask
from napari_attnseg.data.lazy import open_lazy
from napari_attnseg.inference import InferenceSettings, Predictor, blockwise
from napari_attnseg.inference.blockwise import (
    apply_statistics,
    plane_statistics,
    predict_blockwise,
    window_starts,
)
from napari_attnseg.inference.distributed import (
    local_client,
    model_loads,
    predict_files,
)
from napari_attnseg.models import ModelCard, create_model, load_model, save_model
from napari_attnseg.progress import Cancelled, CancelToken

TILE = 64
EXACT = InferenceSettings(precision="fp32", tile_size=TILE, overlap=0.25, batch_size=1)


def tiny_model(path, **card):
    torch.manual_seed(0)
    model = create_model("focal_attention_unet", in_channels=1, n_classes=1, width=4, depth=2)
    model.card = ModelCard(name="tiny", normalization={"mode": "zscore"}, **card)
    return save_model(model, path)


def smooth_image(shape, seed=0):
    """Blobs with a slope: tiny models then give masks with real edges, not noise."""
    from skimage.filters import gaussian

    rng = np.random.default_rng(seed)
    image = gaussian(rng.normal(0, 1, shape), 3, channel_axis=None) * 800
    ramp = np.linspace(0, 60, shape[-1])
    return (image + ramp + 100).astype(np.float32)


def whole(model_path, image, settings=EXACT, **kwargs):
    return Predictor(settings).predict(load_model(model_path), image, **kwargs)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of two worker processes, one thread each (started once)."""
    with local_client(2, dashboard_address=None) as client:
        yield client


@pytest.fixture
def folder(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, shape in enumerate([(48, 56), (90, 70), (100, 130), (64, 64), (40, 90), (120, 80)]):
        tifffile.imwrite(folder / f"img{i}.tif", smooth_image(shape, i).astype(np.uint16))
    return folder


def output(path):
    group = zarr.open_group(str(path), mode="r")
    probs = group["probabilities"][...] if "probabilities" in group else None
    return group["labels"][...], probs, group["done"][...]


# -- the window grid and normalisation that block-wise prediction reproduces -------------
@pytest.mark.parametrize("size", [40, 64, 65, 200, 301])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.9])
def test_window_grid_is_monai_s(size, overlap):
    interval = _get_scan_interval((max(size, TILE),), (TILE,), 1, (overlap,))
    slices = dense_patch_slices((max(size, TILE),), (TILE,), interval)
    assert window_starts(size, TILE, overlap) == [s[0].start for s in slices]


@pytest.mark.parametrize(
    "normalization",
    [
        {"mode": "zscore"},
        {"mode": "percentile", "low": 2, "high": 98},
        {"mode": "minmax"},
        {"mode": "dataset", "mean": [90.0, 3.0], "std": [20.0, 1.0]},
    ],
)
def test_plane_statistics_normalise_any_part_as_the_whole_plane(normalization):
    image = np.stack([smooth_image((50, 60)), smooth_image((50, 60), 1)], -1)
    image[3, 4, 0] = np.nan
    image[10, 11, 1] = np.inf
    spec = InputSpec(2, normalization)
    expected, _ = spec.network_input(image)
    chw = spec.channels(image)
    stats = plane_statistics(chw, spec.normalization)
    part = (slice(None), slice(0, 20), slice(5, 40))
    assert np.array_equal(apply_statistics(chw[part], spec.normalization, stats), expected[part])


# -- block-wise, in this process -------------------------------------------------------
@pytest.mark.parametrize("tta", [False, True])
def test_blockwise_is_identical_to_the_whole_image(model_path, tmp_path, tta):
    image = smooth_image((190, 230))
    settings = InferenceSettings(**{**EXACT.__dict__, "tta": tta})
    labels = predict_blockwise(
        model_path, image, tmp_path / "out.zarr", settings, chunk=96, probabilities=True
    )
    reference = whole(model_path, image, settings)
    got_labels, got_probs, done = output(tmp_path / "out.zarr")
    assert labels.shape == image.shape and done.shape == (2, 3) and done.all()
    assert labels.chunks == (96, 96)
    if tta:  # the flips of a window go through the network as one batch in the whole image
        assert_agrees_to_rounding(got_labels, got_probs, reference.labels, reference.foreground)
    else:
        assert np.array_equal(got_probs, reference.foreground)
        assert np.array_equal(got_labels, reference.labels)
    assert 0 < reference.labels.mean() < 1  # a mask with edges, so seams would show


def assert_agrees_to_rounding(labels, probs, reference_labels, reference_probs, atol=1e-4):
    """Equal up to float rounding: CPU inference runs channels-last, where oneDNN's
    convolutions round differently for another batch composition or thread count
    (~1e-6 in probability), so labels may differ only where the probability sits at
    the threshold."""
    assert np.abs(probs - reference_probs).max() < atol
    clear = np.abs(reference_probs - 0.5) > atol
    assert np.array_equal(labels[clear], reference_labels[clear])


def test_blockwise_with_tile_batches_agrees_to_rounding(model_path, tmp_path):
    image = smooth_image((190, 230))
    settings = InferenceSettings(**{**EXACT.__dict__, "batch_size": 4})
    predict_blockwise(
        model_path, image, tmp_path / "out.zarr", settings, chunk=96, probabilities=True
    )
    reference = whole(model_path, image, settings)
    labels, probs, _ = output(tmp_path / "out.zarr")
    assert_agrees_to_rounding(labels, probs, reference.labels, reference.foreground)


def test_large_planes_get_their_statistics_from_dask(model_path, tmp_path, monkeypatch):
    monkeypatch.setattr(blockwise, "EXACT_STATISTICS_PIXELS", 0)
    image = smooth_image((150, 170))
    image[5, 7] = np.nan  # filled with the plane's (approximate) median
    zarr.create_array(str(tmp_path / "in.zarr"), data=image, chunks=(64, 64), zarr_format=2)
    predict_blockwise(
        model_path, tmp_path / "in.zarr", tmp_path / "out.zarr", EXACT, chunk=64, probabilities=True
    )
    stats = zarr.open_group(str(tmp_path / "out.zarr")).attrs[blockwise.FORMAT]["statistics"][0]
    assert stats["fill"]["values"][0] == pytest.approx(np.nanmedian(image), rel=0.02)
    filled = np.where(np.isfinite(image), image, stats["fill"]["values"][0])
    assert stats["mean"]["values"][0] == pytest.approx(filled.mean(dtype=np.float64), rel=1e-4)
    _, probs, _ = output(tmp_path / "out.zarr")
    reference = whole(model_path, image).foreground
    away = np.ones(image.shape, bool)
    away[:40, :40] = False  # the NaN pixel's neighbourhood: its fill value is approximate
    assert np.abs(probs - reference)[away].max() < 1e-4


def test_an_interrupted_run_resumes_without_redoing_finished_blocks(
    model_path, tmp_path, monkeypatch
):
    image = smooth_image((190, 230))
    out = tmp_path / "out.zarr"
    calls = []
    original = Predictor.predict
    monkeypatch.setattr(Predictor, "predict", lambda *a, **k: calls.append(1) or original(*a, **k))
    cancel = CancelToken()

    def stop_after_two(done, total, message=""):
        if done == 2:
            cancel.cancel()

    with pytest.raises(Cancelled):
        predict_blockwise(
            model_path, image, out, EXACT, chunk=96, progress=stop_after_two, cancel=cancel
        )
    assert output(out)[2].sum() == 2  # the third block was stopped part-way
    calls.clear()
    labels = predict_blockwise(model_path, image, out, EXACT, chunk=96)
    assert len(calls) == 6 - 2
    assert np.array_equal(labels[...], whole(model_path, image).labels)


def test_outputs_of_other_runs_are_never_silently_replaced(model_path, tmp_path):
    image = smooth_image((70, 80))
    out = tmp_path / "out.zarr"
    predict_blockwise(model_path, image, out, EXACT, chunk=64)
    other = InferenceSettings(**{**EXACT.__dict__, "threshold": 0.9})
    with pytest.raises(ValueError, match=r"made differently \(settings differ\)"):
        predict_blockwise(model_path, image, out, other, chunk=64)
    predict_blockwise(model_path, image, out, other, chunk=64, overwrite=True)
    assert zarr.open_group(str(out)).attrs[blockwise.FORMAT]["fingerprint"]["settings"][
        "threshold"
    ] == pytest.approx(0.9)
    (tmp_path / "mine").mkdir()
    with pytest.raises(ValueError, match="not a napari-attnseg block-wise prediction"):
        predict_blockwise(model_path, image, tmp_path / "mine", EXACT, chunk=64, overwrite=True)


def test_cards_that_need_the_whole_image_are_refused(tmp_path):
    image = smooth_image((70, 80))
    fixed = tiny_model(tmp_path / "fixed", input_size=[64, 64])
    with pytest.raises(ValueError, match="resizes every image to 64x64"):
        predict_blockwise(fixed, image, tmp_path / "a.zarr", EXACT, chunk=64)
    clahe = tiny_model(tmp_path / "clahe")
    card = load_model(clahe).card
    card.normalization = {"mode": "zscore", "clahe": True}
    save_model(load_model(clahe), clahe, card)
    with pytest.raises(ValueError, match="CLAHE"):
        predict_blockwise(clahe, image, tmp_path / "b.zarr", EXACT, chunk=64)
    with pytest.raises(ValueError, match="at least the tile size"):
        predict_blockwise(fixed, image, tmp_path / "c.zarr", EXACT, chunk=32)


def test_lazy_files_read_like_read_image(tmp_path):
    stack = (smooth_image((3, 70, 90)) * 10).astype(np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", stack, compression="zlib", photometric="minisblack")
    rgb = (smooth_image((70, 90, 3)) % 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb", planarconfig="separate")
    for name in ("stack.tif", "rgb.tif"):
        lazy = open_lazy(tmp_path / name)
        assert np.array_equal(lazy[..., 5:40, :], read_image(tmp_path / name)[..., 5:40, :])
    group = zarr.open_group(str(tmp_path / "image.ome.zarr"), mode="w", zarr_format=2)
    group.create_array("0", data=stack[None, :, None])  # t, c, z, y, x with t = z = 1
    group.attrs["multiscales"] = [
        {
            "axes": [{"name": a} for a in "tczyx"],
            "datasets": [{"path": "0"}],
        }
    ]
    lazy = open_lazy(tmp_path / "image.ome.zarr")
    assert lazy.shape == (3, 70, 90) and lazy.channel_axis == 0 and lazy.name == "image"
    assert np.array_equal(lazy[:, 10:20, 30:50], stack[:, 10:20, 30:50])


# -- one task per file, in this process ------------------------------------------------
def test_files_resume_and_redo_with_other_settings(model_path, folder, tmp_path, monkeypatch):
    files = sorted(folder.glob("*.tif"))
    out = tmp_path / "out"
    first = predict_files(model_path, files, out, EXACT, probabilities=True)
    assert [p.name for p in first.outputs] == [p.name for p in files] and not first.skipped
    for path in files:
        reference = whole(model_path, read_image(path))
        assert np.array_equal(read_mask(out / path.name, binary=False), reference.labels)
        assert np.array_equal(
            tifffile.imread(out / "probabilities" / path.name), reference.foreground
        )
    calls = []
    original = Predictor.predict
    monkeypatch.setattr(Predictor, "predict", lambda *a, **k: calls.append(1) or original(*a, **k))
    (out / "img2.tif").unlink()
    again = predict_files(model_path, files, out, EXACT, probabilities=True)
    assert len(calls) == 1 and [p.name for p in again.outputs] == ["img2.tif"]
    assert len(again.skipped) == len(files) - 1
    other = InferenceSettings(**{**EXACT.__dict__, "threshold": 0.7})
    assert len(predict_files(model_path, files, out, other, probabilities=True).outputs) == 6


def test_instances_redo_files_made_with_another_stitch(model_path, folder, tmp_path):
    """Linking objects across planes changes instance labels: a finished file is redone
    when --stitch (or --instances itself) changed, skipped when nothing did."""
    files = sorted(folder.glob("*.tif"))[:2]
    out = tmp_path / "out"
    linked = InferenceSettings(**{**EXACT.__dict__, "instances": True, "stitch": 0.25})
    plane_by_plane = InferenceSettings(**{**linked.__dict__, "stitch": None})
    assert len(predict_files(model_path, files, out, linked).outputs) == 2
    assert len(predict_files(model_path, files, out, linked).skipped) == 2
    assert len(predict_files(model_path, files, out, plane_by_plane).outputs) == 2
    assert len(predict_files(model_path, files, out, EXACT).outputs) == 2  # a mask again


# -- the command line --------------------------------------------------------------------
def test_zarr_inputs_are_predicted_blockwise_by_the_cli(model_path, tmp_path):
    image = smooth_image((150, 170))
    zarr.save_array(str(tmp_path / "big.zarr"), image, zarr_format=2)
    argv = ["predict", "--model", str(model_path), str(tmp_path / "big.zarr"), "--out"]
    common = ["--tile-size", "64", "--batch-size", "1", "--chunk", "64", "--quiet"]
    assert main([*argv, str(tmp_path / "out"), *common]) == 0
    settings = InferenceSettings(tile_size=64, batch_size=1)  # the CLI's precision: auto
    labels = zarr.open_group(str(tmp_path / "out" / "big.zarr"))["labels"][...]
    assert np.array_equal(labels, whole(model_path, image, settings).labels)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--scheduler", "tcp://127.0.0.1:9", "--connect-timeout", "0.5"], "cannot reach"),
        (["--scheduler-file", "missing.json"], "scheduler file not found: missing.json"),
        (["--workers", "2", "--scheduler", "tcp://127.0.0.1:9"], "either --workers"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--scheduler", "tcp://127.0.0.1:9", "missing.tif"], "input not found: missing.tif"),
        # options of the single-process path are named, never dropped
        (["--workers", "1", "--table"], "--table is not available with Dask"),
        (["--workers", "1", "--overlay", "--roi", "none.png"], "--overlay and --roi FILE|DIR are"),
        (["--blockwise", "--instances"], "--instances needs whole images"),
    ],
)
def test_cli_errors_are_one_line(model_path, folder, tmp_path, capsys, extra, message):
    argv = ["predict", "--model", str(model_path), str(folder), "--out", str(tmp_path / "o")]
    inputs = [a for a in extra if a.endswith(".tif")]
    options = [a for a in extra if not a.endswith(".tif")]
    if inputs:
        argv[3] = inputs[0]
    assert main([*argv, *options, "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("attnseg predict: error: ") and message in err
    assert "\n" not in err


def test_the_dask_path_takes_the_single_process_settings(model_path, folder, tmp_path, monkeypatch):
    """--instances, --diameter, --roi, --precision and --stitch reach the Dask tasks as they reach
    the single-process path (in-process here: the same task code the workers run)."""
    import napari_attnseg.inference.distributed as engine
    from napari_attnseg.cli import _distributed, build_parser

    argv = ["predict", "--model", str(model_path), str(folder), "--quiet", "--instances",
            "--diameter", "12", "--roi", "none", "--precision", "fp32", "--tile-size", "64",
            "--out", str(tmp_path / "x"), "--workers", "1"]
    seen = {}

    def fake(model, files, out, settings, **kwargs):
        seen.update(settings=settings)
        raise SystemExit(0)  # before a cluster starts

    monkeypatch.setattr(engine, "predict_files", fake)
    monkeypatch.setattr(engine, "local_client", lambda *a, **k: nullcontext(None))
    with pytest.raises(SystemExit):
        _distributed.run_distributed(build_parser().parse_args(argv))
    settings = seen["settings"]
    assert (settings.instances, settings.diameter, settings.roi, settings.precision) == (
        True, 12.0, "none", "fp32")
    assert settings.stitch == 0.25  # the single-process default
    seen.clear()
    with pytest.raises(SystemExit):
        _distributed.run_distributed(build_parser().parse_args([*argv, "--stitch", "0.6"]))
    assert seen["settings"].stitch == 0.6
    files = sorted(folder.glob("*.tif"))[:2]
    result = predict_files(model_path, files, tmp_path / "inst", settings)
    assert len(result.outputs) == 2
    for path in files:
        expected = whole(model_path, read_image(path), settings).instances
        got = read_mask(tmp_path / "inst" / path.name, binary=False)
        assert expected is not None and expected.max() > 1  # objects, numbered
        assert np.array_equal(got, expected)


# -- on a LocalCluster of two worker processes --------------------------------------------
def test_cluster_masks_are_identical_and_the_model_loads_once_per_worker(client, folder, tmp_path):
    model = tiny_model(tmp_path / "fresh.safetensors")  # not yet in any worker's cache
    before = client.run(model_loads)
    files = sorted(folder.glob("*.tif"))
    result = predict_files(
        model, files, tmp_path / "out", EXACT, probabilities=True, client=client, torch_threads=1
    )
    assert len(result.outputs) == len(files)
    loads = {w: n - before[w] for w, n in client.run(model_loads).items()}
    assert sum(loads.values()) >= 1 and max(loads.values()) == 1
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ:  # it slows PyTorch down (local_client)
        trim = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
        assert set(trim.values()) == {None}
    for path in files:
        reference = whole(model, read_image(path))
        assert np.array_equal(
            read_mask(tmp_path / "out" / path.name, binary=False), reference.labels
        )
        probs = tifffile.imread(tmp_path / "out" / "probabilities" / path.name)
        assert np.array_equal(probs, reference.foreground)


def test_cluster_blockwise_from_zarr_and_from_a_dask_stack(client, model_path, tmp_path):
    image = smooth_image((190, 230))
    zarr.save_array(str(tmp_path / "in.zarr"), image, zarr_format=2)
    predict_blockwise(
        model_path,
        tmp_path / "in.zarr",
        tmp_path / "a.zarr",
        EXACT,
        chunk=96,
        probabilities=True,
        client=client,
    )
    labels, probs, done = output(tmp_path / "a.zarr")
    reference = whole(model_path, image)
    assert done.all() and np.array_equal(probs, reference.foreground)
    assert np.array_equal(labels, reference.labels)

    stack = np.stack([smooth_image((130, 150), 1), smooth_image((130, 150), 2)])
    lazy = da.from_array(stack, chunks=(1, 50, 50))
    predict_blockwise(model_path, lazy, tmp_path / "b.zarr", EXACT, chunk=80, client=client)
    labels, _, done = output(tmp_path / "b.zarr")
    assert done.shape == (2, 2, 2) and done.all()
    assert np.array_equal(labels, whole(model_path, stack).labels)


def test_cluster_run_redoes_only_unfinished_blocks(client, model_path, tmp_path):
    image = smooth_image((190, 230))
    out = tmp_path / "out.zarr"
    predict_blockwise(model_path, image, out, EXACT, chunk=96, client=client)
    group = zarr.open_group(str(out), mode="r+")
    expected = group["labels"][...]
    group["done"][1, :] = 0  # as if the run had been killed before the second row of blocks
    group["labels"][96:, :] = 0
    flags = {name: os.stat(out / "done" / name).st_mtime_ns for name in ("0.0", "0.1", "0.2")}
    predict_blockwise(model_path, image, out, EXACT, chunk=96, client=client)
    assert np.array_equal(group["labels"][...], expected) and group["done"][...].all()
    assert {name: os.stat(out / "done" / name).st_mtime_ns for name in flags} == flags


def test_cluster_failures_name_the_file_and_keep_the_others(client, model_path, folder, tmp_path):
    (folder / "broken.tif").write_bytes(b"not a tiff")
    files = sorted(folder.glob("*.tif"))
    with pytest.raises(ValueError, match=r"1 of 7 files failed .*broken\.tif: cannot read"):
        predict_files(model_path, files, tmp_path / "out", EXACT, client=client)
    assert len(list((tmp_path / "out").glob("*.tif"))) == 6


def test_cli_on_a_running_cluster_matches_the_single_process_cli(
    client, model_path, folder, tmp_path
):
    argv = ["predict", "--model", str(model_path), str(folder), "--quiet", "--tile-size", "64",
            "--probabilities"]
    assert main([*argv, "--out", str(tmp_path / "single")]) == 0
    address = client.scheduler.address
    assert main([*argv, "--out", str(tmp_path / "dask"), "--scheduler", address]) == 0
    for path in sorted(folder.glob("*.tif")):
        single, dask = (
            (read_mask(tmp_path / run / path.name, binary=False),
             tifffile.imread(tmp_path / run / "probabilities" / path.name))
            for run in ("single", "dask")
        )
        # the workers run torch on another number of threads than this process
        assert_agrees_to_rounding(*dask, *single)


def test_the_dask_path_never_writes_onto_an_input(tmp_path, capsys):
    from napari_attnseg.cli import main

    images = tmp_path / "images"
    images.mkdir()
    tifffile.imwrite(images / "x.tif", np.zeros((32, 32), np.uint8))
    before = (images / "x.tif").read_bytes()
    code = main(
        ["predict", "--model", "nuclei", str(images), "--out", str(images), "--workers", "1"]
    )
    assert code == 1 and "refusing to overwrite input files" in capsys.readouterr().err
    assert (images / "x.tif").read_bytes() == before


def test_blockwise_runs_drop_what_needs_the_whole_image_and_say_so(tmp_path):
    """A nuclei-like card (object size, instances, fundus region) predicted block by block:
    every block runs at the trained scale, everywhere, as class labels — with a note each."""
    path = tiny_model(
        tmp_path / "m.safetensors", object_diameter=6.0, instances={"method": "watershed"},
        roi={"method": "fundus"},
    )
    image = smooth_image((150, 170))
    notes = []
    settings = InferenceSettings(**{**EXACT.__dict__, "instances": True, "diameter": "auto"})
    labels = predict_blockwise(
        path, image, tmp_path / "out.zarr", settings, chunk=96, on_message=notes.append
    )
    assert len(notes) == 3 and "instances" in notes[0] and "diameter" in notes[1]
    assert "fundus" in notes[2]
    plain = InferenceSettings(**{**EXACT.__dict__, "diameter": None, "roi": "none"})
    assert np.array_equal(labels[...], whole(path, image, plain).labels)


# -- every option of `attnseg predict` reaches the Dask path or is refused by name ---------
def channel_model(path, channels=2):
    torch.manual_seed(0)
    model = create_model(
        "focal_attention_unet", in_channels=channels, n_classes=1, width=4, depth=2
    )
    model.card = ModelCard(name="tiny2", normalization={"mode": "zscore"})
    return save_model(model, path)


def test_channel_axis_reaches_the_workers_and_the_blocks(client, tmp_path, monkeypatch):
    """--channel-axis 0: a (2, H, W) image is one two-channel image on every path (it was
    dropped on the Dask path, where the model then saw two one-channel planes)."""
    import napari_attnseg.inference.distributed as engine

    model = channel_model(tmp_path / "two.safetensors")
    (tmp_path / "in").mkdir()
    image = np.stack([smooth_image((90, 110), 1), smooth_image((90, 110), 2)]).astype(np.uint16)
    tifffile.imwrite(tmp_path / "in" / "two.tif", image, photometric="minisblack")
    argv = ["predict", "--model", str(model), str(tmp_path / "in" / "two.tif"), "--quiet",
            "--channel-axis", "0", "--tile-size", "64", "--batch-size", "1", "--precision", "fp32"]
    assert main([*argv, "--out", str(tmp_path / "single")]) == 0
    # --workers 1 on the module's running cluster (no second cluster to start)
    monkeypatch.setattr(engine, "local_client", lambda *a, **k: nullcontext(client))
    assert main([*argv, "--out", str(tmp_path / "dask"), "--workers", "1"]) == 0
    assert main([*argv, "--out", str(tmp_path / "blocks"), "--blockwise", "--chunk", "64"]) == 0
    single = read_mask(tmp_path / "single" / "two.tif", binary=False)
    assert single.shape == (90, 110) and 0 < single.mean() < 1
    assert np.array_equal(read_mask(tmp_path / "dask" / "two.tif", binary=False), single)
    blocks = zarr.open_group(str(tmp_path / "blocks" / "two.zarr"), mode="r")
    assert blocks.attrs[blockwise.FORMAT]["fingerprint"]["layout"]["channel_axis"] == 0
    assert np.array_equal(blocks["labels"][...], single)


def test_files_are_redone_when_the_channel_axis_diameter_or_roi_change(model_path, tmp_path):
    """The resume marker records every setting that changes a file's mask, so a rerun with
    another --channel-axis, --diameter or --roi never keeps the old masks."""
    (tmp_path / "in").mkdir()
    stack = (smooth_image((3, 60, 72)) * 10).astype(np.uint16)
    tifffile.imwrite(tmp_path / "in" / "s.tif", stack, photometric="minisblack")
    files, out = [tmp_path / "in" / "s.tif"], tmp_path / "out"
    assert len(predict_files(model_path, files, out, EXACT).outputs) == 1
    assert tifffile.imread(out / "s.tif").shape == (3, 60, 72)  # a stack of three planes
    assert len(predict_files(model_path, files, out, EXACT).skipped) == 1
    assert len(predict_files(model_path, files, out, EXACT, channel_axis=0).outputs) == 1
    assert tifffile.imread(out / "s.tif").shape == (60, 72)  # one image of three channels
    assert len(predict_files(model_path, files, out, EXACT, channel_axis=0).skipped) == 1
    for change in ({"diameter": 12.0}, {"roi": "none"}):
        settings = InferenceSettings(**{**EXACT.__dict__, **change})
        assert len(predict_files(model_path, files, out, settings).outputs) == 1, change
        assert len(predict_files(model_path, files, out, settings).skipped) == 1, change


#: given on every run of the audit below
ALWAYS_GIVEN = {"--model", "--out", "--quiet"}
#: ``(flag, its arguments, other arguments it needs, what the Dask path does, baseline)``:
#: "changes" — honoured, and it changes the outputs (against the baseline, by default the
#: other arguments alone), so equal outputs with and without --workers show that it reached
#: the Dask tasks; "same" — honoured (equal outputs), though it changes nothing for this
#: model and image; any other text — refused, with an error that says this.
PREDICT_OPTIONS = [
    ("--tta", ["--tta"], ["--probabilities"], "changes", None),
    ("--no-tta", ["--no-tta"], ["--probabilities", "--tta"], "changes", None),
    ("--device", ["--device", "cpu"], [], "same", None),
    ("--precision", ["--precision", "bf16"], ["--probabilities"], "changes",
     ["--probabilities", "--precision", "fp32"]),
    ("--tile-size", ["--tile-size", "32"], ["--probabilities"], "changes", None),
    ("--overlap", ["--overlap", "0.5"], ["--tile-size", "32", "--probabilities"], "changes", None),
    ("--batch-size", ["--batch-size", "1"], ["--tile-size", "32", "--probabilities"], "same", None),
    ("--threshold", ["--threshold", "0.9"], [], "changes", None),
    ("--diameter", ["--diameter", "12"], ["--probabilities"], "changes", None),
    # the card records no field of view
    ("--fov-diameter", ["--fov-diameter", "300"], [], "same", None),
    ("--channel-axis", ["--channel-axis", "0"], [], "changes", None),
    ("--roi", ["--roi", "none"], ["--probabilities"], "changes", None),
    ("--roi", ["--roi", "roi.png"], [], "--roi FILE|DIR is not available with Dask", None),
    ("--instances", ["--instances"], [], "changes", None),
    ("--stitch", ["--stitch", "0.9"], ["--instances"], "changes", None),
    ("--no-stitch", ["--no-stitch"], ["--instances"], "changes", None),
    ("--table", ["--table"], [], "--table is not available with Dask", None),
    ("--overlay", ["--overlay"], [], "--overlay is not available with Dask", None),
    ("--probabilities", ["--probabilities"], [], "changes", None),
    ("--debug", ["--debug"], [], "same", None),  # tracebacks of errors
]


def predict_options() -> set[str]:
    """The flags of ``attnseg predict`` outside its Dask group (those only mean Dask)."""
    import argparse

    from napari_attnseg.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    predict = commands.choices["predict"]
    dask = next(g for g in predict._action_groups if g.title == "scale out (Dask)")
    flags = {s for a in predict._actions if a not in dask._group_actions for s in a.option_strings}
    return flags - {"-h", "--help"}


def test_the_option_audit_covers_every_predict_option():
    covered = ALWAYS_GIVEN | {flag for flag, *_ in PREDICT_OPTIONS}
    missing = sorted(predict_options() - covered)
    assert not missing, f"add these options of attnseg predict to PREDICT_OPTIONS: {missing}"


@pytest.fixture(scope="module")
def audit(tmp_path_factory):
    """A nuclei-like tiny model (object size, fundus region) and a 3-plane stack whose
    planes are nearly alike (objects linked across planes); runs cached by arguments."""
    root = tmp_path_factory.mktemp("audit")
    model = tiny_model(root / "m.safetensors", object_diameter=6.0, roi={"method": "fundus"})
    rng = np.random.default_rng(0)
    base = smooth_image((60, 72))
    stack = np.stack([base + rng.normal(0, 5, base.shape) for _ in range(3)]).astype(np.uint16)
    (root / "in").mkdir()
    tifffile.imwrite(root / "in" / "s.tif", stack, photometric="minisblack")
    return {"root": root, "model": model, "runs": {}}


def run_predict(audit, args, dask, capsys):
    """``(exit code, error line, {output file: content})`` of one cached ``attnseg predict``."""
    key = (tuple(args), dask)
    if key not in audit["runs"]:
        out = audit["root"] / f"out{len(audit['runs'])}"
        argv = ["predict", "--model", str(audit["model"]), str(audit["root"] / "in"),
                "--out", str(out), "--quiet", *args, *(["--workers", "1"] if dask else [])]
        code = main(argv)
        error = capsys.readouterr().err
        written = {
            str(p.relative_to(out)): tifffile.imread(p) if p.suffix == ".tif" else p.read_bytes()
            for p in sorted(out.rglob("*")) if p.is_file() and ".attnseg" not in p.parts
        } if out.exists() else {}  # fmt: skip
        audit["runs"][key] = code, error, written
    return audit["runs"][key]


def same_outputs(a, b) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "flag, args, context, expected, baseline",
    PREDICT_OPTIONS,
    ids=[" ".join(case[1]) for case in PREDICT_OPTIONS],
)
def test_every_predict_option_reaches_the_dask_path_or_is_refused_by_name(
    audit, monkeypatch, capsys, flag, args, context, expected, baseline
):
    """With --workers 1 (in this process: the task code the workers run) every option gives
    the single-process outputs, or the run is refused with one line naming the option."""
    import napari_attnseg.inference.distributed as engine

    if flag not in predict_options():
        pytest.skip(f"attnseg predict has no {flag}")
    monkeypatch.setattr(engine, "local_client", lambda *a, **k: nullcontext(None))
    code, error, dask = run_predict(audit, [*context, *args], True, capsys)
    if expected not in ("same", "changes"):
        assert code == 1 and expected in error and flag in error
        assert not dask  # nothing written
        return
    assert code == 0, error
    single_code, single_error, single = run_predict(audit, [*context, *args], False, capsys)
    assert single_code == 0, single_error
    assert dask and same_outputs(dask, single)
    if expected == "changes":
        _, _, without = run_predict(audit, baseline or context, True, capsys)
        assert not same_outputs(dask, without), f"{' '.join(args)} changed nothing"
