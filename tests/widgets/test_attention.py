"""Attention widget: one aligned layer per spatial module, the Focal table and charts."""

import re

import numpy as np
import pytest

from napari_attnseg.models import create_model, save_model
from napari_attnseg.models.attention_names import (
    attention_label,
    attention_labels,
    attention_short_key,
    attention_short_label,
)
from napari_attnseg.models.blocks.attention import iter_attention
from napari_attnseg.widgets._layers import METADATA_KEY
from napari_attnseg.zoo import user_model_dir

from .conftest import blobs, dock, errors, tiny_model, wait_done

COARSE = "attention gate, decoder level 1 (coarsest)"
FINE = "attention gate, decoder level 2 (finest)"
#: tiny builds of the five architectures, every kind of attention module included
TINY_ARCHITECTURES = {
    "attention_unet": {"width": 4, "depth": 3, "se": True},
    "focal_use_net": {"width": 4, "depth": 2},
    "focusnet": {"width_multiplier": 0.125},
    "afnet": {"width": 8, "layers": [1, 2, 1, 1]},
    "denseunet": {"growth_rate": 4, "block_layers": [1, 1, 1, 1], "init_features": 8},
}
#: the level (and block) a short chart name ends with: "D2", "E2.3", "skip 1"
SHORT_LEVEL = re.compile(
    r"(?:\b(?P<part>[ED])(?P<level>\d+)(?:\.(?P<block>\d+))?|skip (?P<skip>\d+))$")


def run(qtbot, widget):
    assert widget.show_attention()
    wait_done(qtbot, widget)


def attention_layers(viewer, image=None):
    return [layer for layer in viewer.layers
            if layer.metadata.get(METADATA_KEY, {}).get("role") == "attention"
            and image in (None, layer.metadata[METADATA_KEY]["image"])]


def table(widget):
    return [[widget.table.item(r, c).text() for c in range(widget.table.columnCount())]
            for r in range(widget.table.rowCount())]


@pytest.mark.slow
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

    maps = attention_layers(viewer)
    assert [m.name for m in maps] == [f"cells · {COARSE}", f"cells · {FINE}"]
    assert [m.metadata[METADATA_KEY]["module"] for m in maps] == [
        "decoder.0.gate", "decoder.1.gate"]
    for layer in maps:
        assert layer.data.shape == (48, 56)
        assert np.allclose(layer.data_to_world([5, 6]), image.data_to_world([5, 6]))
        assert 0.0 <= layer.data.min() <= layer.data.max() <= 1.0
    assert sum(layer.visible for layer in maps) == 1
    best = widget.result.best
    assert viewer.layers[f"cells · {widget.result.labels[best]}"].visible

    assert table(widget) == [[COARSE, "spatial", "1.000", "no"],
                             [FINE, "spatial", "0.100", "yes"]]
    assert [widget.table.item(r, 0).toolTip() for r in range(2)] == [
        "decoder.0.gate", "decoder.1.gate"]
    assert widget.plot.data["kind"] == "bars"
    assert np.allclose(widget.plot.data["values"], [1.0, 0.1])
    widget.plot_choice.setCurrentText("Focal exponent w per epoch")
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
    layer = viewer.layers[f"stack · {COARSE}"]
    assert layer.data.shape == (1, 32, 40)
    assert np.allclose(layer.data_to_world([0, 7, 9]), image.data_to_world([2, 7, 9]))


def test_channel_attention_weights_are_charted(viewer, qtbot):
    save_model(tiny_model("focal_use_net"), user_model_dir(create=True) / "se.safetensors")
    viewer.add_image(blobs()[0], name="cells")
    widget = dock(viewer, "Attention")
    run(qtbot, widget)
    rows = table(widget)
    assert [widget.table.item(r, 0).toolTip() for r in range(len(rows))] == [
        "encoder.0.se", "encoder.1.se", "bottleneck.se", "decoder.0.se", "decoder.1.se"]
    assert [r[0] for r in rows] == [
        "channel attention (SE), encoder level 1 (finest)",
        "channel attention (SE), encoder level 2",
        "channel attention (SE), bottleneck (coarsest)",
        "channel attention (SE), decoder level 1 (coarsest)",
        "channel attention (SE), decoder level 2 (finest)",
    ]
    assert all(r[1] == "channel" for r in rows)
    assert attention_layers(viewer) == []
    assert not widget.legend.isVisibleTo(widget)  # no maps, nothing to explain
    options = [widget.plot_choice.itemText(i) for i in range(widget.plot_choice.count())]
    bottleneck = "channel weights · channel attention (SE), bottleneck (coarsest)"
    assert bottleneck in options
    widget.plot_choice.setCurrentText(bottleneck)
    weights = widget.plot.data["values"]
    assert len(weights) > 1 and all(0.0 <= w <= 1.0 for w in weights)


