"""Attention widget: one aligned layer per spatial module, the Focal table and charts."""

import numpy as np

from napari_attnseg.models import save_model
from napari_attnseg.zoo import user_model_dir

from .conftest import blobs, dock, errors, tiny_model, wait_done


def run(qtbot, widget):
    assert widget.show_attention()
    wait_done(qtbot, widget)


def table(widget):
    return [[widget.table.item(r, c).text() for c in range(widget.table.columnCount())]
            for r in range(widget.table.rowCount())]


def test_one_layer_per_spatial_module_aligned_with_the_image(viewer, qtbot, notifications):
    model = tiny_model()
    # below the pruning threshold
    model.get_submodule("decoder.1.gate").focal.weight.data.fill_(0.1)
    model.card.metadata["finetune"] = {"history": [
        {"epoch": 1, "focal": {"decoder.0.gate": 1.0, "decoder.1.gate": 0.5}},
        {"epoch": 2, "focal": {"decoder.0.gate": 0.9, "decoder.1.gate": 0.1}},
    ]}
    save_model(model, user_model_dir(create=True) / "gated.safetensors")
    image = viewer.add_image(blobs((48, 56))[0], name="cells", scale=(0.5, 2.0), translate=(3, 4))
    widget = dock(viewer, "Attention")
    run(qtbot, widget)

    maps = [layer for layer in viewer.layers if layer.name.startswith("attn · ")]
    assert [m.name for m in maps] == [
        "attn · cells · decoder.0.gate", "attn · cells · decoder.1.gate"]
    for layer in maps:
        assert layer.data.shape == (48, 56) and layer.blending == "additive"
        assert np.allclose(layer.data_to_world([5, 6]), image.data_to_world([5, 6]))
        assert 0.0 <= layer.data.min() <= layer.data.max() <= 1.0
    assert sum(layer.visible for layer in maps) == 1
    best = widget.result.best
    assert viewer.layers[f"attn · cells · {best}"].visible

    assert table(widget) == [["decoder.0.gate", "spatial", "1.000", "no"],
                             ["decoder.1.gate", "spatial", "0.100", "yes"]]
    assert widget.plot.data["kind"] == "bars"
    assert np.allclose(widget.plot.data["values"], [1.0, 0.1])
    widget.plot_choice.setCurrentText("Focal w per epoch")
    assert widget.plot.data["series"] == {
        "decoder.0.gate": [1.0, 0.9], "decoder.1.gate": [0.5, 0.1]}

    run(qtbot, widget)  # re-running updates the same layers
    assert len(viewer.layers) == 3
    assert errors(notifications) == []


def test_stack_maps_sit_on_the_current_slice(viewer, qtbot, saved_model):
    stack = np.stack([blobs((32, 40), seed=i)[0] for i in range(3)])
    image = viewer.add_image(stack, name="stack", scale=(3.0, 1.0, 1.0))
    viewer.dims.set_current_step(0, 2)
    widget = dock(viewer, "Attention")
    run(qtbot, widget)
    layer = viewer.layers["attn · stack · decoder.0.gate"]
    assert layer.data.shape == (1, 32, 40)
    assert np.allclose(layer.data_to_world([0, 7, 9]), image.data_to_world([2, 7, 9]))


def test_channel_attention_weights_are_charted(viewer, qtbot):
    save_model(tiny_model("focal_use_net"), user_model_dir(create=True) / "se.safetensors")
    viewer.add_image(blobs()[0], name="cells")
    widget = dock(viewer, "Attention")
    run(qtbot, widget)
    rows = table(widget)
    assert [r[0] for r in rows] == ["encoder.0.se", "encoder.1.se", "bottleneck.se",
                                    "decoder.0.se", "decoder.1.se"]
    assert all(r[1] == "channel" for r in rows)
    assert not any(layer.name.startswith("attn") for layer in viewer.layers)
    options = [widget.plot_choice.itemText(i) for i in range(widget.plot_choice.count())]
    assert "channel weights · bottleneck.se" in options
    widget.plot_choice.setCurrentText("channel weights · bottleneck.se")
    weights = widget.plot.data["values"]
    assert len(weights) > 1 and all(0.0 <= w <= 1.0 for w in weights)


def test_no_image_is_a_notification(viewer, saved_model, notifications):
    widget = dock(viewer, "Attention")
    assert not widget.show_attention()
    assert any("no image selected" in m for m in errors(notifications))
    assert len(viewer.layers) == 0
