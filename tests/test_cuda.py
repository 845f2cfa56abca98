"""The CUDA paths, on a real NVIDIA GPU: autocast, out-of-memory fallback, CUDA = CPU.

Every test here is skipped cleanly where PyTorch sees no CUDA device (the
module-level mark), so the file is harmless in the CPU test suite;
``scripts/gpu_check.sh`` runs it on a GPU machine. No mocks: the
out-of-memory test makes the allocator really fail by capping this process's
share of the GPU memory and asking for a tile that cannot fit.
"""

import numpy as np
import pytest
import torch

from napari_attnseg.inference import Predictor, autocast_dtype, resolve_precision
from napari_attnseg.models import create_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")

CUDA = torch.device("cuda")


@pytest.fixture
def exact_cuda():
    """Plain fp32 on the GPU (no TF32), so CUDA and CPU results are comparable."""
    conv, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, matmul


def _model(arch: str = "focal_attention_unet", width: int = 8):
    torch.manual_seed(0)
    return create_model(arch, in_channels=3, n_classes=1, width=width).eval()


def _image(size: int = 96, seed: int = 0) -> np.ndarray:
    """Bright discs on a noisy background, RGB uint8: foreground a model can find."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    image = rng.normal(60, 10, (size, size))
    for _ in range(6):
        cy, cx, r = rng.integers(10, size - 10, 2).tolist() + [int(rng.integers(4, 9))]
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] += 120
    return np.repeat(np.clip(image, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


@pytest.mark.parametrize("arch", ["unet", "focal_attention_unet", "focal_use_net"])
def test_cuda_fp32_matches_cpu(arch, exact_cuda):
    model = _model(arch)
    x = torch.randn(2, 3, 64, 80)
    with torch.inference_mode():
        expected = model(x)
        got = model.to(CUDA)(x.to(CUDA)).cpu()
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3)


def test_predictor_cuda_matches_cpu_tiled(exact_cuda):
    model = _model()
    image = _image(160)
    settings = dict(tile_size=64, overlap=0.25, batch_size=3, precision="fp32")
    cpu = Predictor(model, device="cpu", **settings).predict(image)
    gpu = Predictor(_model(), device="cuda", **settings).predict(image)
    np.testing.assert_allclose(gpu.probabilities, cpu.probabilities, atol=1e-3)
    assert np.mean(gpu.labels == cpu.labels) > 0.999


@pytest.mark.parametrize("precision", ["auto", "bf16", "fp16"])
def test_autocast_runs_at_the_precision_asked_and_stays_close(precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    resolved = resolve_precision(CUDA, precision)
    assert resolved in ("bf16", "fp16")
    dtype = autocast_dtype(CUDA, precision)
    model = _model().to(CUDA)
    x = torch.randn(2, 3, 64, 64, device=CUDA)
    with torch.inference_mode():
        with torch.autocast("cuda", dtype=dtype):
            low = model(x)
        full = model(x)
    assert low.dtype == dtype  # the network really ran in low precision
    assert torch.isfinite(low).all()
    probs_low, probs_full = torch.sigmoid(low.float()), torch.sigmoid(full)
    assert (probs_low - probs_full).abs().max().item() < 0.05
    image = _image(96)
    fast = Predictor(_model(), device="cuda", precision=precision).predict(image)
    exact = Predictor(_model(), device="cpu", precision="fp32").predict(image)
    assert np.abs(fast.probabilities - exact.probabilities).max() < 0.05
    assert np.mean(fast.labels == exact.labels) > 0.99


@pytest.mark.slow
def test_training_step_with_amp_on_cuda():
    from napari_attnseg.benchmark import synthetic_samples
    from napari_attnseg.training import TrainConfig, Trainer

    samples = synthetic_samples(2, 64, 3, seed=0)
    config = TrainConfig(
        epochs=1,
        batch_size=2,
        patch_size=64,
        device="cuda",
        amp=True,
        schedule="none",
        early_stopping=None,
        seed=0,
    )
    model = create_model("focal_attention_unet", in_channels=3, n_classes=1, width=8)
    history = Trainer(model, config, samples, samples[:1]).fit()
    assert np.isfinite(history.epochs[0]["train_loss"])
    assert next(model.parameters()).dtype == torch.float32  # master weights stay fp32


@pytest.fixture
def small_gpu_share():
    """Cap this process at ~192 MiB of the GPU's memory (restored afterwards)."""
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(CUDA).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, 192 * 2**20 / total), CUDA)
    yield
    torch.cuda.set_per_process_memory_fraction(1.0, CUDA)
    torch.cuda.empty_cache()


def test_real_out_of_memory_falls_back_to_smaller_tiles(small_gpu_share):
    """A 1536² single tile of a width-16 U-Net needs > 1 GiB of activations: it cannot fit
    in 192 MiB, so the allocator fails for real and the Predictor retries smaller tiles."""
    model = _model("unet", width=16)
    image = _image(1536, seed=1)
    # the cap really bites: the same forward pass fails outright
    with pytest.raises(torch.cuda.OutOfMemoryError):
        with torch.inference_mode():
            model.to(CUDA)(torch.zeros(1, 3, 1536, 1536, device=CUDA))
    torch.cuda.empty_cache()
    messages: list[str] = []
    predictor = Predictor(
        model,
        device="cuda",
        tile_size=1536,
        batch_size=1,
        precision="fp32",
        on_message=messages.append,
    )
    result = predictor.predict(image)
    assert result.labels.shape == (1536, 1536)
    assert any("out of GPU memory" in m for m in messages), messages
    assert predictor.settings.tile_size < 1536 or predictor.device.type == "cpu"
    reference = Predictor(
        _model("unet", width=16),
        device="cpu",
        precision="fp32",
        tile_size=predictor.settings.tile_size or 512,
    ).predict(image)
    assert np.mean(result.labels == reference.labels) > 0.99
