"""Shared fixtures. Tests that read the published reference data skip where ../shared is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# helper modules of the tests, imported by name (no package): their asserts explain failures too
pytest.register_assert_rewrite("transform_checks")

SHARED_DATA = Path(os.environ.get("NAS_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not found at {SHARED_DATA} (../shared/data beside the checkout)")
    return SHARED_DATA


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Two threads on a 2-core CI machine shared with other work slow small models ~100x."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
