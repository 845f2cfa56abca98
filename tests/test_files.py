"""The engine for a set of input files (``inference/files.py``): naming, refusals, resume,
skipping bad inputs — the rules ``attnseg predict``, Dask's ``predict_files`` and the
widget's batch share."""

import json
import os

import numpy as np
import pytest
import tifffile

from napari_attnseg.inference import InferenceSettings
from napari_attnseg.inference.files import (
    BAD_INPUT,
    MARKER_DIR,
    Item,
    Resume,
    check_items,
    fingerprint,
    outputs_for,
    refuse_overwrite,
    refuse_shared_stems,
    run_items,
)


def image_file(path, seed=0):
    tifffile.imwrite(path, np.random.default_rng(seed).integers(0, 255, (16, 16), np.uint8))
    return path


def test_one_naming_rule_for_every_output(tmp_path):
    targets = outputs_for(tmp_path, "cells", probabilities=True, table=True, overlay=True)
    assert targets.mask == tmp_path / "cells.tif"
    assert targets.probabilities == tmp_path / "probabilities" / "cells.tif"
    assert targets.table == tmp_path / "cells.csv"
    assert targets.overlay == tmp_path / "cells_overlay.png"
    assert outputs_for(tmp_path, "cells").paths() == [tmp_path / "cells.tif"]


def test_inputs_sharing_a_stem_are_refused_and_listed(tmp_path):
    a, b = tmp_path / "a" / "x.png", tmp_path / "b" / "x.tif"
    with pytest.raises(ValueError, match="share a file name stem") as info:
        refuse_shared_stems([a, b, tmp_path / "y.png"])
    assert str(a) in str(info.value) and str(b) in str(info.value)
    assert "y.png" not in str(info.value)
    refuse_shared_stems([a, tmp_path / "y.png"])  # distinct stems: fine
    layers = [Item("one", "same", lambda: (np.zeros((4, 4)), None)),
              Item("two", "same", lambda: (np.zeros((4, 4)), None))]
    with pytest.raises(ValueError, match="same: one, two"):
        refuse_shared_stems(layers, where="output folders")


def test_an_output_never_lands_on_an_input(tmp_path):
    source = image_file(tmp_path / "cells.tif")
    link = tmp_path / "link.tif"
    os.link(source, link)  # another name for the same file
    with pytest.raises(ValueError, match="refusing to overwrite input files") as info:
        refuse_overwrite([link, tmp_path / "other.tif"], [source])
    assert f"{link} is the input {source}" in str(info.value)
    with pytest.raises(ValueError, match=f"{source} is an input"):
        refuse_overwrite([source], [source])
    with pytest.raises(ValueError, match="is the input 'cells'"):
        refuse_overwrite([source], {source: "'cells'"})
    refuse_overwrite([tmp_path / "out" / "cells.tif"], [source])


def test_the_resume_marker_records_the_input_model_and_every_result_setting(tmp_path):
    source = image_file(tmp_path / "img.tif")
    out = tmp_path / "out"
    marks = fingerprint("abc", InferenceSettings(), probabilities=True)
    resume = Resume(str(out), marks)
    targets = outputs_for(out, "img", probabilities=True)
    assert not resume.finished(source, targets)  # nothing written yet
    out.mkdir()
    for path in targets.paths():
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"done")
    assert not resume.finished(source, targets)  # outputs without a marker: redone
    marker = resume.mark(source)
    assert marker == out / MARKER_DIR / "img.json"
    record = json.loads(marker.read_text())
    assert record["input"]["path"] == str(source.resolve()) and record["model"] == "abc"
    assert record["probabilities"] is True and "threshold" in record["settings"]
    assert resume.finished(source, targets)

    # another model, another result-changing setting, or a changed input: not finished
    assert not Resume(str(out), {**marks, "model": "other"}).finished(source, targets)
    other = fingerprint("abc", InferenceSettings(threshold=0.7), probabilities=True)
    assert not Resume(str(out), other).finished(source, targets)
    diameter = fingerprint("abc", InferenceSettings(diameter=12.0), probabilities=True)
    assert diameter["diameter"] == 12.0 and "diameter" not in marks  # defaults stay unrecorded
    assert not Resume(str(out), diameter).finished(source, targets)
    # speed-only settings do not count
    fast = fingerprint("abc", InferenceSettings(device="cpu", batch_size=16), probabilities=True)
    assert fast == marks
    (out / "probabilities" / "img.tif").unlink()  # an output missing: not finished
    assert not resume.finished(source, targets)
    (out / "probabilities" / "img.tif").write_bytes(b"done")
    image_file(source, seed=1)
    os.utime(source, ns=(1, 1))
    assert not resume.finished(source, targets)


def test_a_bad_file_is_skipped_with_a_message_naming_it(tmp_path):
    good = image_file(tmp_path / "good.tif")
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"not an image")
    items = [Item.of_file(broken), Item.of_file(good)]
    seen, reports = [], []
    run = run_items(items, lambda item, progress: item.read()[0].shape, skip=BAD_INPUT,
                    progress=lambda done, total, message: reports.append(message),
                    on_done=lambda item, shape: seen.append(item.name))
    assert seen == ["good.tif"] and [i.name for i, _ in run.done] == ["good.tif"]
    assert len(run.skipped) == 1 and run.skipped[0].startswith("broken.tif: ")
    assert "broken.tif" in reports[0] and reports[0].startswith("1 of 2")
    # without ``skip`` a bad file stops the run
    with pytest.raises(ValueError, match="broken.tif"):
        run_items(items, lambda item, progress: item.read())


def test_checking_every_input_first_names_each_bad_one(tmp_path):
    good = image_file(tmp_path / "good.tif")
    bad = [tmp_path / "a.tif", tmp_path / "b.tif"]
    for path in bad:
        path.write_bytes(b"junk")
    items = [Item.of_file(p) for p in (good, *bad)]
    with pytest.raises(ValueError, match="nothing written: 2 of 3 inputs") as info:
        check_items(items, lambda item: [] if item.read() is not None else [])
    assert "a.tif" in str(info.value) and "b.tif" in str(info.value)
    assert check_items(items[:1], lambda item: ["a note"]) == {"good.tif": ["a note"]}


def test_predict_files_never_writes_onto_its_inputs(tmp_path):
    from napari_attnseg.inference.distributed import predict_files
    from napari_attnseg.models import create_model

    source = image_file(tmp_path / "cells.tif")
    original = source.read_bytes()
    with pytest.raises(ValueError, match="refusing to overwrite input files"):
        predict_files(create_model("unet", width=2, depth=1), [source], tmp_path)
    assert source.read_bytes() == original and not (tmp_path / MARKER_DIR).exists()
