"""The session's models: a private handle per job, files checked when chosen, removable."""

import json
import threading

import numpy as np
import pytest
import torch

import napari_attnseg.inference as inference
from napari_attnseg.inference import Predictor
from napari_attnseg.models import save_model
from napari_attnseg.widgets import _models

from .conftest import blobs, dock, errors, tiny_model, wait_done


def layer_data(viewer):
    return {layer.name: np.array(layer.data) for layer in viewer.layers}


def run(qtbot, widget, start):
    assert start()
    wait_done(qtbot, widget)


@pytest.mark.slow
def test_segment_and_attention_at_once_each_get_their_own_handle(
        viewer, qtbot, saved_model, monkeypatch, notifications):
    viewer.add_image(blobs()[0], name="cells")
    segment = dock(viewer, "Segment")
    attention = dock(viewer, "Attention")
    segment.device_picker.setCurrentIndex(segment.device_picker.findData("cpu"))
    attention.device_picker.setCurrentIndex(attention.device_picker.findData("cpu"))
    run(qtbot, segment, segment.segment)
    run(qtbot, attention, attention.show_attention)
    alone = layer_data(viewer)
    template = _models.session().template(segment.model_picker.current())
    kept = {k: v.clone() for k, v in template.state_dict().items()}

    # now both at once; the Segment job wrecks its handle (as a failed out-of-memory fallback
    # or a stray hook might) before the Attention job computes its maps
    both_running, wrecked = threading.Barrier(2, timeout=20), threading.Event()
    handles = {}
    predict, maps = Predictor.predict, inference.attention_maps

    def wrecking_predict(self, model, image, **kwargs):
        handles["segment"] = model
        both_running.wait()
        out = predict(self, model, image, **kwargs)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.zero_()
        model.half()
        wrecked.set()
        return out

    def late_attention_maps(model, image, **kwargs):
        handles["attention"] = model
        both_running.wait()
        assert wrecked.wait(20)
        return maps(model, image, **kwargs)

    monkeypatch.setattr(Predictor, "predict", wrecking_predict)
    monkeypatch.setattr(inference, "attention_maps", late_attention_maps)
    assert segment.segment() and attention.show_attention()
    wait_done(qtbot, segment)
    wait_done(qtbot, attention)
    assert errors(notifications) == []
    assert handles["segment"] is not handles["attention"]
    assert template not in handles.values()
    together = layer_data(viewer)
    assert together.keys() == alone.keys()
    for name in alone:  # the same labels and the same attention maps as when run alone
        assert np.array_equal(together[name], alone[name]), name

    monkeypatch.setattr(Predictor, "predict", predict)  # and the session's model is intact
    run(qtbot, segment, segment.segment)
    assert np.array_equal(viewer.layers["cells [tiny]"].data, alone["cells [tiny]"])
    state = template.state_dict()
    assert all(torch.equal(state[k], kept[k]) and state[k].dtype == kept[k].dtype for k in kept)


@pytest.fixture
def model_file(tmp_path):
    return save_model(tiny_model(), tmp_path / "good.safetensors")


def broken_files(tmp_path, good):
    """(description, path) of model files that must never enter a picker."""
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (tmp_path / "truncated.json").write_text(good.with_suffix(".json").read_text())
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "garbage.json").write_text(good.with_suffix(".json").read_text())
    other = save_model(tiny_model("focal_use_net"), tmp_path / "other.safetensors")
    wrong = tmp_path / "wrong_arch.safetensors"
    wrong.write_bytes(good.read_bytes())
    card = json.loads(other.with_suffix(".json").read_text())  # a card of another architecture
    (tmp_path / "wrong_arch.json").write_text(json.dumps(card))
    return [("truncated weights", truncated), ("garbage weights", garbage),
            ("wrong architecture", wrong)]


def test_broken_model_files_never_enter_a_picker(viewer, saved_model, model_file, tmp_path,
                                                  notifications):
    widget = dock(viewer, "Segment")
    picker = widget.model_picker
    for what, path in broken_files(tmp_path, model_file):
        before = len(notifications)
        assert picker.add_model_path(path) is None, what
        new = errors(notifications[before:])
        assert len(new) == 1 and new[0].startswith(f"cannot use model file {path}"), what
        assert path.stem not in [c.name for c in _models.session().choices()], what
        assert picker.current().name == "tiny", what  # the selection is kept
    assert picker.remove_button.isHidden()  # nothing to remove: "tiny" is a user model


def test_a_loaded_file_is_listed_and_can_be_taken_off_the_list(viewer, saved_model, model_file):
    segment = dock(viewer, "Segment")
    attention = dock(viewer, "Attention")
    choice = segment.model_picker.add_model_path(model_file)
    assert choice.kind == "file" and segment.model_picker.current().label == "good  (file)"
    assert attention.model_picker.select("good")  # every picker lists it
    assert not segment.model_picker.remove_button.isHidden()
    segment.model_picker.remove_button.click()
    assert "good" not in [c.name for c in _models.session().choices()]
    assert segment.model_picker.current().name == "tiny"
    assert attention.model_picker.current().name == "tiny"
    assert segment.model_picker.remove_button.isHidden()
    assert model_file.exists()  # only the list entry went


def test_unsaved_names_follow_the_lineage_and_are_never_reused():
    session = _models.session()
    assert session.unsaved_name("nuclei") == "nuclei-ft1"
    assert session.unsaved_name("nuclei-ft1") == "nuclei-ft2"  # not nuclei-ft1-ft1
    assert session.unsaved_name("nuclei", taken=lambda n: n == "nuclei-ft3") == "nuclei-ft4"
    session.add_unsaved(tiny_model(), "cells-ft1")
    session.remove_unsaved("cells-ft1")  # e.g. a reverted round, whose layers were deleted
    assert session.unsaved_name("cells") == "cells-ft2"
