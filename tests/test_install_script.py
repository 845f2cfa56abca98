"""scripts/install.sh picks the PyTorch build on purpose (checked with --dry-run, no network)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "install.sh"
CPU_INDEX = "--index-url https://download.pytorch.org/whl/cpu"


def dry_run(tmp_path, nvidia_smi: str | None = None, **env) -> str:
    """The script's --dry-run output on a machine with no pip configuration but ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "TORCH_"))}
    clean.update(PIP_CONFIG_FILE=os.devnull, PYTHON=sys.executable, HOME=str(tmp_path))
    clean["NVIDIA_SMI"] = nvidia_smi or str(tmp_path / "no-such-nvidia-smi")
    clean.update(env)
    run = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run"], env=clean, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


def fake_nvidia_smi(tmp_path, output: str, status: int) -> str:
    path = tmp_path / "nvidia-smi"
    path.write_text(f"#!/bin/sh\nprintf '%s\\n' '{output}'\nexit {status}\n")
    path.chmod(0o755)
    return str(path)


def command(output: str) -> str:
    [line] = [line for line in output.splitlines() if line.startswith("would run:")]
    return line


def test_no_nvidia_gpu_installs_the_cpu_wheel(tmp_path):
    out = dry_run(tmp_path)
    assert command(out).endswith(f"pip install torch==2.13.0 {CPU_INDEX}")
    assert "CPU-only build" in out and "not found" in out


def test_nvidia_smi_without_a_working_driver_counts_as_no_gpu(tmp_path):
    smi = fake_nvidia_smi(tmp_path, "NVIDIA-SMI has failed: couldn't communicate", 9)
    out = dry_run(tmp_path, nvidia_smi=smi)
    assert command(out).endswith(CPU_INDEX) and "found no NVIDIA GPU" in out


def test_an_nvidia_gpu_gets_the_default_index_cuda_build(tmp_path):
    smi = fake_nvidia_smi(tmp_path, "GPU 0: NVIDIA H200 (UUID: GPU-0)", 0)
    out = dry_run(tmp_path, nvidia_smi=smi)
    assert command(out).endswith("pip install torch==2.13.0")  # no --index-url: PyPI
    assert "CUDA build" in out and "GPU 0: NVIDIA H200" in out


@pytest.mark.parametrize("variable", ["PIP_INDEX_URL", "PIP_FIND_LINKS"])
def test_a_configured_mirror_is_used_as_configured(tmp_path, variable):
    out = dry_run(tmp_path, **{variable: "file:///srv/mirror/simple"})
    assert command(out).endswith("pip install torch==2.13.0")  # the mirror decides the build
    assert "configured with" in out and "file:///srv/mirror/simple" in out


def test_torch_index_url_overrides_everything(tmp_path):
    smi = fake_nvidia_smi(tmp_path, "GPU 0: NVIDIA H200 (UUID: GPU-0)", 0)
    url = "https://download.pytorch.org/whl/cu126"
    out = dry_run(
        tmp_path,
        nvidia_smi=smi,
        TORCH_INDEX_URL=url,
        TORCH_VERSION="2.9.1",
        PIP_INDEX_URL="file:///srv/mirror/simple",
    )
    assert command(out).endswith(f"pip install torch==2.9.1 --index-url {url}")
