"""Few-shot devices for any architecture (`estimators.latency.fewshot_device`) and the CLI."""
from __future__ import annotations

import json
from io import StringIO

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from estimators.latency.devices import open_predictor
from estimators.latency.errors import LatencyError
from estimators.latency.fewshot_device import (
    FewShotModel,
    add_reference,
    fit_fewshot_device,
    load_references,
    one_hot,
    reference_models,
    shipped_csv,
)
from nas.cli import main
from search_spaces import get_space


@pytest.fixture(scope="module")
def nb201():
    return get_space("nb201")


@pytest.fixture(scope="module")
def shipped(nb201):
    return pd.read_csv(StringIO(shipped_csv("nb201")))


def test_shipped_reference_sets_load(tmp_path):
    expected = {"nb201": "1080ti_256", "fbnet": "1080ti_64"}
    for name, gpu in expected.items():
        refs = load_references(get_space(name), tmp_path)
        assert len(refs.devices) == 9 and gpu in refs.devices
        assert set(refs.origin.values()) == {"shipped"} and len(refs.population) == 300
        assert all(np.all(y > 0) for _, y in refs.devices.values())
    assert shipped_csv("mobile") is None
    with pytest.raises(LatencyError, match="ships none for it"):
        load_references(get_space("mobile"), tmp_path)


def _synthetic(space, archs, seed=0):
    """A new device mixing two shipped-like cost profiles plus a device-specific op cost."""
    x = one_hot(space, archs)
    rng = np.random.default_rng(seed)
    return np.exp(0.5 + x @ rng.uniform(0.0, 0.3, x.shape[1]))


def test_fewshot_fit_on_a_synthetic_device_collapses_to_option_weights(nb201, tmp_path):
    archs = [nb201.sample(np.random.default_rng(s)) for s in range(300)]
    y = _synthetic(nb201, archs)
    refs = load_references(nb201, tmp_path)
    # references: the synthetic device at three scales plus noise, on the shipped archs
    refs.devices = {f"r{i}": (refs.population,
                              _synthetic(nb201, refs.population) ** (1 + 0.2 * i))
                    for i in range(3)}
    models = reference_models(nb201, refs)
    model = fit_fewshot_device(nb201, archs[:10], y[:10], models)
    pred = np.array([model.latency_ms(a) for a in archs[10:]])
    assert spearmanr(pred, y[10:])[0] > 0.97
    assert np.median(np.abs(pred / y[10:] - 1)) < 0.1
    again = FewShotModel.from_dict(json.loads(json.dumps(model.as_dict())))
    assert again.latency_ms(archs[3]) == pytest.approx(model.latency_ms(archs[3]))
    with pytest.raises(LatencyError, match="at least 3"):
        fit_fewshot_device(nb201, archs[:2], y[:2], models)


def _held_out_csv(shipped, path, device="pixel3", rows=60):
    frame = shipped[["arch", f"latency_ms_{device}"]].iloc[:rows]
    frame.to_csv(path, index=False)
    return frame


def test_cli_fewshot_round_trip_and_predict(shipped, tmp_path, capsys):
    csv = tmp_path / "m.csv"
    frame = _held_out_csv(shipped, csv, "1080ti_32")
    cache = str(tmp_path / "cache")
    assert main(["latency", "fit", "--space", "nb201", "--measurements", str(csv), "--column",
                 "latency_ms_1080ti_32", "--train", "10", "--name", "mygpu", "--cache-dir",
                 cache, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "fewshot" and out["train_rows"] == 10 and out["test_rows"] == 50
    assert out["spearman"] > 0.8 and out["reference"] is None
    arch = frame["arch"][0]
    assert main(["latency", "predict", "--space", "nb201", "--arch", arch, "--device", "mygpu",
                 "--cache-dir", cache, "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)
    assert pred["predictor"]["kind"] == "fewshot"
    assert pred["latency_ms"] == pytest.approx(frame["latency_ms_1080ti_32"][0], rel=0.3)
    predictor = open_predictor(get_space("nb201"), "mygpu", cache_dir=cache)
    assert predictor.latency_ms(get_space("nb201").parse(arch)) == pred["latency_ms"]
    assert main(["latency", "devices", "--cache-dir", cache]) == 0
    assert "nb201 (few-shot)" in capsys.readouterr().out


def test_save_as_reference_is_used_by_later_fits(shipped, tmp_path, capsys):
    csv = tmp_path / "m.csv"
    _held_out_csv(shipped, csv, "pixel3", 40)
    cache = str(tmp_path / "cache")
    assert main(["latency", "fit", "--space", "nb201", "--measurements", str(csv), "--column",
                 "latency_ms_pixel3", "--train", "10", "--name", "myphone",
                 "--save-as-reference", "--cache-dir", cache, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["reference"].endswith("nb201.csv")
    refs = load_references(get_space("nb201"), cache)
    assert refs.origin["myphone"] == "user" and len(refs.devices["myphone"][0]) == 40
    assert main(["latency", "fit", "--space", "nb201", "--measurements", str(csv), "--column",
                 "latency_ms_pixel3", "--train", "10", "--name", "other", "--cache-dir", cache,
                 "--json"]) == 0
    assert "myphone" in json.loads(capsys.readouterr().out)["references"]
    # refitting the reference device itself leaves its own rows out
    assert main(["latency", "fit", "--space", "nb201", "--measurements", str(csv), "--column",
                 "latency_ms_pixel3", "--train", "10", "--name", "myphone", "--cache-dir", cache,
                 "--json"]) == 0
    assert "myphone" not in json.loads(capsys.readouterr().out)["references"]


def test_fewshot_bad_inputs_are_one_line(shipped, tmp_path, capsys):
    csv = tmp_path / "m.csv"
    _held_out_csv(shipped, csv, "pixel3", 12)
    base = ["latency", "fit", "--measurements", str(csv), "--column", "latency_ms_pixel3",
            "--cache-dir", str(tmp_path)]
    cases = [(["--space", "nb201", "--train", "2", "--method", "fewshot"], "between 3 and 12"),
             (["--space", "nb201", "--train", "13", "--method", "fewshot"], "between 3 and 12"),
             (["--space", "mobile", "--train", "5", "--method", "fewshot"], "row 2"),
             (["--space", "nb201", "--train", "5", "--save-as-reference", "--name", "pixel3"],
              "shipped reference device")]
    for extra, message in cases:
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1
    mobile = tmp_path / "mobile.csv"
    key = get_space("mobile").sample(np.random.default_rng(0)).key
    pd.DataFrame({"arch": [key] * 5, "lat": [1.0] * 5}).to_csv(mobile, index=False)
    assert main(["latency", "fit", "--space", "mobile", "--measurements", str(mobile),
                 "--column", "lat", "--train", "4", "--method", "fewshot", "--cache-dir",
                 str(tmp_path)]) == 2
    assert "ships none" in capsys.readouterr().err


def test_a_space_with_inactive_genes_uses_its_users_references(tmp_path):
    """`mobile` ships no references and its deeper layers' genes may be inactive: a user's
    reference device and a few-shot fit on top of it both handle them."""
    space = get_space("mobile")
    archs = [space.sample(np.random.default_rng(s)) for s in range(30)]
    assert any(value is None for arch in archs for _, value in arch.genes)
    y = _synthetic(space, archs)
    add_reference(space, "phone_a", archs[:20], y[:20], tmp_path)
    models = reference_models(space, load_references(space, tmp_path))
    model = fit_fewshot_device(space, archs[20:], y[20:], models)
    assert np.all(np.isfinite([model.latency_ms(a) for a in archs]))
