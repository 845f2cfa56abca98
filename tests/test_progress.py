"""One bar per job that never goes backwards, with the time left (issue 23)."""

import numpy as np

from napari_attnseg.cli._common import ProgressBar
from napari_attnseg.inference import InferenceSettings, Predictor
from napari_attnseg.models import ModelCard, create_model
from napari_attnseg.progress import TICKS, Tracker, duration, part


def test_part_maps_each_part_into_its_own_span():
    seen = []
    whole = lambda done, total, message="": seen.append((done, total, message))  # noqa: E731
    first, second = part(whole, 0.0, 0.5, "a"), part(whole, 0.5, 1.0)
    first(2, 4, "tile")
    second(1, 10, "x")
    second(10, 10)
    assert seen == [(250, TICKS, "a (tile)"), (550, TICKS, "x"), (TICKS, TICKS, "")]
    assert part(None, 0, 1) is None


def test_tracker_never_goes_back_and_estimates_the_time_left():
    now = [0.0]
    tracker = Tracker(clock=lambda: now[0])
    now[0] = 10.0
    assert tracker.update(4, 56) == 4 / 56
    assert tracker.update(1, 28) == 4 / 56  # a part with another total: no jump back
    assert tracker.update(28, 56) == 0.5
    assert tracker.remaining() == 10.0  # half done in 10 s: about 10 s left
    assert duration(10) == "10 s" and duration(150) == "2 min" and duration(3900) == "1 h 5 min"


def test_a_stack_with_auto_size_reports_one_forward_moving_bar():
    """Measuring pass and planes of different tile counts: fractions only grow."""
    model = create_model("unet", in_channels=1, n_classes=1, width=4, depth=2).eval()
    model.card = ModelCard(name="m", normalization={"mode": "zscore"}, object_diameter=8.0,
                           instances={"method": "watershed"})
    seen = []
    stack = np.random.default_rng(0).random((3, 96, 96)).astype(np.float32)
    Predictor(InferenceSettings(device="cpu", tile_size=32)).predict(
        model, stack, progress=lambda d, t, m="": seen.append(d / t))
    assert len(seen) > 6 and seen == sorted(seen) and seen[-1] == 1.0


def test_the_command_line_bar_never_goes_back():
    bar = ProgressBar(disable=True)
    bar(4, 56)
    bar(1, 28)
    assert bar.bar.n / bar.bar.total >= 4 / 56
    bar(500, TICKS)
    assert bar.bar.n == 500 and bar.bar.total == TICKS
    bar(100, TICKS)
    assert bar.bar.n == 500
    bar(1, 1, "done")  # a part's own total after parts: still the share, in percent
    assert bar.bar.total == TICKS and bar.bar.n == TICKS