def test_no_image_is_a_notification(viewer, saved_model, notifications):
    widget = dock(viewer, "Attention")
    assert not widget.show_attention()
    assert any("no image selected" in m for m in errors(notifications))
    assert len(viewer.layers) == 0


# -- the biologist's desk (issue 23) ------------------------------------------------------
def two_images(viewer):
    viewer.add_image(blobs((48, 56))[0], name="nuclei")
    viewer.add_image(blobs((48, 56), seed=1)[0], name="membranes")


def run_on(qtbot, widget, name):
    widget.image_picker.set_layer(name)
    run(qtbot, widget)


@pytest.mark.slow
def test_maps_of_two_images_have_their_own_names_and_rerunning_updates_them(
        viewer, qtbot, saved_model, notifications):
    two_images(viewer)
    widget = dock(viewer, "Attention")
    run_on(qtbot, widget, "nuclei")
    run_on(qtbot, widget, "membranes")
    nuclei = [layer.name for layer in attention_layers(viewer, "nuclei")]
    membranes = [layer.name for layer in attention_layers(viewer, "membranes")]
    assert nuclei == [f"nuclei · {COARSE}", f"nuclei · {FINE}"]
    assert membranes == [f"membranes · {COARSE}", f"membranes · {FINE}"]
    assert not set(nuclei) & set(membranes)

    first = viewer.layers[f"nuclei · {COARSE}"]
    run_on(qtbot, widget, "nuclei")  # same image, same model: the same layers, updated
    assert len(viewer.layers) == 2 + 4
    assert viewer.layers[f"nuclei · {COARSE}"] is first
    assert errors(notifications) == []


def test_maps_keep_the_image_readable_with_per_map_contrast(viewer, qtbot, saved_model):
    from napari_attnseg.widgets.attention import (
        BLENDING,
        COLORMAP_NAME,
        OPACITY,
        map_contrast,
    )

    viewer.add_image(blobs((48, 56))[0], name="nuclei")
    widget = dock(viewer, "Attention")
    run(qtbot, widget)
    maps = attention_layers(viewer)
    assert len(maps) == 2
    for layer in maps:
        # not additive (which brightens, washing the image out) and not opaque
        assert layer.blending == BLENDING == "translucent"
        assert layer.opacity == pytest.approx(OPACITY) and 0.4 <= OPACITY <= 0.7
        assert layer.colormap.name == COLORMAP_NAME
        colors = layer.colormap.colors
        assert colors[0, 3] == 0.0 and colors[-1, 3] == 1.0  # low attention is transparent
        # contrast: the map's own 1st–99th percentile, inside the 0–1 coefficient range
        low, high = np.percentile(layer.data, [1, 99])
        assert np.allclose(layer.contrast_limits, [low, high], atol=1e-5)
        assert tuple(layer.contrast_limits_range) == (0.0, 1.0)
    assert not np.allclose(maps[0].contrast_limits, maps[1].contrast_limits)

    # a constant map (Focal w = 0 makes it all ones) is not stretched: absolute 0–1
    assert map_contrast(np.ones((8, 8), np.float32)) == (0.0, 1.0)
    assert map_contrast(np.full((8, 8), np.nan, np.float32)) == (0.0, 1.0)
    ramp = np.linspace(0.2, 0.6, 1000, dtype=np.float32)
    assert map_contrast(ramp) == pytest.approx((0.204, 0.596), abs=1e-3)


def test_focal_attention_unet_gates_have_plain_names_and_dotted_tooltips(
        viewer, qtbot, saved_model):
    viewer.add_image(blobs()[0], name="nuclei")
    widget = dock(viewer, "Attention")
    run(qtbot, widget)
    assert table(widget)[0][0] == COARSE and table(widget)[1][0] == FINE
    assert widget.table.item(0, 0).toolTip() == "decoder.0.gate"
    header = widget.table.horizontalHeaderItem(2)
    assert "Focal" in header.text() and "exponent w" in header.text()
    assert "sharpens" in header.toolTip() and "flattens" in header.toolTip()
    assert widget.plot_choice.currentText() == "Focal exponent w"
    assert "sharpens" in widget.plot.toolTip()
    assert widget.plot.data["title"].startswith("Focal exponent w per module")
    # the legend: one line saying what bright means
    assert widget.legend.isVisibleTo(widget)
    assert "bright = where the network looked" in widget.legend.text()
    assert "own range" in widget.legend.text() and "\n" not in widget.legend.text()
    assert f"shown: {widget.result.labels[widget.result.best]}" in widget.summary.text()


