"""The exported network (``export/wrapper.py``) predicts what the Predictor predicts.

A bioimage.io consumer feeds the package's network an image normalised by the
package's preprocessing (the card's normalisation, which ``InputSpec`` applies
for us); the network resizes, pads as the model pads itself, and returns class
probabilities. Eager and TorchScript, at three image sizes and for three kinds
of card (binary z-score; three classes, percentiles and an input scale; a fixed
working size smaller than two size multiples, where padding by a rule of the
wrapper's own once differed from the model's), the probabilities must be the
Predictor's. Needs no bioimage.io packages (``test_export.py`` runs those).
"""

import numpy as np
import pytest
import torch

from napari_attnseg.data.input_spec import InputSpec
from napari_attnseg.export.wrapper import PaddingRule, build_model, to_torchscript, wrap
from napari_attnseg.inference import Predictor
from napari_attnseg.models import ModelCard, create_model

SIZES = [(64, 64), (97, 130), (200, 150)]
CARDS = {
    "binary-zscore": dict(in_channels=1, n_classes=1, card={}),
    "softmax-percentile-scaled": dict(
        in_channels=2,
        n_classes=3,
        card=dict(normalization={"mode": "percentile", "low": 2, "high": 99}, input_scale=0.5),
    ),
    "fixed-small-size": dict(in_channels=1, n_classes=1, card=dict(input_size=(4, 6))),
}


def tiny(in_channels, n_classes, card):
    torch.manual_seed(0)
    model = create_model("unet", in_channels=in_channels, n_classes=n_classes, width=4, depth=2)
    model.card = ModelCard(name="tiny", **card)
    return model.eval()


@pytest.fixture(scope="module", params=sorted(CARDS))
def networks(request):
    """A tiny model, its eager exported network and its TorchScript."""
    model = tiny(**CARDS[request.param])
    exported = wrap(model)
    example = torch.zeros(1, model.in_channels, 64, 64)
    return model, exported, to_torchscript(exported, example)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_exported_network_predicts_what_the_predictor_predicts(networks, size):
    model, exported, scripted = networks
    rng = np.random.default_rng(sum(size))
    image = rng.gamma(2.0, 40.0, (*size, model.in_channels)).astype(np.float32)
    image[size[0] // 3, size[1] // 2, 0] = np.nan  # the fill happens in InputSpec too
    predictor = Predictor(device="cpu", tile_size=None, precision="fp32", tta=False, roi="none")
    ours = predictor.predict(model, image, channel_axis=-1).probabilities
    x = torch.from_numpy(InputSpec.of(model).network_input(image)[0])[None]
    with torch.no_grad():
        for network in (exported, scripted):
            theirs = network(x)[0].numpy()
            assert theirs.shape == ours.shape
            np.testing.assert_allclose(theirs, ours, atol=1e-5)


def test_padding_rule_is_the_model_s_own():
    for depth in (1, 2, 3):
        model = create_model("unet", width=2, depth=depth)
        rule = PaddingRule.of(model)
        for n in range(1, 5 * model.size_multiple):
            left, right, top, bottom = model.padding(n, n + 1)
            assert rule.split(n) == (top, bottom) and rule.split(n + 1) == (left, right)
    model = create_model("unet", width=2, depth=2)

    class Other(type(model)):
        def padding(self, height, width):  # a rule of another shape is refused
            return (0, 0, 0, 0)

    model.__class__ = Other
    with pytest.raises(ValueError, match="does not reproduce"):
        PaddingRule.of(model)


def test_rebuilt_network_loads_the_exported_weights():
    model = tiny(**CARDS["softmax-percentile-scaled"])
    exported = wrap(model)
    rebuilt = build_model(model.config, input_size=None, input_scale=0.5)
    rebuilt.load_state_dict(exported.state_dict())
    x = torch.randn(1, 2, 37, 41)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), exported(x))
