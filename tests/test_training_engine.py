"""Training engine: precision, patch defaults, per-class validation, stop/cancel, resume."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from napari_attnseg.data import Sample
from napari_attnseg.inference.device import CPU_BF16_ENV
from napari_attnseg.models import create_model, load_model
from napari_attnseg.models.base import SegmentationModel
from napari_attnseg.progress import Cancelled, CancelToken
from napari_attnseg.training import (
    TrainConfig,
    Trainer,
    default_patch_size,
    train_new,
)
from napari_attnseg.training.workflows import DataSpec

from .test_training import config, disc_samples, tiny


# -- precision --------------------------------------------------------------
def conv_output_dtypes(model):
    seen = set()
    hooks = [
        m.register_forward_hook(lambda mod, inp, out: seen.add(out.dtype))
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    ]
    return seen, hooks


@pytest.mark.parametrize(
    ("precision", "dtype"), [("bf16", torch.bfloat16), ("fp32", torch.float32)]
)
@pytest.mark.slow
def test_forward_runs_at_the_chosen_precision_and_weights_stay_fp32(precision, dtype):
    model = tiny()
    seen, _ = conv_output_dtypes(model)
    trainer = Trainer(model, config(epochs=1, precision=precision), disc_samples(), disc_samples(2))
    history = trainer.fit()
    assert seen == {dtype}  # training and validation forward passes
    assert trainer.precision == precision
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert math.isfinite(history.epochs[0]["train_loss"])
    assert not trainer.scaler.is_enabled()  # a gradient scaler only for fp16 on CUDA


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp16", "bf16", "auto"])
@pytest.mark.slow
def test_cuda_mixed_precision_trains_with_fp32_weights(precision):
    model = tiny()
    cfg = config(epochs=2, device="cuda", precision=precision)
    trainer = Trainer(model, cfg, disc_samples(), disc_samples(2, seed=1))
    history = trainer.fit()
    assert trainer.scaler.is_enabled() == (trainer.precision == "fp16")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(math.isfinite(e["train_loss"]) for e in history.epochs)


def test_auto_precision_follows_the_cpu(monkeypatch):
    monkeypatch.setenv(CPU_BF16_ENV, "0")
    assert Trainer(tiny(), config(precision="auto"), disc_samples(), []).precision == "fp32"
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    assert Trainer(tiny(), config(precision="auto"), disc_samples(), []).precision == "bf16"


@pytest.mark.slow
def test_loss_is_computed_in_fp32_under_bf16():
    model = tiny()
    trainer = Trainer(model, config(epochs=1, precision="bf16"), disc_samples(), [])
    dtypes = []
    original = trainer.loss_fn.forward

    def spy(logits, *args, **kwargs):
        dtypes.append(logits.dtype)
        return original(logits, *args, **kwargs)

    trainer.loss_fn.forward = spy
    trainer.fit()
    assert dtypes and set(dtypes) == {torch.float32}


@pytest.mark.slow
def test_training_record_names_the_precision_and_patch():
    model, _ = train_new(
        "unet",
        {"width": 4, "depth": 2},
        disc_samples(size=48),
        [],
        config(epochs=1, precision="fp32", patch_size="auto"),
        data=DataSpec(in_channels=1),
        normalization={"mode": "zscore"},
    )
    assert model.card.training["precision"] == "fp32"
    assert model.card.training["patch_size"] == 32
    assert model.card.training["config"]["precision"] == "fp32"


def test_old_amp_key_maps_to_precision():
    assert TrainConfig.from_dict({"amp": True}).precision == "auto"
    assert TrainConfig.from_dict({"amp": False}).precision == "fp32"
    assert TrainConfig.from_dict({"amp": False, "precision": "bf16"}).precision == "bf16"
    assert "amp" not in TrainConfig().to_dict()


# -- patch size ---------------------------------------------------------------
def test_default_patch_size_fits_the_smallest_image():
    assert default_patch_size([(3, 96, 96)]) == 64
    assert default_patch_size([(1, 128, 128), (1, 500, 700)]) == 128
    assert default_patch_size([(3, 584, 565)]) == 256  # capped
    assert default_patch_size([(1, 10, 12)]) == 16  # smaller images are padded
    for h in range(16, 300, 7):
        patch = default_patch_size([(1, h, h + 50), (1, h + 9, h)])
        assert patch <= h and patch * 2 > min(h, 256)


def test_trainer_resolves_auto_patch_from_training_images():
    samples = disc_samples(size=48)
    trainer = Trainer(tiny(), config(patch_size="auto"), samples, [])
    assert trainer.patch_size == 32
    assert trainer.train_data[0]["image"].shape[-2:] == (32, 32)
    assert Trainer(tiny(), config(patch_size=None), samples, []).patch_size is None


# -- per-class validation -----------------------------------------------------
class LabelSwapper(SegmentationModel):
    """Reads the class from the image and answers the other foreground class."""

    def __init__(self):
        super().__init__(in_channels=1, n_classes=3)
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        labels = x[:, 0].round().long().clamp(0, 2)
        swapped = torch.where(labels > 0, 3 - labels, labels)
        logits = nn.functional.one_hot(swapped, 3).permute(0, 3, 1, 2).float() * 10
        return logits + self.bias


def three_class_sample(name="a"):
    mask = np.zeros((32, 32), np.int64)
    mask[4:14, 4:14] = 1
    mask[18:28, 18:28] = 2
    return Sample(name, mask[None].astype(np.float32), mask, None)


def test_multiclass_validation_scores_each_class():
    trainer = Trainer(
        LabelSwapper(), config(loss="dice_ce"), [three_class_sample()], [three_class_sample()]
    )
    result = trainer.validate()
    # foreground-vs-background (the old binary scoring) would be a perfect 1.0
    assert result["val_dice"] == pytest.approx(0.0)
    assert result["val_dice_per_class"] == pytest.approx([1.0, 0.0, 0.0])


@pytest.mark.slow
def test_multiclass_best_checkpoint_follows_mean_foreground_dice():
    model = create_model("unet", in_channels=1, n_classes=3, width=4, depth=2)
    samples = [three_class_sample(str(i)) for i in range(4)]
    history = Trainer(model, config(epochs=2, loss="dice_ce"), samples, samples[:2]).fit()
    for record in history.epochs:
        per_class = record["val_dice_per_class"]
        assert len(per_class) == 3
        assert record["val_dice"] == pytest.approx(np.mean(per_class[1:]))
    best = max(range(2), key=lambda i: history.epochs[i]["val_dice"])
    assert history.best_epoch == best


# -- stop and keep / cancel ----------------------------------------------------
@pytest.mark.slow
def test_stop_keeps_the_best_weights_and_history(tmp_path):
    model = tiny()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    token = CancelToken()

    def on_epoch(record):
        if record["epoch"] == 2:
            token.request_stop()

    trainer = Trainer(
        model,
        config(epochs=6),
        disc_samples(),
        disc_samples(2, seed=1),
        checkpoint_dir=tmp_path,
        on_epoch=on_epoch,
    )
    history = trainer.fit(cancel=token)  # returns normally
    assert history.stopped == "stopped by the user after epoch 2"
    assert [e["epoch"] for e in history.epochs] == [1, 2]
    assert any(not torch.equal(v, initial[k]) for k, v in model.state_dict().items())
    best = load_model(tmp_path / "best.safetensors")
    for key, value in best.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key
    assert not token.cancelled


@pytest.mark.slow
def test_cancel_raises_and_restores_initial_weights_without_validation():
    model = tiny()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    token = CancelToken()
    steps = []

    def progress(done, total, message=""):
        steps.append(done)
        if len(steps) == 2:
            token.cancel()

    trainer = Trainer(model, config(epochs=3, batch_size=2), disc_samples(), [])
    with pytest.raises(Cancelled):
        trainer.fit(progress=progress, cancel=token)
    assert trainer.history.stopped == "cancelled"
    for key, value in model.state_dict().items():
        assert torch.equal(value, initial[key]), key


# -- config validation ---------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"patch_size": 8}, "patch_size must be an integer >= 16"),
        ({"lr": 0.0}, "lr must be a number in (0, 1)"),
        ({"lr": 2.0}, "lr must be a number in (0, 1)"),
        ({"val_every": 0}, "val_every must be an integer >= 1"),
        ({"precision": "fp8"}, "precision must be one of auto, fp32, bf16, fp16"),
        ({"epochs": "3"}, "epochs must be an integer >= 1, got '3'"),
        ({"early_stopping": 0}, "early_stopping must be an integer >= 1 or null"),
        ({"fg_fraction": 1.5}, "fg_fraction must be a number in [0, 1]"),
        ({"loss": "nope"}, "unknown loss 'nope'"),
        ({"loss": "dice", "loss_params": {"gamma": 1}}, "unknown parameter(s) ['gamma']"),
        ({"time_budget": -1}, "time_budget must be a number in [0, inf)"),
    ],
)
def test_config_errors_name_the_allowed_range(changes, message):
    with pytest.raises(ValueError) as excinfo:
        TrainConfig(**changes)
    assert message in str(excinfo.value)


@pytest.mark.slow
def test_non_finite_loss_names_the_epoch_and_suggests_a_lower_lr():
    samples = disc_samples()
    for s in samples:
        s.image = s.image * np.float32(np.inf)
    with pytest.raises(FloatingPointError, match="at epoch 1.*lower the learning rate"):
        Trainer(tiny(), config(epochs=1, precision="fp32"), samples, []).fit()


# -- resume --------------------------------------------------------------------
def noisy(model):
    """Draw from torch's global generator in training, as dropout does."""
    model.register_forward_hook(
        lambda module, inputs, out: out + 0.5 * torch.randn_like(out) if module.training else out
    )
    return model


