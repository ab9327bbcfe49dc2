"""The tiny `mobile` space the supernet and estimator tests train on (seconds per supernet):
two stages of 8-16 channels at 32-64 px. Each test module names its own copy, so supernet
caches and registrations of one module never meet another's."""
from __future__ import annotations

from pathlib import Path

from search_spaces import SearchSpace, load_space_file, register_space

TINY_MOBILE = """base: mobile
widths: [8, 16]
strides: [2, 2]
acts: [relu, hswish]
se: [false, true]
depths: [[1, 2], [1, 2]]
kernels: [3, 5]
expands: [2, 3]
resolutions: [32, 64]
stem: 8
first: 8
head: 32
mix: 32
"""


def write_tiny_mobile(folder: Path, name: str) -> Path:
    """The space file `<folder>/<name>.yaml` of the tiny space named `name`."""
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\n{TINY_MOBILE}")
    return path


def tiny_mobile(folder: Path, name: str) -> SearchSpace:
    """The tiny space named `name`, written to `folder` and registered."""
    return register_space(load_space_file(write_tiny_mobile(folder, name)))


def tiny_mobile_fixtures(name: str):
    """Module-scoped fixtures `space_file`, `tiny` (the registered space) and `digits` for a
    test module: `space_file, tiny, digits = tiny_mobile_fixtures("tiny-x")`."""
    import pytest

    from estimators.data import load_data

    @pytest.fixture(scope="module")
    def space_file(tmp_path_factory) -> Path:
        return write_tiny_mobile(tmp_path_factory.mktemp("spaces"), name)

    @pytest.fixture(scope="module")
    def tiny(space_file) -> SearchSpace:
        return register_space(load_space_file(space_file))

    @pytest.fixture(scope="module")
    def digits():
        return load_data("digits")

    return space_file, tiny, digits
