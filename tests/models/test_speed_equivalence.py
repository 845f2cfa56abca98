"""The speed changes of the U-Nets compute the same function as before.

Group-norm instance norm, the strided 2×2 max-pool, the gate that skips a
same-size interpolation, and channels-last CPU inference are all meant to be
numerically equivalent to the layers they replaced, so that the shipped zoo
weights predict as they did when they were trained.
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from napari_attnseg.models import create_model
from napari_attnseg.models.architectures.unet import MaxPool2x2
from napari_attnseg.models.blocks.gate import AttentionGate
from napari_attnseg.models.blocks.layers import InstanceNorm2d, norm_layer


def test_instance_norm_is_torch_instance_norm_forward_and_backward():
    ours = norm_layer("instance", 6)
    assert isinstance(ours, InstanceNorm2d) and isinstance(ours, nn.InstanceNorm2d)
    reference = nn.InstanceNorm2d(6, affine=True)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
        ours.bias.normal_()
    reference.load_state_dict(ours.state_dict())  # same parameters, same names
    x = (torch.randn(3, 6, 17, 23) * 4 + 2).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    y, y_ref = ours(x), reference(x_ref)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    weights = torch.randn_like(y)
    (y * weights).sum().backward()
    (y_ref * weights).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours.weight.grad, reference.weight.grad, rtol=1e-4, atol=1e-4)
    # channels-last input gives the same numbers (up to the kernel's float rounding)
    with torch.no_grad():
        cl = ours(x.detach().contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(cl, y_ref.detach(), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("shape", [(2, 3, 16, 16), (1, 4, 17, 23), (2, 2, 9, 8)])
def test_max_pool_is_torch_max_pool(shape):
    x = torch.randn(shape, requires_grad=True)
    y = MaxPool2x2()(x)
    torch.testing.assert_close(y, F.max_pool2d(x, 2), rtol=0, atol=0)
    y.sum().backward()  # each window's gradient goes to its (unique) maximum
    x_ref = x.detach().clone().requires_grad_()
    F.max_pool2d(x_ref, 2).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)
    cl = x.detach().contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(MaxPool2x2()(cl), F.max_pool2d(x.detach(), 2), rtol=0, atol=0)


def test_gate_skips_only_a_same_size_interpolation():
    gate = AttentionGate(8, 16, 4)
    x = torch.randn(2, 8, 32, 32)

    def explicit(g):
        theta = gate.theta(x)
        phi = F.interpolate(
            gate.phi(g), size=theta.shape[-2:], mode="bilinear", align_corners=False
        )
        return torch.sigmoid(gate.psi(torch.relu(theta + phi)))

    with torch.no_grad():
        for g in (torch.randn(2, 16, 16, 16), torch.randn(2, 16, 8, 8)):  # same / coarser
            torch.testing.assert_close(gate.coefficients(x, g), explicit(g), rtol=0, atol=1e-6)


@pytest.mark.parametrize("arch", ["unet", "focal_attention_unet", "focal_use_net"])
def test_unet_cpu_inference_runs_channels_last_and_matches_training_mode_layout(arch):
    torch.manual_seed(0)
    model = create_model(arch, in_channels=3, n_classes=2, width=4).eval()
    x = torch.randn(2, 3, 40, 48)
    seen = []
    hook = model.encoder[0].register_forward_hook(
        lambda module, args, out: seen.append(out.is_contiguous(memory_format=torch.channels_last))
    )
    with torch.inference_mode():
        fast = model(x)
    with torch.enable_grad():  # gradients on: the plain NCHW path
        plain = copy.deepcopy(model)(x)
    hook.remove()
    assert seen == [True, False]
    torch.testing.assert_close(fast, plain.detach(), rtol=1e-3, atol=1e-3)
    with torch.inference_mode():  # no padding to crop: callers get an ordinary tensor back
        assert model(torch.randn(1, 3, 32, 32)).is_contiguous()
