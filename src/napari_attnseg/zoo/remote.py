"""Weights from a URL, verified against a pinned SHA-256, cached per user (via pooch).

The shipped zoo never needs this (it loads offline from the package); it is
for models published later. A MODEL argument of the form
``https://host/name.safetensors#sha256=<64 hex digits>`` is fetched once into
the user cache and then loaded like any local file: the model card travels
inside the safetensors header, so one verified file is enough.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import pooch
from platformdirs import user_cache_dir

CACHE_ENV = "NAPARI_ATTNSEG_CACHE_DIR"
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


def cache_dir() -> Path:
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    return Path(user_cache_dir("napari-attnseg", appauthor=False)) / "models"


def is_url(spec: str) -> bool:
    return spec.startswith(("http://", "https://"))


def split_pinned_url(spec: str) -> tuple[str, str]:
    """``(url, sha256)`` from ``url#sha256=<hex>``; a URL without a pin is refused."""
    url, _, fragment = spec.partition("#")
    key, _, digest = fragment.partition("=")
    if key != "sha256" or not _SHA256.match(digest):
        raise ValueError(
            f"a model URL must pin its SHA-256 as '#sha256=<64 hex digits>', got {spec!r}"
        )
    return url, digest.lower()


def fetch(url: str, sha256: str, *, progress: bool = False) -> Path:
    """Download ``url`` into the cache unless a verified copy is there; return its path.

    A download whose hash differs from ``sha256`` is deleted and raises ``ValueError``.
    """
    if not _SHA256.match(sha256):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
    name = Path(urlsplit(url).path).name or "model.safetensors"
    if not name.endswith(".safetensors"):
        raise ValueError(f"model URLs must point at a .safetensors file, got {url!r}")
    target = cache_dir() / sha256[:16]
    try:
        path = pooch.retrieve(
            url,
            known_hash=f"sha256:{sha256.lower()}",
            fname=name,
            path=target,
            progressbar=progress,
        )
    except ValueError as exc:  # pooch: hash mismatch (the bad file is removed)
        raise ValueError(f"{url}: {exc}") from exc
    except Exception as exc:  # network errors
        raise OSError(f"could not download {url}: {exc}") from exc
    return Path(path)
