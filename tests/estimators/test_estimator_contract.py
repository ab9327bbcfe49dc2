"""The contract of every registered accuracy estimator (`estimators.registry`): it describes
itself (name, an Options frozen dataclass with help on every field, needs_data, the unit of its
`acc`, the metrics it reports), rejects an unknown option and a bad option value with a one-line
error naming it, and, made from an evaluation config with tiny settings (digits, a tiny space;
the table estimator on a small generated CSV), returns the metrics it declares."""
from __future__ import annotations

import dataclasses

import pytest
from tiny_space import tiny_mobile

from estimators.base import CHECKS, ESTIMATOR_KEY, UNITS, EstimatorOptions
from estimators.data import load_data
from estimators.registry import get_estimator, list_estimators
from search_spaces import NasError, get_space

# a value of the wrong kind for each option kind (None is always accepted)
BAD = {"int1": 0, "int2": 1, "int0": -1, "whole1": 1.5, "positive": -1.0, "text": 3,
       "resolution": "huge", "proxy": "oracle", "proxies": ["oracle"], "sampling": "greedy",
       "proxy_or_none": "oracle", "fraction": 1.5, "nonnegative": -0.5, "bool": "no"}
# tiny settings per estimator (the table's CSV is filled in by the test)
TINY_OPTIONS = {
    "proxy": {"batch_size": 8},
    "train": {"epochs": 1.0, "batch_size": 32, "train_images": 64, "eval_images": 64},
    "supernet": {"epochs": 1, "train_images": 64, "batch_size": 32, "random_subnets": 0,
                 "calibration_images": 32, "eval_images": 64},
    "table": {},
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_mobile(tmp_path_factory.mktemp("spaces"), "tiny-contract")


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", seed=0)


@pytest.mark.parametrize("name", list_estimators())
def test_estimator_describes_itself(name):
    cls = get_estimator(name)
    assert cls.name == name
    assert isinstance(cls.needs_data, bool)
    assert isinstance(cls.space_bound, bool) and isinstance(cls.test_split, bool)
    assert cls.unit in UNITS
    assert issubclass(cls.Options, EstimatorOptions) and dataclasses.is_dataclass(cls.Options)
    assert cls.Options.__dataclass_params__.frozen
    for spec in dataclasses.fields(cls.Options):
        assert spec.metadata.get("help"), f"{name}.{spec.name} has no help"
        assert spec.metadata.get("kind") in CHECKS, f"{name}.{spec.name} has no known kind"
        assert spec.default is not dataclasses.MISSING, f"{name}.{spec.name} has no default"
    metrics = cls.metrics(cls.option_defaults())
    assert metrics and metrics[0] == "acc" and len(set(metrics)) == len(metrics)


@pytest.mark.parametrize("name", list_estimators())
def test_estimator_rejects_an_unknown_option(name):
    with pytest.raises(NasError) as caught:
        get_estimator(name).parse_options({"no_such_option": 1})
    text = str(caught.value)
    assert "\n" not in text and f"estimator {name!r}" in text and "no_such_option" in text


@pytest.mark.parametrize("name", list_estimators())
def test_estimator_rejects_a_bad_option_value(name):
    cls = get_estimator(name)
    for spec in dataclasses.fields(cls.Options):
        with pytest.raises(NasError) as caught:
            cls.parse_options({spec.name: BAD[spec.metadata["kind"]]})
        text = str(caught.value)
        assert "\n" not in text and f"estimator {name!r}" in text, text
        if name != "table" or spec.name == "table":  # a table's CSV is required first
            assert spec.name in text, text


@pytest.mark.parametrize("name", list_estimators())
def test_estimator_returns_the_metrics_it_declares(name, tiny, digits, tmp_path):
    cls = get_estimator(name)
    given = dict(TINY_OPTIONS[name])
    space = tiny.name
    if name == "table":
        space = "nb201"
        refs = list(get_space(space).reference_archs().values())[:3]
        csv = tmp_path / "table.csv"
        csv.write_text("arch,acc\n" + "".join(f"{a.key},{50 + i}\n" for i, a in enumerate(refs)))
        given["table"] = str(csv)
    if name == "supernet":
        given["cache_dir"] = str(tmp_path)
    options = cls.parse_options(given).as_dict()
    config = {"space": space, "estimator": name, "options": options, "seed": 0, "threads": 1}
    shared = {"data": digits} if cls.needs_data else {}
    cls.prepare(config, shared)
    estimator = cls.from_config(config, shared)
    arch = get_space(space).reference_archs()[next(iter(get_space(space).reference_archs()))] \
        if name == "table" else get_space(space).min_arch()
    metrics = estimator(arch)
    declared = cls.metrics(options)
    assert set(declared) <= set(metrics), (declared, sorted(metrics))
    assert metrics[ESTIMATOR_KEY].split(":")[0] == name
    assert all(isinstance(metrics[m], float) for m in declared)
