"""Training: loss goes down, Focal w stays >= 0, cancel/resume, checkpoints, pruning workflow."""

import numpy as np
import pytest
import torch

from napari_attnseg.data import Sample
from napari_attnseg.losses import AsymmetricUnifiedFocalLoss, distance_penalty_map
from napari_attnseg.models import create_model, focal_weights, load_model
from napari_attnseg.progress import Cancelled, CancelToken
from napari_attnseg.training import (
    DataSpec,
    TrainConfig,
    Trainer,
    finetune,
    parameter_groups,
    prune_workflow,
)


def disc_samples(n=6, size=32, seed=0):
    """Bright discs on noise: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    samples = []
    for i in range(n):
        cy, cx, r = rng.integers(8, size - 8), rng.integers(8, size - 8), rng.integers(4, 8)
        mask = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.int64)
        image = (mask * 2.0 + rng.normal(0, 0.5, (size, size))).astype(np.float32)[None]
        samples.append(Sample(f"s{i}", image, mask, None))
    return samples


def config(**kw):
    base = dict(
        epochs=3,
        batch_size=4,
        patch_size=32,
        lr=1e-2,
        loss="dice_ce",
        loss_params={},
        augment=None,
        device="cpu",
        precision="fp32",  # the same numbers on every CPU; precision has its own tests
        early_stopping=None,
        schedule="none",
    )
    return TrainConfig(**{**base, **kw})


def tiny(**kw):
    return create_model("focal_use_net", in_channels=1, n_classes=1, width=4, depth=2, **kw)


@pytest.mark.slow
def test_loss_decreases_and_history_records_focal():
    model = tiny()
    history = Trainer(model, config(epochs=6), disc_samples(), disc_samples(2, seed=1)).fit()
    losses = history.series("train_loss")
    assert losses[-1] < losses[0]
    assert len(history.epochs) == 6
    assert set(history.epochs[0]["focal"]) == set(focal_weights(model))
    assert "val_dice" in history.epochs[0]


@pytest.mark.slow
def test_reproducible_on_cpu():
    a, b = tiny(), tiny()
    b.load_state_dict(a.state_dict())
    ha = Trainer(a, config(augment={}), disc_samples(), disc_samples(2, seed=1)).fit()
    hb = Trainer(b, config(augment={}), disc_samples(), disc_samples(2, seed=1)).fit()
    assert ha.series("train_loss") == hb.series("train_loss")


@pytest.mark.slow
def test_focal_w_never_negative():
    model = tiny(focal=0.0)
    Trainer(model, config(lr=0.5, optimizer="sgd"), disc_samples(), []).fit()
    assert all(w >= 0 for w in focal_weights(model).values())
    assert any(w > 0 for w in focal_weights(model).values())


def test_weight_decay_skips_focal_and_norms():
    model = tiny()
    groups = parameter_groups(model, 1e-4)
    decayed = {id(p) for p in groups[0]["params"]}
    for name, p in model.named_parameters():
        if "focal" in name or p.ndim <= 1:
            assert id(p) not in decayed, name
    assert groups[0]["weight_decay"] == 1e-4 and groups[1]["weight_decay"] == 0.0


@pytest.mark.slow
def test_unified_focal_with_distance_penalty_runs():
    """The Unified Focal loss with epsilon > 0 trains on the labels' distance-penalty maps."""
    model = tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = config(loss="unified_focal", loss_params={"epsilon": 0.1}, epochs=1)
    trainer = Trainer(model, cfg, disc_samples(), disc_samples(2, seed=1))
    assert isinstance(trainer.loss_fn, AsymmetricUnifiedFocalLoss)
    assert trainer.loss_fn.epsilon == 0.1 and trainer.with_dpt
    calls = []  # (target, dpt) of every loss evaluation, training and validation

    def record(module, args, kwargs):
        calls.append((args[1].cpu(), kwargs.get("dpt")))

    trainer.loss_fn.register_forward_pre_hook(record, with_kwargs=True)
    history = trainer.fit()
    assert history.stopped == "completed" and len(history.epochs) == 1
    assert np.isfinite(history.epochs[0]["train_loss"])
    assert np.isfinite(history.epochs[0]["val_loss"])
    assert any(not torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert calls, "the loss was never evaluated"
    for target, dpt in calls:
        assert dpt is not None, "no distance-penalty weights reached the loss"
        expected = np.stack([distance_penalty_map(t.numpy(), 2) for t in target])
        np.testing.assert_allclose(dpt.cpu().numpy(), expected, rtol=1e-6)


@pytest.mark.slow
def test_cancel_keeps_checkpoint_loadable_and_restores_weights(tmp_path):
    model = tiny()
    token = CancelToken()
    trainer = Trainer(
        model,
        config(epochs=5),
        disc_samples(),
        disc_samples(2, seed=1),
        checkpoint_dir=tmp_path,
        on_epoch=lambda r: token.cancel(),
    )
    with pytest.raises(Cancelled):
        trainer.fit(cancel=token)
    best = load_model(tmp_path / "best.safetensors")
    for key, value in best.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key
    assert (tmp_path / "last.ckpt").exists()
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.slow
def test_resume_continues_from_last_checkpoint(tmp_path):
    model = tiny()
    Trainer(model, config(epochs=2), disc_samples(), [], checkpoint_dir=tmp_path).fit()
    again = Trainer(tiny(), config(epochs=4), disc_samples(), [], checkpoint_dir=tmp_path)
    again.resume()
    history = again.fit()
    assert [e["epoch"] for e in history.epochs] == [1, 2, 3, 4]


@pytest.mark.slow
def test_early_stopping_and_time_budget():
    h = Trainer(
        tiny(), config(epochs=50, lr=1e-9, early_stopping=2), disc_samples(), disc_samples(2)
    ).fit()
    assert "early stopping" in h.stopped and len(h.epochs) < 50
    h = Trainer(tiny(), config(epochs=50, time_budget=0.0), disc_samples(), []).fit()
    assert "time budget" in h.stopped and len(h.epochs) == 1


@pytest.mark.slow
def test_sparse_labels_only_use_labelled_pixels():
    """The training loss has no gradient at unlabelled (-1) pixels, and some at labelled ones."""
    samples = disc_samples(2)
    for s in samples:
        s.mask = s.mask.copy()
        s.mask[:, 16:] = -1  # right half unlabelled
    model = tiny()
    grads = []

    def keep_gradient(module, inputs, logits):
        if logits.requires_grad:
            logits.register_hook(lambda g: grads.append(g.detach().clone()))

    model.register_forward_hook(keep_gradient)
    # whole 32×32 images (patch_size = image size, no augmentation): pixels keep their place
    Trainer(model, config(epochs=1, batch_size=2), samples, []).fit()
    assert grads, "no training step ran"
    for grad in grads:
        assert grad.shape[-2:] == (32, 32)
        assert torch.count_nonzero(grad[..., 16:]) == 0  # unlabelled: no say in the loss
        assert torch.count_nonzero(grad[..., :16]) > 0


@pytest.mark.slow
def test_finetune_leaves_original_untouched():
    model = tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tuned, history = finetune(model, disc_samples(), disc_samples(2, seed=1), config(epochs=2))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert any(not torch.equal(v, tuned.state_dict()[k]) for k, v in before.items())
    assert tuned.card.metadata["finetune"]["epochs_run"] == 2


@pytest.mark.slow
def test_prune_workflow():
    result = prune_workflow(
        "use_net",
        {"width": 4, "depth": 2},
        disc_samples(),
        disc_samples(2, seed=1),
        config(epochs=2),
        data=DataSpec(in_channels=1),
        normalization={"mode": "zscore"},
        threshold=10.0,  # every w < 10: prune all
    )
    assert set(result.pruned_modules) == set(result.focal_weights)
    assert focal_weights(result.model) == {}
    assert result.model.config["focal"] == 1.0
