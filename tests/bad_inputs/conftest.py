"""Fixtures of the bad-input suite: a work folder with tiny models, images and masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_attnseg.cli import main
from napari_attnseg.models import ModelCard, create_model, save_model


def disc_image(size=(40, 48), seed=0):
    """A bright disc on noise and its 0/1 mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: size[0], : size[1]]
    cy, cx = size[0] // 2 + rng.integers(-4, 5), size[1] // 2 + rng.integers(-4, 5)
    mask = ((yy - cy) ** 2 + (xx - cx) ** 2 <= 81).astype(np.uint8)
    image = (mask * 120 + rng.normal(60, 12, size)).clip(0, 255).astype(np.uint8)
    return image, mask


def tiny_model(in_channels=1, n_classes=1, arch="unet"):
    model = create_model(arch, in_channels=in_channels, n_classes=n_classes, width=4, depth=2)
    model.card = ModelCard(name="tiny", class_names=[f"c{i}" for i in range(max(2, n_classes))])
    return model


@pytest.fixture
def work(tmp_path):
    """``tmp_path/work`` holding ``tiny.safetensors`` (+ card), ``images/`` and ``masks/``."""
    root = tmp_path / "work"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(3):
        image, mask = disc_image(seed=i)
        tifffile.imwrite(root / "images" / f"img{i}.tif", image)
        tifffile.imwrite(root / "masks" / f"img{i}.tif", mask * 255)
    save_model(tiny_model(), root / "tiny")
    return root


@pytest.fixture
def cli(capsys):
    """``cli("predict", ...) -> (exit code, stdout, stderr)``; argparse exits become codes."""

    def run(*argv) -> tuple[int, str, str]:
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def one_error_line(err: str, command: str) -> str:
    """The error line of a failed command, checking it is the only ``error:`` line."""
    lines = [line for line in err.splitlines() if f"attnseg {command}: error:" in line]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


def files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))
