"""The contract every registered space passes (as Optuna runs one suite over every sampler)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from estimators.flops import FlopsEstimator, analytical_cost, fvcore_cost
from nas.objectives import Constraint
from nas.sampling import sample_within
from search_spaces import Arch, InvalidArchError, get_space, list_spaces
from search_spaces.registry import SPARSE_SUFFIX, sparse_spaces

SPACES = list_spaces()
ALL_SPACES = SPACES + sparse_spaces()


@pytest.mark.parametrize("name", ALL_SPACES)
def test_keys_round_trip_and_samples_are_canonical(name):
    space = get_space(name)
    rng = np.random.default_rng(0)
    lengths = set()
    for _ in range(200):
        arch = space.sample(rng)
        body = space.encode(arch)
        assert space.contains(arch)
        assert space.decode(body) == arch and ":" not in body
        assert Arch.decode(arch.key) == arch
        assert space.parse(arch.key) == space.parse(body) == arch
        assert arch.key == f"{name}:{body}"
        lengths.add(arch.to_vector().shape)
    assert len(lengths) == 1


@pytest.mark.parametrize("name", ALL_SPACES)
def test_mutation_and_crossover_stay_in_space(name):
    space = get_space(name)
    rng = np.random.default_rng(1)
    for _ in range(30):
        a, b = space.sample(rng), space.sample(rng)
        child = space.mutate(a, rng)
        assert child != a and space.contains(child)
        assert space.contains(space.crossover(a, b, rng))


@pytest.mark.parametrize("name", ALL_SPACES)
def test_references_min_and_max(name):
    space = get_space(name)
    assert space.reference_archs(), f"{name} has no reference architectures"
    for ref_name, arch in space.reference_archs().items():
        assert space.contains(arch), ref_name
        assert space.parse(ref_name) == arch
    flops = FlopsEstimator()
    assert flops(space.min_arch())["flops"] <= flops(space.max_arch())["flops"]
    assert space.log10_size() > 0


@pytest.mark.parametrize("name", ALL_SPACES)
def test_analytical_count_equals_fvcore_and_forward_works(name):
    space = get_space(name)
    rng = np.random.default_rng(2)
    for arch in (space.min_arch(), space.sample(rng), space.sample(rng)):
        model = space.build(arch, num_classes=7).eval()
        x = model.example_input(2)
        with torch.no_grad():
            assert model(x).shape == (2, 7)
        counted = fvcore_cost(model, x[:1])
        predicted = analytical_cost(arch, num_classes=7)
        assert predicted.params == counted.params
        assert predicted.macs == pytest.approx(counted.macs, rel=0.005)
        assert predicted.sparse_macs == pytest.approx(counted.sparse_macs, rel=0.005)


@pytest.mark.parametrize("name", SPACES)
def test_sampling_under_a_tight_budget(name):
    space = get_space(name)
    flops = FlopsEstimator()
    low, high = flops(space.min_arch())["flops"], flops(space.max_arch())["flops"]
    budget = (Constraint("flops", low + 0.1 * (high - low)),)
    rng = np.random.default_rng(3)
    samples = [sample_within(space, budget, flops, rng) for _ in range(20)]
    assert all(flops(a)["flops"] <= budget[0].bound for a in samples)
    assert len(set(samples)) > 10  # repaired samples stay spread out


@pytest.mark.parametrize("name", SPACES)
def test_malformed_keys_raise(name):
    space = get_space(name)
    for body in ("", "garbage", "x" * 50, "1-2-3"):
        with pytest.raises(InvalidArchError):
            space.decode(body)


# --- space files: wrong settings are one-line errors naming the setting ----------------------
# (base, setting, bad value): wrong types, booleans, nested lists, zero, negative, even kernels,
# non-finite and absurd numbers, for every family.
BAD_SETTINGS = [
    ("mobile", "kernels", "three"), ("mobile", "kernels", [4]), ("mobile", "kernels", [3, 6]),
    ("mobile", "kernels", [True]), ("mobile", "kernels", [[3]]), ("mobile", "kernels", [-3]),
    ("mobile", "kernels", [0]), ("mobile", "expands", [1e9]), ("mobile", "expands", ["1e9"]),
    ("mobile", "expands", [0]), ("mobile", "expands", [-3]), ("mobile", "expands", [1e-05]),
    ("mobile", "resolutions", [-8]), ("mobile", "resolutions", [0]),
    ("mobile", "resolutions", [8.5]), ("mobile", "widths", [0, 40, 80, 112, 160]),
    ("mobile", "strides", [0, 2, 2, 1, 2]), ("mobile", "depths", [[0, 1]] * 5),
    ("mobile", "depths", "x"), ("mobile", "se", [1, 2, 3, 4, 5]), ("mobile", "stem", 0),
    ("mobile", "stem", "16"), ("mobile", "head", -1), ("mobile", "mix", -5),
    ("mobile", "dropout", 2), ("mobile", "classes", 0), ("mobile", "classes", True),
    ("mobile", "mid_divisor", 0), ("mobile", "se_reduction", 0), ("mobile", "first", -1),
    ("mobilenetv2", "width_mults", [0]), ("mobilenetv2", "width_mults", [-1.0]),
    ("fbnet", "ops", ["skip", "k4_e1"]), ("fbnet", "ops", ["skip", "k3_e0"]),
    ("fbnet", "ops", ["skip", "skip"]), ("fbnet", "widths", [0] * 7),
    ("fbnet", "depths", [0] * 7), ("fbnet", "strides", [0] * 7), ("fbnet", "resolution", -8),
    ("fbnet", "resolution", 0), ("fbnet", "stem", 0), ("fbnet", "stem_stride", 0),
    ("fbnet", "head", 0), ("fbnet", "classes", 0), ("fbnet", "dropout", 5),
    ("nb201", "channels", True), ("nb201", "resolution", -8), ("nb201", "classes", 0),
    ("resnet", "expansions", [0]), ("resnet", "widths", [0.0]), ("resnet", "stem", True),
    ("resnet", "resolutions", [0]), ("resnet", "widths", [float("nan")]),
    ("densenet", "growths", [0]), ("densenet", "resolutions", [-8]),
    ("densenet", "bn_size", 0), ("densenet", "layers", [[0]] * 4),
    ("vit", "mlp_ratios", [float("nan")]), ("vit", "mlp_ratios", [1e9]), ("vit", "widths", [0]),
    ("vit", "depths", [1000]), ("vit", "classes", True), ("vit-hybrid", "kernels", [4]),
    ("vit-hybrid", "kernels", [2, 3]), ("vit-hybrid", "conv_expands", [0]),
    ("vit-hybrid", "stem", True), ("vit-hybrid", "dropout", "x"),
    ("vit-hybrid", "classes", True), ("vit-resnas", "patch", 15),
    ("vit-resnas", "widths", [[160], [100], [640]]), ("vit-resnas", "head_dims", [32, 48]),
    ("vit-resnas", "depths", [[0]] * 3), ("vit-resnas", "resolutions", [200]),
    ("vit-resnas", "classes", True),
]


def _space_file(tmp_path, payload) -> str:
    import json

    path = tmp_path / "user_space.json"
    path.write_text(json.dumps(payload))
    return str(path)


@pytest.mark.parametrize("base, setting, value", BAD_SETTINGS)
def test_bad_space_file_settings_are_one_line_errors(tmp_path, base, setting, value):
    from search_spaces import NasError, load_space_file

    path = _space_file(tmp_path, {"name": "user_space", "base": base, setting: value})
    with pytest.raises(NasError) as info:
        load_space_file(path)
    message = str(info.value)
    assert "\n" not in message and setting in message, message


@pytest.mark.parametrize("base", SPACES)
def test_space_file_from_each_base_builds_and_round_trips(tmp_path, base):
    from search_spaces import load_space_file, register_space

    space = register_space(load_space_file(_space_file(tmp_path, {"name": f"user-{base}",
                                                                  "base": base})))
    for arch in (space.min_arch(), space.max_arch(), space.sample(0)):
        assert Arch.decode(arch.key) == arch
        assert analytical_cost(arch).params > 0


@pytest.mark.parametrize("name", ALL_SPACES)
def test_a_space_file_cannot_take_a_builtin_name(tmp_path, name):
    from search_spaces import NasError, load_space_file

    base = name.removesuffix(SPARSE_SUFFIX)
    with pytest.raises(NasError, match="built-in"):
        load_space_file(_space_file(tmp_path, {"name": name, "base": base}))
    named_by_file = tmp_path / f"{name}.json"  # no `name:`: the file name is the space name
    named_by_file.write_text(json.dumps({"base": base}))
    with pytest.raises(NasError, match="built-in"):
        load_space_file(named_by_file)


@pytest.mark.parametrize("payload, match", [
    ({"name": "my space", "base": "mobile"}, "name"),
    ({"name": "mobile:x", "base": "mobile"}, "name"),
    ({"name": 3, "base": "mobile"}, "name"),
    ({"name": "x" * 101, "base": "mobile"}, "name"),  # cache file names would be too long
    ({"name": "caf\u00e9", "base": "mobile"}, "name"),
    ({"name": "ok", "base": ["mobile"]}, "base"),
    ({"name": "ok", "family": ["resnet"]}, "family"),
    ({"name": "ok", "base": "mobile", "family": "resnet"}, "family"),
    ({"name": "ok", "base": "mobile", "sparse": "no"}, "sparse"),
])
def test_space_file_header_mistakes(tmp_path, payload, match):
    from search_spaces import NasError, load_space_file

    with pytest.raises(NasError, match=match) as info:
        load_space_file(_space_file(tmp_path, payload))
    assert "\n" not in str(info.value)


ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


@pytest.mark.parametrize("name", ALL_SPACES)
def test_keys_with_non_ascii_digits_are_rejected(name):
    """`\\d` and int() accept other scripts' digits; keys are ASCII, so one arch has one key."""
    space = get_space(name)
    rng = np.random.default_rng(4)
    for arch in (space.min_arch(), space.max_arch(), space.sample(rng)):
        body = space.encode(arch)
        for table in (ARABIC_INDIC, FULL_WIDTH):
            foreign = body.translate(table)
            if foreign != body:
                with pytest.raises(InvalidArchError):
                    space.decode(foreign)


def test_every_family_and_space_describes_itself():
    """The registry and the supernet factory read these instead of lists of names."""
    import importlib

    from search_spaces.registry import FAMILIES
    from search_spaces.supernets.factory import SUPERNETS

    for module in FAMILIES.values():
        assert isinstance(importlib.import_module(module).SPARSE_VARIANT, bool), module
    for name in ALL_SPACES:
        assert get_space(name).supernet_style in SUPERNETS, name
    assert "nb201-sparse" not in sparse_spaces() and "mobile-sparse" in sparse_spaces()
