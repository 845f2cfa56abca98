"""Model resolution: paths, zoo names, task defaults, user models, pinned URLs (loopback)."""

import hashlib
import http.server
import sys
import threading
from functools import partial
from pathlib import Path

import pytest
import torch

from napari_attnseg import zoo
from napari_attnseg.models import create_model, save_model

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import zoo as script  # noqa: E402  scripts/zoo.py


@pytest.fixture
def tiny_model():
    return create_model("unet", in_channels=1, n_classes=1, width=4, depth=2)


def test_path_and_user_model_resolution(tiny_model, tmp_path, user_model_dir):
    path = save_model(tiny_model, tmp_path / "m.safetensors")
    assert zoo.resolve(str(path)) == path
    assert zoo.resolve(str(path.with_suffix(".json"))) == path
    saved = save_model(tiny_model, zoo.unique_user_path("mine"))
    assert zoo.resolve("mine") == saved
    assert zoo.unique_user_path("mine").name == "mine-2.safetensors"
    assert [m.name for m in zoo.user_models()] == ["mine"]


def test_unknown_model_lists_what_exists(user_model_dir):
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        zoo.resolve("nope")
    with pytest.raises(FileNotFoundError):
        zoo.resolve("missing/file.safetensors")


@pytest.fixture
def loopback(tmp_path):
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    server.shutdown()


def test_pinned_url_fetches_once_and_verifies(tiny_model, loopback, tmp_path_factory, monkeypatch):
    base, served = loopback
    monkeypatch.setenv(zoo.remote.CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
    path = save_model(tiny_model, served / "remote.safetensors")
    path.with_suffix(".json").unlink()  # the card travels inside the weights file
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    model = zoo.load(f"{base}/remote.safetensors#sha256={digest}")
    x = torch.randn(1, 1, 32, 32)
    tiny_model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), tiny_model(x))
    path.unlink()  # second time: served from the cache, no network needed
    assert zoo.resolve(f"{base}/remote.safetensors#sha256={digest}").exists()


def test_url_without_pin_or_with_wrong_hash_is_refused(
    tiny_model, loopback, tmp_path_factory, monkeypatch
):
    base, served = loopback
    monkeypatch.setenv(zoo.remote.CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
    save_model(tiny_model, served / "remote.safetensors")
    with pytest.raises(ValueError, match="pin its SHA-256"):
        zoo.resolve(f"{base}/remote.safetensors")
    with pytest.raises(ValueError, match="remote.safetensors"):
        zoo.resolve(f"{base}/remote.safetensors#sha256={'0' * 64}")


def test_every_shipped_card_is_complete():
    """The card keys scripts/zoo.py requires (data, licence, recipe, command, device,
    precision, threads, wall time, epochs, fp16 validation metrics); JSON only."""
    cards = script.shipped_cards()
    assert cards, "no shipped cards"
    for name, card in cards.items():
        # cards written before training.precision existed state it through config.amp
        assert script.missing_card_keys(card, legacy=True) == [], name
        assert (
            card["metrics"]["weights"] == "fp16 as shipped" and card["weights_dtype"] == "float16"
        )
        assert (ROOT / card["metadata"]["recipe"]).is_file(), name
