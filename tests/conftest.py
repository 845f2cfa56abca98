"""Shared pytest configuration.

``case`` is parametrised from a test class's ``cases`` list, so every
architecture test class (see ``tests/models/contract.py``) runs the shared
contract over its own representative options.
"""

import pytest
import torch

torch.set_num_threads(1)  # tiny test models: threading overhead outweighs any gain


def _case_id(case: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in case.items()) or "default"


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames and metafunc.cls is not None:
        cases = getattr(metafunc.cls, "cases", [{}])
        metafunc.parametrize("case", cases, ids=[_case_id(c) for c in cases])


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def user_model_dir(tmp_path_factory, monkeypatch):
    """Every test gets its own empty user model folder (never the real one)."""
    path = tmp_path_factory.mktemp("user_models")
    monkeypatch.setenv("NAPARI_ATTNSEG_MODEL_DIR", str(path))
    return path
