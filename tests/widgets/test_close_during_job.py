"""Closing a dock, or the viewer, while a job runs: the job stops and napari exits cleanly.

The check runs ``close_during_job.py`` in a subprocess with a real, shown
napari window on the Xvfb display pytest-xvfb started: before jobs were kept
apart from their widgets this ended in a segmentation fault (exit 139) or a
process that kept training after its window was gone (no exit at all).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("close_during_job.py")


@pytest.mark.parametrize("kind", ["segment", "finetune"])
@pytest.mark.slow
def test_closing_the_dock_and_the_viewer_during_a_job_exits_cleanly(kind, tmp_path):
    if not os.environ.get("DISPLAY"):
        pytest.skip("needs an X display (pytest-xvfb provides one)")
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    env["NAPARI_CONFIG"] = str(tmp_path / "napari_settings.yaml")  # never the user's settings
    result = subprocess.run(
        [sys.executable, str(SCRIPT), kind],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"exit code {result.returncode}:\n{output[-3000:]}"
    assert "Traceback" not in output and "Segmentation fault" not in output, output[-3000:]
    lines = result.stdout.splitlines()
    assert "dock closed while running" in lines
    assert "layers unchanged" in lines  # the cancelled job wrote nothing
    assert "viewer closed while running" in lines
    assert "all jobs returned" in lines  # no thread was left running at exit
