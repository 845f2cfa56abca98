"""Property-based tests (hypothesis): any bytes give a named error or a valid result.

Whatever is written to a ``.png``/``.tif`` file, :func:`read_image` and
:func:`read_mask` return an array or raise :class:`ImageFileError`; whatever
is written to a ``.json`` card or a ``.safetensors`` file, :func:`read_card`
and :func:`load_model` return a card/model or raise :class:`ModelFileError`.
Never another exception, and never a change to the folder (no partial write,
no stray temporary file). Bytes are drawn raw, and as mutations of valid files
(truncated, bytes overwritten) so the decoders get past their magic numbers.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from napari_attnseg.data.io import ImageFileError, read_image, read_mask
from napari_attnseg.models import ModelFileError, load_model, read_card, save_model
from napari_attnseg.models.base import SegmentationModel

from .conftest import tiny_model
from .snapshot import snapshot

SETTINGS = settings(
    max_examples=50,
    deadline=None,
    database=None,  # no .hypothesis/ folder in the checkout
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _valid_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.arange(96, dtype=np.uint8).reshape(8, 12)).save(buffer, format="PNG")
    return buffer.getvalue()


def _valid_tiff() -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.arange(96, dtype=np.uint16).reshape(8, 12))
    return buffer.getvalue()


def _model_files() -> tuple[bytes, bytes]:
    with tempfile.TemporaryDirectory() as folder:
        path = save_model(tiny_model(), Path(folder) / "m")
        return path.read_bytes(), path.with_suffix(".json").read_bytes()


PNG, TIFF = _valid_png(), _valid_tiff()
WEIGHTS, CARD = _model_files()


def mutated(valid: bytes) -> st.SearchStrategy[bytes]:
    """``valid`` truncated, or with a few bytes overwritten, or with garbage appended."""
    cut = st.integers(0, len(valid)).map(lambda n: valid[:n])
    patch = st.lists(
        st.tuples(st.integers(0, len(valid) - 1), st.binary(min_size=1, max_size=8)),
        min_size=1,
        max_size=4,
    ).map(lambda edits: _patched(valid, edits))
    grown = st.binary(min_size=1, max_size=64).map(lambda tail: valid + tail)
    return st.one_of(cut, patch, grown)


def _patched(data: bytes, edits) -> bytes:
    out = bytearray(data)
    for at, chunk in edits:
        out[at : at + len(chunk)] = chunk
    return bytes(out[: len(data)])


def any_bytes(valid: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=2048), mutated(valid))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def card_documents() -> st.SearchStrategy[bytes]:
    """Cards that look right (format, config) with arbitrary values in their fields."""
    base = json.loads(CARD)
    keys = st.sampled_from(sorted(base) + ["config.width", "config.name", "config.depth"])
    edits = st.dictionaries(keys, JSON_VALUES, min_size=1, max_size=3)

    def apply(changes: dict) -> bytes:
        document = json.loads(CARD)
        for key, value in changes.items():
            if key.startswith("config."):
                if isinstance(document.get("config"), dict):
                    document["config"][key.split(".", 1)[1]] = value
            else:
                document[key] = value
        return json.dumps(document).encode()

    return edits.map(apply)


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def _only(folder: Path, expected: set[str]) -> None:
    assert set(snapshot(folder)) == expected, snapshot(folder)


@pytest.mark.filterwarnings("ignore::UserWarning")  # PIL/tifffile on damaged tags
@SETTINGS
@given(data=any_bytes(PNG) | any_bytes(TIFF), suffix=st.sampled_from([".png", ".tif"]))
def test_any_bytes_read_as_an_image_or_raise_image_file_error(folder, data, suffix):
    path = folder / f"image{suffix}"
    path.write_bytes(data)
    for reader in (read_image, read_mask):
        try:
            array = reader(path)
        except ImageFileError as exc:
            assert path.name in str(exc)
        else:
            assert isinstance(array, np.ndarray) and array.ndim >= 2 and array.size > 0
        assert path.read_bytes() == data
        _only(folder, {path.name})
    path.unlink()


@SETTINGS
@given(data=any_bytes(CARD) | card_documents())
def test_any_card_gives_a_model_or_model_file_error(folder, data):
    (folder / "m.safetensors").write_bytes(WEIGHTS)
    (folder / "m.json").write_bytes(data)
    for reader in (read_card, load_model):
        try:
            result = reader(folder / "m")
        except ModelFileError as exc:
            assert "m." in str(exc)
        else:
            assert isinstance(result, dict | SegmentationModel)
        _only(folder, {"m.safetensors", "m.json"})
    assert (folder / "m.json").read_bytes() == data


@SETTINGS
@given(data=any_bytes(WEIGHTS), with_card=st.booleans())
def test_any_weights_give_a_model_or_model_file_error(folder, data, with_card):
    for stale in folder.iterdir():
        stale.unlink()
    (folder / "m.safetensors").write_bytes(data)
    if with_card:
        (folder / "m.json").write_bytes(CARD)
    for reader in (read_card, load_model):
        try:
            result = reader(folder / "m.safetensors")
        except ModelFileError as exc:
            assert "m." in str(exc)
        else:
            assert isinstance(result, dict | SegmentationModel)
        _only(folder, {"m.safetensors"} | ({"m.json"} if with_card else set()))
    assert (folder / "m.safetensors").read_bytes() == data
