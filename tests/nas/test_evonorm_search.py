"""`nas evolve-layer` (the EvoNorm layer search): the plug, the rejection protocols, the Pareto
parent choice and aging, a tiny run end to end on scikit-learn's digits (8-channel networks, 16
px) that writes the run folder and resumes to the rows of a straight run, and one-line errors."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from nas.cli import main
from nas.evonorm import (
    LayerSearchError,
    LayerSearchSettings,
    evolution,
    plug,
    protocols,
    run_layer_search,
)
from nas.evonorm.fitness import evaluate_layer, quality_recipe
from nas.evonorm.plug import eval_arch, plugged_network, register_eval_spaces
from search_spaces import NasError, get_space
from search_spaces.layer_graph import REFERENCES, LayerGraphModule
from search_spaces.ops.norm import ChannelAffine, EvoNormS0

RESNET = """name: evotest_resnet
base: resnet
blocks: [basic]
depths: [[1], [1]]
widths: [1.0]
stage_channels: [8, 8]
resolutions: [32]
stem: 8
norms: [bn_relu, evonorm_s0]
"""
MOBILE = """name: evotest_mobile
base: mobilenetv2
widths: [8, 8]
strides: [1, 2]
acts: [relu6, relu6]
se: [false, false]
depths: [[1], [1]]
kernels: [3]
expands: [2]
resolutions: [32]
width_mults: [1.0]
stem: 8
first: 0
head: 16
mix: 0
dropout: 0.0
classes: 10
norms: [bn_relu, evonorm_s0]
"""
ARCHS = ("evotest_resnet:basic-d1.1-w1.0.1.0-r32-evonorm_s0",
         "evotest_mobile:r32-evonorm_s0-k3e2-k3e2")
EXP_EXP = "evonorm:n1=exp(x);n2=exp(n1)"  # overflows
DIV_ZERO = "evonorm:n1=neg(x);n2=add(n1,x);n3=div(x,n2)"  # x / (x - x): 1/eps = 1e5 per layer
SILENT = "evonorm:n1=mul(x,zero)"  # every activation 0: learns nothing


@pytest.fixture(scope="module")
def space_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("spaces")
    paths = []
    for name, text in (("evotest_resnet", RESNET), ("evotest_mobile", MOBILE)):
        path = folder / f"{name}.yaml"
        path.write_text(text)
        paths.append(str(path))
    register_eval_spaces(paths)
    return tuple(paths)


def tiny(space_files, **changes) -> LayerSearchSettings:
    values = dict(archs=ARCHS, space_files=space_files, data="digits", resolution=16,
                  population=3, candidates=6, train_images=400, batch_size=32, lr=0.1,
                  eval_images=100, recal_images=64, quality_steps=8, quality_batch=32,
                  quality_images=100, quality_share=0.0, stability_batch=8, stability_steps=2,
                  finalists=2, initial="random", workers=0)
    return LayerSearchSettings(**{**values, **changes})


@pytest.fixture(scope="module")
def data():
    from estimators.data import load_data

    return load_data("digits", resolution=16)


# --- the plug ------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ARCHS)
def test_plug_replaces_every_evonorm_s0_and_leaves_the_rest(space_files, key):
    arch = eval_arch(key)
    torch.manual_seed(0)
    native = get_space(arch.space).build(arch, num_classes=10, in_channels=1)
    s0 = [m for m in native.modules() if isinstance(m, EvoNormS0)]
    affine = sum(isinstance(m, ChannelAffine) for m in native.modules())
    assert s0 and affine
    model = plugged_network(key, REFERENCES["bn_relu"], 10, 1, seed=0)
    layers = [m for m in model.modules() if isinstance(m, LayerGraphModule)]
    assert not any(isinstance(m, EvoNormS0) for m in model.modules())
    assert [m.channels for m in layers] == [int(m.weight.shape[0]) for m in s0]
    assert [m.groups for m in layers] == [m.groups for m in s0]
    assert sum(isinstance(m, ChannelAffine) for m in model.modules()) == affine
    plugged, own = model.state_dict(), native.state_dict()
    kept = [k for k in own if not any(k.startswith(p) for p in _s0_names(native))]
    assert kept and all(torch.equal(plugged[k], own[k]) for k in kept)  # same conv weights
    # EvoNorm-S0 plugged in computes exactly what the native network computes
    same = plugged_network(key, REFERENCES["evonorm_s0"], 10, 1, seed=0)
    x = torch.randn(4, 1, 16, 16)
    assert torch.allclose(same(x), native(x), atol=1e-5)
    assert plug(native, REFERENCES["gn_relu"]) == len(s0)


def _s0_names(model) -> list[str]:
    return [name + "." for name, m in model.named_modules() if isinstance(m, EvoNormS0)]


def test_evaluation_architectures_must_use_evonorm_s0(space_files):
    with pytest.raises(NasError, match="must be built with norm evonorm_s0"):
        eval_arch(ARCHS[0].replace("evonorm_s0", "bn_relu"))
    with pytest.raises(NasError, match="no norm gene"):
        eval_arch("resnet:basic-d1.1.1.1-w0.5.0.5.0.5.0.5-r128")


# --- the protocols -------------------------------------------------------------------------------
def test_stability_rejects_overflow_and_division_by_zero_and_passes_bn_relu(space_files, data):
    options = dict(steps=2, eps=0.5, batch=8, bound=100.0, seed=0)
    bn = protocols.stability(REFERENCES["bn_relu"], ARCHS[0], data, baseline=None, **options)
    assert bn.passed and math.isfinite(bn.value) and bn.value > 0 and bn.seconds > 0
    assert protocols.stability(REFERENCES["bn_relu"], ARCHS[0], data, baseline=bn.value,
                               **options).passed
    for key in (EXP_EXP, DIV_ZERO):
        verdict = protocols.stability(key, ARCHS[0], data, baseline=bn.value, **options)
        assert not verdict.passed and verdict.reason.startswith("stability: ")
        assert not verdict.value <= 100 * bn.value  # NaN, inf or far above the bound


def test_quality_rejects_a_layer_that_learns_nothing_and_passes_bn_relu(space_files, data):
    s = tiny(space_files, quality_steps=20, quality_share=0.5)
    options = dict(recipe=quality_recipe(s), recal_images=64, share=0.5, seed=0)
    bn = protocols.quality(REFERENCES["bn_relu"], ARCHS[0], data, baseline=None, **options)
    assert bn.passed and bn.value > 20
    silent = protocols.quality(SILENT, ARCHS[0], data, baseline=bn.value, **options)
    assert not silent.passed and silent.value < protocols.quality_threshold(bn.value, 0.5, 10)
    assert silent.reason.startswith("quality: ")
    broken = protocols.quality(EXP_EXP, ARCHS[0], data, baseline=bn.value, **options)
    assert not broken.passed and math.isnan(broken.value)


def test_a_rejected_layer_is_never_trained_fully(space_files, data):
    s = tiny(space_files)
    out = evaluate_layer(EXP_EXP, s.to_json(), {"stability": 1.0, "quality": 50.0}, data)
    assert out["rejected_by"] == "stability" and "quality_seconds" not in out
    assert "fitness_seconds" not in out and all(math.isnan(out[c]) for c in
                                                ("acc_evotest_resnet", "acc_evotest_mobile"))


# --- the evolution -------------------------------------------------------------------------------
def test_the_parent_is_a_pareto_optimal_member_of_the_tournament():
    cols = ["acc_a", "acc_b"]
    points = [(80, 60), (70, 70), (60, 80), (65, 65), (50, 50), (70, 70), (79, 59)]
    members = [{"trial": i, "acc_a": a, "acc_b": b} for i, (a, b) in enumerate(points)]
    front = {m["trial"] for m in evolution.pareto_members(members, cols)}
    assert front == {0, 1, 2, 5}  # equal points are both kept
    picked = {evolution.choose_parent(members, cols, len(members), np.random.default_rng(i))
              ["trial"] for i in range(200)}
    assert picked == front  # the whole population as the tournament: every front member
    for i in range(300):  # tournaments of 2: never a member the other one dominates
        rng = np.random.default_rng(i)
        drawn = sorted(int(j) for j in np.random.default_rng(i).choice(7, 2, replace=False))
        parent = evolution.choose_parent(members, cols, 2, rng)
        other = members[drawn[0] if parent["trial"] == drawn[1] else drawn[1]]
        assert parent["trial"] in drawn
        assert not (other["acc_a"] >= parent["acc_a"] and other["acc_b"] >= parent["acc_b"]
                    and (other["acc_a"], other["acc_b"]) != (parent["acc_a"], parent["acc_b"]))


def test_aging_removes_the_oldest():
    assert evolution.age([3, 5, 7], 9, 3) == [5, 7, 9]
    assert evolution.age([3], 9, 3) == [3, 9]


# --- a tiny run ----------------------------------------------------------------------------------
def _timeless(row):
    return {k: v for k, v in row.items() if not k.endswith("_seconds")}


def _anchors(run_dir):
    return [_timeless(r) for r in json.loads((run_dir / "checkpoint.json").read_text())["anchors"]]


def _rows(run_dir):
    return [_timeless(r) for r in json.loads((run_dir / "checkpoint.json").read_text())["trials"]]


# random layers rarely pass the quality protocol after 8 steps: stability only, so that the
# population fills and tournaments start within 8 candidates
RUN = {"population": 2, "candidates": 8, "protocols": ("stability",)}


def test_a_tiny_run_writes_its_folder_and_a_resumed_run_gives_the_same_rows(space_files,
                                                                           tmp_path, capsys):
    straight = tmp_path / "straight"
    result = run_layer_search(tiny(space_files, **RUN), straight, log=lambda text: None)
    for name in ("config.json", "checkpoint.json", "trials.csv", "anchors.csv", "pareto.csv",
                 "pareto.md", "pareto.png", "summary.json", "fitness.png"):
        assert (straight / name).is_file(), name
    rows = _rows(straight)
    assert [r["trial"] for r in rows] == list(range(8))
    assert {"acc_evotest_resnet", "acc_evotest_mobile", "stability", "quality_acc", "parent",
            "error"} <= set(rows[0])
    assert any(r["parent"] >= 0 for r in rows)  # mutations of tournament parents happened
    assert any(r["error"] for r in rows)  # and rejections
    anchors = result["anchors"]
    assert [a["name"] for a in anchors] == ["bn_relu", "gn_relu", "evonorm_b0", "evonorm_s0"]
    summary = json.loads((straight / "summary.json").read_text())
    shares = summary["protocols"]["rejected_share"]
    assert set(shares) == {"stability", "quality", "fitness"}
    assert summary["protocols"]["candidates"] == 8 and "saved_seconds" in summary["protocols"]
    config = json.loads((straight / "config.json").read_text())
    assert config["objectives"] == [["acc_evotest_resnet", "maximize"],
                                    ["acc_evotest_mobile", "maximize"]]
    _finalists_picked_on_other_seeds(result, straight)

    split = tmp_path / "split"  # the command, stopped after 5 candidates, then resumed
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in tiny(space_files, **RUN).to_json().items()
             if k in ("data", "resolution", "population", "train_images", "batch_size", "lr",
                      "eval_images", "recal_images", "quality_steps", "quality_batch",
                      "quality_images", "quality_share", "stability_batch", "stability_steps",
                  "finalists", "initial")]
    flags += ["--protocols", "stability"] + [f"--arch={a}" for a in ARCHS] + \
        [f"--space-file={f}" for f in space_files]
    assert main(["evolve-layer", *flags, "--candidates", "5", "--out", str(split), "--quiet"]) == 0
    assert len(_rows(split)) == 5
    assert main(["evolve-layer", "--resume", str(split), "--candidates", "8", "--quiet"]) == 0
    assert _rows(split) == rows
    capsys.readouterr()
    assert main(["evolve-layer", "--resume", str(split), "--json"]) == 0  # finished: reports
    printed = json.loads(capsys.readouterr().out)
    assert printed["best"]["key"] == result["best"]["key"]
    assert [r["key"] for r in printed["finalists"]] == [r["key"] for r in result["finalists"]]
    assert main(["evolve-layer", "--resume", str(split)]) == 0
    assert "best layer (" in capsys.readouterr().out
    assert _anchors(split) == _anchors(straight)
    assert main(["report", str(split), "--json"]) == 0  # `nas report` reads the run
    _killed_and_resumed(space_files, tmp_path / "killed", rows)
    with pytest.raises(LayerSearchError, match="other settings"):
        run_layer_search(tiny(space_files, **{**RUN, "population": 4}), split,
                         log=lambda text: None)


def _finalists_picked_on_other_seeds(result, run_dir):
    """The two layers of highest mean fitness are retrained from seeds 1 and 2; the best is
    the finalist of highest retrained mean, written to finalists.csv."""
    import pandas as pd

    columns = ["acc_evotest_resnet", "acc_evotest_mobile"]
    passed = [r for r in _rows(run_dir) if evolution.passed(r, columns)]
    top = sorted(passed, key=lambda r: -(r[columns[0]] + r[columns[1]]))[:2]
    table = result["finalists"]
    assert {r["trial"] for r in table} == {r["trial"] for r in top}
    retrained = [r["retrained_mean"] for r in table]
    finite = [v for v in retrained if math.isfinite(v)]
    assert retrained[:len(finite)] == sorted(finite, reverse=True)  # failed ones (NaN) last
    assert result["best"]["trial"] == (table[0]["trial"] if finite else top[0]["trial"])
    scores = json.loads((run_dir / "checkpoint.json").read_text())["strategy"]["finalists"]
    for row in table:
        for column in columns:
            seeds = [scores[row["key"]][f"{column}|{s}"] for s in (1, 2)]
            if None in seeds:  # a training that failed is kept as null, its mean NaN
                assert math.isnan(row[f"{column}_retrained"])
                continue
            assert row[f"{column}_retrained"] == pytest.approx(sum(seeds) / 2, abs=1e-3)
            assert seeds != [row[column]] * 2  # other seeds: other scores
    assert len(pd.read_csv(run_dir / "finalists.csv")) == 2


def test_references_start_by_default_and_older_runs_read_as_random():
    assert LayerSearchSettings().initial == "references"
    older = {k: v for k, v in LayerSearchSettings().to_json().items() if k != "initial"}
    assert LayerSearchSettings.from_json(older).initial == "random"


def test_initial_references_start_the_population(space_files, tmp_path):
    s = tiny(space_files, population=4, candidates=5, initial="references", finalists=0,
             protocols=())
    result = run_layer_search(s, tmp_path / "run", log=lambda text: None)
    rows = _rows(tmp_path / "run")
    assert [r["key"] for r in rows[:4]] == [REFERENCES[n] for n in
                                            ("bn_relu", "gn_relu", "evonorm_b0", "evonorm_s0")]
    assert rows[4]["parent"] in range(4)  # the fifth is a mutation of one of them
    assert result["finalists"] == []


def _killed_and_resumed(space_files, run_dir, rows):
    """A kill right after a candidate's evaluation is saved (before its round is checkpointed):
    the resumed run takes it from batch.json, evaluates it no more, and ends with `rows`."""
    from unittest import mock

    from nas.checkpoint import Checkpoint
    from nas.evonorm import workers

    original, evaluated = Checkpoint.save_batch, []

    def save_then_die(self, *args, **kwargs):
        original(self, *args, **kwargs)
        raise KeyboardInterrupt

    def counting(key, *args, **kwargs):
        evaluated.append(key)
        return workers_evaluate(key, *args, **kwargs)

    workers_evaluate = workers.evaluate_layer
    with mock.patch.object(Checkpoint, "save_batch", save_then_die), \
            pytest.raises(KeyboardInterrupt):
        run_layer_search(tiny(space_files, **RUN), run_dir, log=lambda text: None)
    assert (run_dir / "batch.json").is_file() and len(_rows(run_dir)) == 0
    with mock.patch.object(workers, "evaluate_layer", counting):
        run_layer_search(tiny(space_files, **RUN), run_dir, log=lambda text: None)
    assert rows[0]["key"] not in evaluated and _rows(run_dir) == rows


# --- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize("changes, message", [
    ({"population": 1}, "population must be a whole number >= 2"),
    ({"tournament": 0}, "tournament must be a number in (0, 1]"),
    ({"protocols": ("stability", "speed")}, "protocols must be distinct names"),
    ({"archs": ()}, "archs is empty"),
    ({"quality_share": 1.5}, "quality_share"),
    ({"initial": "best"}, "initial must be one of random, references"),
    ({"finalist_seeds": (0, 1)}, "other than the search's seed 0"),
    ({"finalist_seeds": "12"}, "finalist_seeds must be a list of seeds"),
])
def test_bad_settings_are_one_line_errors(changes, message):
    with pytest.raises(LayerSearchError, match=message.replace("(", r"\(").replace("]", r"\]")):
        LayerSearchSettings(**changes)


@pytest.mark.parametrize("argv, message", [
    (["--population", "0"], "expected a whole number >= 1"),
    (["--tournament", "2"], "tournament must be a number"),
    (["--protocols", "stability,speed"], "protocols must be distinct names"),
    (["--arch", "resnet:basic-d1.1.1.1-w0.5.0.5.0.5.0.5-r128"], "must be built with norm"),
    (["--resume", "/nonexistent/run"], "--resume"),
    (["--finalist-seeds", "1,x"], "not a comma-separated list of seeds"),
    (["--initial", "best"], "initial must be one of"),
])
def test_the_command_refuses_bad_input_in_one_line(argv, message, capsys, tmp_path):
    try:
        status = main(["evolve-layer", "--out", str(tmp_path / "run"), *argv])
    except SystemExit as exc:  # argparse's own checks
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and err.startswith("error: ")
    assert message in err
    assert not (tmp_path / "run" / "config.json").exists()
