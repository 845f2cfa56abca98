"""Precision selection: bf16 only where the hardware computes it natively and faster."""

import pytest
import torch

from napari_attnseg.inference import (
    PRECISIONS,
    autocast_dtype,
    cpu_has_native_bf16,
    resolve_precision,
)
from napari_attnseg.inference import device as device_module
from napari_attnseg.inference.device import BF16_MIN_SPEEDUP, CPU_BF16_ENV, cpu_bf16_speedup

CPU = torch.device("cpu")


@pytest.mark.parametrize(("native", "expected"), [("1", "bf16"), ("0", "fp32")])
def test_auto_on_cpu_follows_native_bf16_support(monkeypatch, native, expected):
    monkeypatch.setenv(CPU_BF16_ENV, native)
    assert cpu_has_native_bf16() is (native == "1")
    assert resolve_precision(CPU, "auto") == expected
    assert autocast_dtype(CPU, "auto") == (torch.bfloat16 if native == "1" else None)


def test_detection_uses_pytorch_capability_queries(monkeypatch):
    monkeypatch.delenv(CPU_BF16_ENV, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert not cpu_has_native_bf16()
    assert resolve_precision(CPU) == "fp32"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert cpu_has_native_bf16()


@pytest.mark.parametrize(("speedup", "expected"), [(0.85, "fp32"), (1.0, "fp32"), (1.6, "bf16")])
def test_auto_on_a_native_bf16_cpu_takes_bf16_only_where_faster(monkeypatch, speedup, expected):
    """Native bf16 that runs slower than fp32 (Xeons without AMX: 0.8x) keeps auto at fp32."""
    monkeypatch.delenv(CPU_BF16_ENV, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setattr(device_module, "_measured_cpu_bf16_speedup", lambda: speedup)
    assert cpu_has_native_bf16()
    assert resolve_precision(CPU, "auto") == expected
    assert resolve_precision(CPU, "bf16") == "bf16"  # an explicit choice is still honoured


def test_probe_is_skipped_without_native_bf16_and_measures_a_ratio(monkeypatch):
    monkeypatch.delenv(CPU_BF16_ENV, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)

    def fail():
        raise AssertionError("probed a CPU without native bf16")

    monkeypatch.setattr(device_module, "_measured_cpu_bf16_speedup", fail)
    assert resolve_precision(CPU) == "fp32"
    threads = torch.get_num_threads()
    ratio = cpu_bf16_speedup(width=8, size=16, repeats=2)
    assert 0.05 < ratio < 20 and BF16_MIN_SPEEDUP > 1
    assert torch.get_num_threads() == threads  # the probe restores the thread count


def test_explicit_choices_are_honoured_and_mps_stays_fp32(monkeypatch):
    monkeypatch.setenv(CPU_BF16_ENV, "0")
    assert [resolve_precision(CPU, p) for p in PRECISIONS[1:]] == ["fp32", "bf16", "fp16"]
    assert autocast_dtype(CPU, "fp32") is None
    assert autocast_dtype(CPU, "bf16") == torch.bfloat16
    assert resolve_precision(torch.device("mps"), "auto") == "fp32"
    assert autocast_dtype(torch.device("mps"), "bf16") is None


def test_auto_on_cuda_prefers_bf16_when_supported(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision(cuda) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision(cuda) == "fp16"
    assert autocast_dtype(cuda) == torch.float16


def test_unknown_precision_is_named():
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, fp16"):
        resolve_precision(CPU, "int8")


def test_the_command_line_offers_every_precision():
    from napari_attnseg.cli._common import PRECISIONS as CLI_PRECISIONS

    assert CLI_PRECISIONS == PRECISIONS