@pytest.mark.slow
@pytest.mark.parametrize("ema", [None, 0.9])
def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path, ema):
    cfg = config(epochs=4, augment={}, schedule="plateau", plateau_patience=0, ema=ema)
    train, val = disc_samples(), disc_samples(2, seed=1)
    straight = noisy(tiny())
    start = {k: v.clone() for k, v in straight.state_dict().items()}
    Trainer(straight, cfg, train, val).fit()

    first = noisy(tiny())
    first.load_state_dict(start)
    token = CancelToken()
    stop_after_two = Trainer(
        first,
        cfg,
        disc_samples(),
        disc_samples(2, seed=1),
        checkpoint_dir=tmp_path,
        on_epoch=lambda r: token.request_stop() if r["epoch"] == 2 else None,
    )
    stop_after_two.fit(cancel=token)
    torch.manual_seed(123)  # a new process: the global generator is anywhere
    resumed_model = noisy(tiny())  # fresh weights: everything must come from last.ckpt
    resumed = Trainer(
        resumed_model, cfg, disc_samples(), disc_samples(2, seed=1), checkpoint_dir=tmp_path
    )
    resumed.resume()
    history = resumed.fit()
    assert [e["epoch"] for e in history.epochs] == [1, 2, 3, 4]
    assert history.stopped == "completed"
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed_model.state_dict()[key], value, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_resume_refuses_other_training_settings(tmp_path):
    Trainer(tiny(), config(epochs=1), disc_samples(), [], checkpoint_dir=tmp_path).fit()
    other = Trainer(tiny(), config(epochs=3, lr=0.05), disc_samples(), [], checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match=r"lr: 0\.01 -> 0\.05"):
        other.resume()
    longer = Trainer(tiny(), config(epochs=3), disc_samples(), [], checkpoint_dir=tmp_path)
    longer.resume()
    assert [e["epoch"] for e in longer.fit().epochs] == [1, 2, 3]