def test_plain_names_for_every_architecture():
    assert attention_label("decoder.0.gate", "focal_attention_unet") == COARSE
    assert attention_label("decoder.3.gate", {"name": "attention_unet", "depth": 4}) == (
        "attention gate, decoder level 4 (finest)")
    assert attention_label("encoder.1.se", "focal_use_net") == (
        "channel attention (SE), encoder level 2")
    assert attention_label("main.level1.gate", "focusnet") == (
        "attention-branch gate, encoder level 1 (finest)")
    assert attention_label("main.level2.se2", "focusnet") == (
        "channel attention (SE) after the gate, encoder level 2")
    assert attention_label("encoder.layer2.1.da.spatial", "afnet") == (
        "spatial attention (DA), encoder level 2, block 2")
    assert attention_label("fuse.2.gate", "afnet") == (
        "channel gate (GFF), decoder level 3 (finest)")
    assert attention_label("skips.0.pwa", "denseunet") == (
        "point-wise attention (PWA), skip level 1 (finest)")
    assert attention_label("skips.3.sa", "denseunet") == (
        "self-attention response (SA), skip level 4 (coarsest)")
    # unknown modules and architectures keep their dotted names
    assert attention_label("head.attn", "focal_attention_unet") == "head.attn"
    assert attention_label("decoder.0.gate", "my_own_net") == "decoder.0.gate"
    assert attention_label("decoder.0.gate") == "decoder.0.gate"
    # from the model itself: its depth decides which level is the finest
    labels = attention_labels(tiny_model())
    assert labels == {"decoder.0.gate": COARSE, "decoder.1.gate": FINE}


def test_short_chart_names():
    expected = {
        ("decoder.0.gate", "focal_attention_unet"): "gate D1",
        ("encoder.0.se", "use_net"): "SE E1",
        ("bottleneck.se", "use_net"): "SE bottom",
        ("decoder.1.se", "focal_use_net"): "SE D2",
        ("main.level1.gate", "focusnet"): "gate E1",
        ("main.level2.se1", "focusnet"): "SE pre E2",
        ("main.level2.se2", "focusnet"): "SE post E2",
        ("main.level4.se1", "focusnet"): "SE E4",
        ("encoder.layer2.1.da.spatial", "afnet"): "spatial E2.2",
        ("encoder.layer4.0.da.channel", "afnet"): "channel E4.1",
        ("fuse.2.gate", "afnet"): "GFF gate D3",
        ("skips.0.pwa", "denseunet"): "PWA skip 1",
        ("skips.3.sa", "denseunet"): "SA skip 4",
    }
    assert {key: attention_short_label(*key) for key in expected} == expected
    # unknown modules and architectures keep their dotted names
    assert attention_short_label("head.attn", "focal_attention_unet") == "head.attn"
    assert attention_short_label("decoder.0.gate", "my_own_net") == "decoder.0.gate"
    assert attention_short_label("decoder.0.gate") == "decoder.0.gate"
    key = attention_short_key(["gate D1", "SE E1", "spatial E2.2"])
    assert "D = decoder level (1 = coarsest)" in key and "E = encoder level (1 = finest)" in key
    assert "E2.3 = encoder level 2 (1 = finest), block 3" in key and "SE = channel attention" in key
    assert attention_short_key(["decoder.0.gate"]) == ""


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_short_chart_names_fit_and_number_levels_like_the_plain_names(arch):
    model = create_model(arch, in_channels=1, n_classes=1, **TINY_ARCHITECTURES[arch])
    names = [name for name, _ in iter_attention(model)]
    plain = attention_labels(model, names)
    short = {name: attention_short_label(name, model) for name in names}
    assert len(names) > 1 and len(set(plain.values())) == len(names)
    assert len(set(short.values())) == len(names)  # unique within the model
    for name, label in short.items():
        assert label != name and len(label) <= 12, label
        assert attention_short_label(name, arch) == label  # the architecture name is enough
        if label == "SE bottom":
            assert "bottleneck" in plain[name]
            continue
        m = SHORT_LEVEL.search(label)
        part = {"E": "encoder", "D": "decoder"}.get(m["part"], "skip")
        assert f"{part} level {m['level'] or m['skip']}" in plain[name], (label, plain[name])
        if m["block"]:
            assert plain[name].endswith(f"block {m['block']}")
    assert attention_short_key(short.values())
