"""Shared pytest configuration.

``case`` is parametrised from a test class's ``cases`` list, so every
architecture test class (see ``tests/models/contract.py``) runs the shared
contract over its own representative options.
"""

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)  # tiny test models: threading overhead outweighs any gain

TESTS = Path(__file__).parent
#: a test that asks for one of these drives Qt or a napari viewer
GUI_FIXTURES = {"make_napari_viewer", "make_napari_viewer_proxy", "viewer", "qtbot", "qapp"}
#: slow tests of files that other work keeps appending to, marked here instead of in the
#: file: by the fixtures they use, or by name (they train a model or take seconds)
SLOW_FIXTURES = {"test_distributed.py": {"client"}}  # a two-process Dask cluster
SLOW_TESTS = {
    "widgets/test_desk.py": {
        "test_no_form_rows_overlap_before_or_after_a_round",  # trains a fine-tune round
        "test_opening_the_segment_dock_imports_neither_monai_nor_the_other_docks",
        "test_segment_and_finetune_docked_together_fit_1366_by_768",
    },
    "test_distributed.py": {"test_blockwise_runs_drop_what_needs_the_whole_image_and_say_so"},
}


def pytest_collection_modifyitems(config, items):
    """Mark ``gui`` every test under tests/widgets/ or using a viewer or Qt fixture, and
    ``slow`` the tests above (every other slow test carries its own mark)."""
    for item in items:
        if not item.path.is_relative_to(TESTS):
            continue
        fixtures = set(getattr(item, "fixturenames", ()))
        where = item.path.relative_to(TESTS).as_posix()
        if where.startswith("widgets/") or fixtures & GUI_FIXTURES:
            item.add_marker(pytest.mark.gui)
        names = SLOW_TESTS.get(where, set())
        missing = sorted(n for n in names if not hasattr(getattr(item, "module", None), n))
        if missing:
            raise pytest.UsageError(f"SLOW_TESTS in tests/conftest.py: no {missing} in {where}")
        name = getattr(item, "originalname", item.name)
        if fixtures & SLOW_FIXTURES.get(where, set()) or name in names:
            item.add_marker(pytest.mark.slow)


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