# -- moving average of the weights (EMA) ----------------------------------------
@pytest.mark.slow
def test_ema_weights_are_validated_kept_and_saved(tmp_path):
    cfg = config(epochs=3, augment={}, ema=0.9, early_stopping=None)
    seen = []
    model = tiny()
    trainer = Trainer(model, cfg, disc_samples(), disc_samples(2, seed=1), checkpoint_dir=tmp_path,
                      on_epoch=lambda r: seen.append((
                          {k: v.clone() for k, v in trainer.ema.module.state_dict().items()},
                          {k: v.clone() for k, v in trainer.model.state_dict().items()})))
    history = trainer.fit()
    average, raw = seen[history.best_epoch]
    final = model.state_dict()
    assert any(not torch.equal(average[k], raw[k]) for k in raw)  # the average lags behind
    for key, value in average.items():
        torch.testing.assert_close(final[key], value)  # the best epoch's average is kept
    saved = load_model(tmp_path / "best.safetensors").state_dict()
    for key, value in average.items():
        torch.testing.assert_close(saved[key], value)  # …and saved
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert int(last["ema"]["n_averaged"]) == 3 * len(trainer._loader(0))  # every step


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, "0.99", True])
def test_ema_decay_must_lie_between_0_and_1(bad):
    with pytest.raises(ValueError, match="ema must be a number in"):
        TrainConfig(ema=bad)
    assert TrainConfig().ema is None and TrainConfig(ema=0.999).ema == 0.999
