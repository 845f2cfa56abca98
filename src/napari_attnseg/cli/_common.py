"""Helpers shared by the subcommands: progress bars, KEY=VALUE options and output paths."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tqdm import tqdm


class ProgressBar:
    """Adapts the engine's ``progress(done, total, message)`` callbacks to a tqdm bar."""

    def __init__(self, desc: str = "", disable: bool = False, unit: str = "step") -> None:
        self.bar = tqdm(total=1, desc=desc, disable=disable, unit=unit, dynamic_ncols=True)

    def __call__(self, done: int, total: int, message: str = "") -> None:
        if self.bar.total != total:
            self.bar.total = total
        self.bar.n = done
        if message:
            self.bar.set_postfix_str(message, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def add_device(parser: argparse.ArgumentParser, default: str | None = "auto") -> None:
    parser.add_argument(
        "--device",
        default=default,
        help="auto (CUDA, then MPS, then CPU), cuda, cuda:N, mps or cpu",
    )


def parse_options(items: list[str], flag: str = "--option") -> dict[str, Any]:
    """``["width=16", "pruned=[\"a\"]"]`` -> ``{"width": 16, "pruned": ["a"]}``.

    Each value is read as JSON (numbers, true/false/null, lists, objects) and
    kept as a string when it is not valid JSON; ``flag`` names the option in errors.
    """
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} expects KEY=VALUE, got {item!r}")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files given directly, and the images inside folders given."""
    from ..data.io import IMAGE_SUFFIXES

    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            paths.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        elif path.exists():
            paths.append(path)
        else:
            raise FileNotFoundError(f"input not found: {path}")
    if not paths:
        raise ValueError("no input images found")
    return paths
