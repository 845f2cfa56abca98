"""The Segment dock's field of view (fundus models): shown for them, measured and said."""

from napari_attnseg.models import save_model
from napari_attnseg.zoo import user_model_dir

from ..test_fov_scaling import fundus, vessel_model
from .conftest import dock, tiny_model, wait_done


def test_segment_matches_a_fundus_photographs_field_of_view_and_says_so(viewer, qtbot):
    folder = user_model_dir()
    folder.mkdir(parents=True, exist_ok=True)
    save_model(vessel_model(fov_diameter=100.0), folder / "fundus.safetensors")
    save_model(tiny_model(), folder / "plain.safetensors")
    viewer.add_image(fundus(240, 100), name="photo", rgb=True)
    widget = dock(viewer, "Segment")

    assert widget.model_picker.select("plain")
    assert not widget.fov.isVisibleTo(widget)  # means nothing for this model
    assert widget.model_picker.select("fundus")
    assert widget.fov.isVisibleTo(widget)
    assert widget._settings()["fov_diameter"] == "auto"

    assert widget.segment()
    wait_done(qtbot, widget)
    status = widget.jobs.status.text()
    assert "field of view ~201 px across (trained on 100 px): image resampled ×0.50" in status
    assert viewer.layers["photo [fundus]"].data.shape == (240, 240)

    widget.fov.setCurrentText("as trained")
    assert widget._settings()["fov_diameter"] is None
    widget.fov.setCurrentText("180")
    assert widget._settings()["fov_diameter"] == 180.0
