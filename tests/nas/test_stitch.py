"""`nas stitch` (SN-Net): the cut rule, the stitching layers and their least-squares fit, the
stitched network, and tiny runs end to end on scikit-learn's digits with anchors of a tiny
`resnet` space (trained at 32 px, so the cuts see different channels and sizes) and of a tiny
`vit` space (patches 4 and 2: different widths and token counts)."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from estimators.data import load_data
from estimators.flops import analytical_cost
from estimators.standalone import train_to_checkpoint
from estimators.train import TrainRecipe, evaluate, resize_batch
from nas.cli import main
from nas.stitch import (
    Anchor,
    MapStitch,
    StitchError,
    StitchSampler,
    TokenStitch,
    build_stitched,
    calibrate_bn,
    fit_least_squares,
    init_least_squares,
    load_anchors,
    load_stitched,
    matched_cuts,
    plan_stitches,
    run_stitch,
    score,
)
from nas.stitch.settings import StitchSettings
from search_spaces import BlockSpec, get_space, load_space_file, register_space

RESNET = """name: stitch-resnet
base: resnet
blocks: [basic]
depths: [[1, 2], [1, 2], [1, 2]]
widths: [0.5, 1.0]
stage_channels: [16, 32, 64]
resolutions: [32]
stem: 16
"""
VIT = """name: stitch-vit
base: vit
patches: [2, 4]
widths: [16, 32]
depths: [2, 3]
heads: [2]
mlp_ratios: [2]
resolutions: [8]
classes: 10
"""
RESNAS = """name: stitch-resnas
base: vit-resnas
resolutions: [8]
patch: 2
stem: 8
widths: [[8, 16], [16, 32]]
depths: [[1, 2], [1, 2]]
heads: [[1, 2], [2]]
head_dims: [8, 8]
mlp_widths: [[16], [32]]
classes: 10
"""
DATA_ARGS = {"name": "digits", "dir": None, "val_fraction": 1 / 6}


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", val_fraction=1 / 6, seed=0)


def _train(tmp_path_factory, digits, text: str, keys: dict[str, str], epochs: int,
           lr: float, resolution) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("anchors")
    (folder / "space.yaml").write_text(text)
    space = register_space(load_space_file(folder / "space.yaml"))
    paths = {}
    for name, key in keys.items():
        paths[name] = str(folder / f"{name}.pt")
        train_to_checkpoint(paths[name], digits, space.parse(key), resolution=resolution,
                            recipe=TrainRecipe(epochs=epochs, lr=lr, label_smoothing=0.1),
                            data_args=DATA_ARGS)
    return paths


@pytest.fixture(scope="module")
def resnet_anchors(tmp_path_factory, digits):
    """A small and a large ResNet, 3 epochs at 32 px (about 82 % and 92 % val)."""
    return _train(tmp_path_factory, digits, RESNET,
                  {"large": "basic-d2.2.2-w1.0.1.0.1.0-r32",
                   "small": "basic-d1.1.1-w0.5.0.5.0.5-r32"}, 3, 0.1, "arch")


@pytest.fixture(scope="module")
def vit_anchors(tmp_path_factory, digits):
    """ViTs of 4 and 16 patches, 16 and 32 wide, 2 and 3 blocks (barely trained)."""
    return _train(tmp_path_factory, digits, VIT,
                  {"small": "r8-p4-w16-h2m2.h2m2", "large": "r8-p2-w32-h2m2.h2m2.h2m2"}, 1,
                  0.05, None)


@pytest.fixture(scope="module")
def resnas_anchors(tmp_path_factory, digits):
    """Two-stage ViT-ResNAS networks of 16 then 4 patches (one epoch)."""
    return _train(tmp_path_factory, digits, RESNAS,
                  {"small": "r8-w8.16-h1m16-h2m32", "large": "r8-w16.32-h2m16.h2m16-h2m32.h2m32"},
                  1, 0.05, None)


def _one_error_line(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


# --- the stitching layers ------------------------------------------------------------------------
@pytest.mark.parametrize("in_shape,out_shape", [((4, 8, 8), (6, 4, 4)), ((4, 4, 4), (6, 8, 8)),
                                                ((5, 6, 6), (3, 6, 6))])
def test_least_squares_recovers_an_exact_affine_map_of_feature_maps(in_shape, out_shape):
    torch.manual_seed(0)
    weight, bias = torch.randn(out_shape[0], in_shape[0]), torch.randn(out_shape[0])
    x = torch.randn(16, *in_shape)
    shrink = out_shape[1] <= in_shape[1]
    resized = F.adaptive_avg_pool2d(x, out_shape[1:]) if shrink else \
        F.interpolate(x, size=out_shape[1:], mode="bilinear", align_corners=False)
    y = torch.einsum("oc,nchw->nohw", weight, resized) + bias.view(1, -1, 1, 1)
    layer = MapStitch(in_shape, out_shape)
    assert fit_least_squares(layer, x, y, ridge=0.0) < 1e-5  # plain least squares: exact
    assert torch.allclose(layer.proj.weight.flatten(1), weight, atol=1e-4)
    assert torch.allclose(layer.proj.bias, bias, atol=1e-4)
    assert torch.allclose(layer(x), y, atol=1e-4)  # the map commutes with the resize
    fit_least_squares(layer, x, y)  # the default small ridge barely moves a well-posed fit
    assert torch.allclose(layer.proj.weight.flatten(1), weight, rtol=0.05, atol=0.05)


def test_least_squares_recovers_an_exact_affine_map_of_tokens():
    torch.manual_seed(1)
    weight, bias = torch.randn(12, 8), torch.randn(12)
    x = torch.randn(16, 17, 8)  # a class token and a 4x4 grid
    grid = x[:, 1:].transpose(1, 2).reshape(16, 8, 4, 4)
    resampled = torch.cat([x[:, :1], F.adaptive_avg_pool2d(grid, 2).flatten(2).transpose(1, 2)],
                          dim=1)
    y = resampled @ weight.T + bias
    layer = TokenStitch((17, 8), (5, 12))
    assert fit_least_squares(layer, x, y, ridge=0.0) < 1e-5
    out = layer(x)
    assert out.shape == (16, 5, 12) and torch.allclose(out, y, atol=1e-4)
    assert torch.allclose(out[:, 0], x[:, 0] @ weight.T + bias, atol=1e-4)  # class token kept
    grow = TokenStitch((5, 12), (17, 8))
    assert grow(out).shape == (16, 17, 8) and not grow.resize_first


# --- the cut rule --------------------------------------------------------------------------------
def _fake_vit(depth: int) -> Anchor:
    """An anchor with only what the cut rule reads: an embedding, `depth` blocks, a head."""
    specs = [BlockSpec.of("patch_embed", (1, 8, 8), "patch_embed")]
    specs += [BlockSpec.of("transformer", (5, 8), f"block{j}") for j in range(1, depth + 1)]
    specs.append(BlockSpec.of("token_head", (5, 8), "head"))
    shapes = [(5, 8)] * (depth + 1) + [(10,)]
    return Anchor(None, None, None, {}, specs, [], shapes, 8)


def test_equal_depths_give_sn_nets_paired_stitching_and_unequal_ones_use_every_block():
    assert matched_cuts(_fake_vit(12), _fake_vit(12)) == [(j, j + 1) for j in range(1, 12)]
    cuts = matched_cuts(_fake_vit(6), _fake_vit(12))
    assert {c for c, _ in cuts} == set(range(1, 7))  # every block of the shallow front
    assert {r for _, r in cuts} == set(range(2, 13))  # every block of the deep back after one
    for cut, resume in cuts:  # the same relative depth, rounded
        assert abs(cut / 6 - (resume - 1) / 12) <= 1 / 12 + 1e-9


def test_resnet_cuts_stay_in_the_stage_and_two_way_adds_the_reverse(resnet_anchors):
    anchors = load_anchors([resnet_anchors["large"], resnet_anchors["small"]])
    assert [a.arch["d1"] for a in anchors] == [1, 2]  # by FLOPs
    plan = plan_stitches(anchors)
    assert [s.is_anchor for s in plan[:2]] == [True, True]
    forward = [s for s in plan if (s.front, s.back) == (0, 1)]
    backward = [s for s in plan if (s.front, s.back) == (1, 0)]
    assert forward and backward and len(plan) == 2 + len(forward) + len(backward)
    assert len(plan_stitches(anchors, two_way=False)) == 2 + len(forward)
    for s in forward + backward:
        front, back = anchors[s.front], anchors[s.back]
        stage = front.specs[s.cut].name.split(".")[0]
        before = back.specs[s.resume - 1].name.split(".")[0]  # the back's block it replaces
        assert stage == before, (s, stage, before)
        assert s.cut in front.body and s.resume in back.body


# --- the stitched network ------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["resnet", "vit", "vit-resnas"])
def test_set_stitch_switches_and_every_stitch_runs(family, resnet_anchors, vit_anchors,
                                                    resnas_anchors):
    paths = {"resnet": resnet_anchors, "vit": vit_anchors, "vit-resnas": resnas_anchors}[family]
    anchors = load_anchors(list(paths.values()))
    network = build_stitched(anchors, plan_stitches(anchors)).eval()
    listed = network.stitches()
    assert [s["index"] for s in listed] == list(range(len(network.plan)))
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        outputs = [network.set_stitch(i)(x) for i in range(len(listed))]
        for i, anchor in enumerate(anchors):  # an anchor is a stitch of its family
            own = anchor.model(resize_batch(x, anchor.resolution))
            assert torch.equal(outputs[i], own)
            assert listed[i]["flops"] == analytical_cost(anchor.arch).macs
    assert all(o.shape == (3, 10) for o in outputs)
    assert len(listed) > len(anchors) + 2
    stitched = listed[len(anchors):]
    low, high = listed[0]["flops"], listed[len(anchors) - 1]["flops"]
    assert all(0.5 * low < s["flops"] < 1.5 * high for s in stitched)
    if family == "vit":  # tokens resampled between 5 and 17
        shapes = {tuple(layer.in_shape[:1] + layer.out_shape[:1])
                  for layer in network.layers.values()}
        assert shapes == {(5, 17), (17, 5)}
    with pytest.raises(StitchError, match="stitch must be an index"):
        network.set_stitch(len(listed))


def test_least_squares_beats_random_initialisation_before_any_training(resnet_anchors, digits):
    medians = {}
    for init in ("lstsq", "random"):
        anchors = load_anchors(list(resnet_anchors.values()))
        network = build_stitched(anchors, plan_stitches(anchors), seed=0)
        if init == "lstsq":
            residuals = init_least_squares(network, anchors, digits, 256)
            assert all(0 <= r < 1 for r in residuals.values())
        calibrate_bn(network, digits, 300)
        accs = sorted(r["acc"] for r in score(network, digits)[len(anchors):])
        medians[init] = accs[len(accs) // 2]
    # measured: 74 % against 12 % (random layers give about chance)
    assert medians["lstsq"] > medians["random"] + 30, medians


def test_flops_sampling_covers_the_flops_range_evenly():
    flops = [1.0, 1.1, 1.2, 1.3, 10.0]
    assert StitchSampler(flops, "uniform").shares(5) == pytest.approx([0.2] * 5)
    sampler = StitchSampler(flops, "flops", buckets=2, seed=3)
    assert sampler.shares(5) == pytest.approx([0.125] * 4 + [0.5])
    draws = [sampler() for _ in range(4000)]
    assert abs(draws.count(4) / 4000 - 0.5) < 0.05


# --- runs end to end -----------------------------------------------------------------------------
def test_a_run_writes_a_report_readable_run_folder_and_the_family(resnet_anchors, tmp_path,
                                                                  capsys, digits):
    out = tmp_path / "run"
    argv = ["stitch", "--anchors", resnet_anchors["small"], resnet_anchors["large"], "--out",
            str(out), "--epochs", "1", "--train-images", "256", "--bn-images", "200",
            "--data", "digits", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    for name in ("config.json", "checkpoint.json", "trials.csv", "anchors.csv", "pareto.csv",
                 "pareto.md", "pareto.png", "summary.json", "stitched.pt"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trials"] == result["stitches"] and summary["front_size"] >= 1
    assert 0 <= summary["above_line_share"] <= 1 and summary["anchors_hypervolume"] > 0
    rows = json.loads((out / "checkpoint.json").read_text())["trials"]
    assert [r["key"] for r in rows[:2]] == ["A0", "A1"]
    assert all(0 <= r["acc"] <= 100 and r["flops"] > 0 for r in rows)
    assert main(["report", str(out)]) == 0
    assert "on the front" in capsys.readouterr().out
    rendered = json.loads((out / "summary.json").read_text())  # re-rendered, figures kept
    assert rendered["above_line_share"] == summary["above_line_share"]
    assert "nas stitch" in _one_error_line(capsys, ["export", str(out), "--out",
                                                    str(tmp_path / "m.pt")])
    torch.load(out / "stitched.pt", weights_only=True)
    family = load_stitched(out / "stitched.pt")
    assert len(family.plan) == len(rows)
    pick = len(rows) - 1  # a stitch keeps its own BatchNorm statistics
    assert evaluate(family.set_stitch(pick), digits) == pytest.approx(rows[pick]["acc"])
    _one_error_line(capsys, argv)  # the folder holds a run now


def test_vit_run_with_latency_measured_here(vit_anchors, tmp_path, capsys):
    out = tmp_path / "vit"
    assert main(["stitch", "--anchors", *vit_anchors.values(), "--out", str(out),
                 "--epochs", "0.5", "--optimizer", "adamw", "--device", "cpu", "--data",
                 "digits", "--quiet"]) == 0
    rows = json.loads((out / "checkpoint.json").read_text())["trials"]
    assert all(r["latency_ms"] > 0 and not math.isnan(r["acc_init"]) for r in rows)
    settings = json.loads((out / "config.json").read_text())["settings"]
    assert (settings["optimizer"], settings["lr"]) == ("adamw", 2e-4)  # AdamW's fine-tuning lr
    assert "run folder" in capsys.readouterr().out


def test_bad_input_is_one_line_exit_2(resnet_anchors, vit_anchors, tmp_path, capsys):
    small, large = resnet_anchors["small"], resnet_anchors["large"]
    out = ["--out", str(tmp_path / "bad"), "--data", "digits"]
    assert "one space family" in _one_error_line(
        capsys, ["stitch", "--anchors", small, vit_anchors["small"], *out])
    assert "2 to 3 anchors" in _one_error_line(capsys, ["stitch", "--anchors", small, *out])
    assert "does not exist" in _one_error_line(
        capsys, ["stitch", "--anchors", small, str(tmp_path / "missing.pt"), *out])
    assert "given twice" in _one_error_line(capsys, ["stitch", "--anchors", small, small, *out])
    assert "sampling" in _one_error_line(
        capsys, ["stitch", "--anchors", small, large, "--sampling", "often", *out])
    assert "device" in _one_error_line(
        capsys, ["stitch", "--anchors", small, large, "--device", "tpu", *out])
    assert "optimizer" in _one_error_line(
        capsys, ["stitch", "--anchors", small, large, "--optimizer", "adam", *out])
    (tmp_path / "text.pt").write_text("not a model")
    _one_error_line(capsys, ["stitch", "--anchors", small, str(tmp_path / "text.pt"), *out])
    assert not (tmp_path / "bad" / "config.json").exists()
    with pytest.raises(StitchError, match="does not exist"):
        load_stitched(tmp_path / "none.pt")
    assert get_space("stitch-resnet").name == "stitch-resnet"


def test_a_killed_run_resumes_at_its_last_epoch_and_ends_as_an_uninterrupted_one(
        resnet_anchors, tmp_path, capsys):
    settings = StitchSettings(anchors=(resnet_anchors["small"], resnet_anchors["large"]),
                              epochs=3, train_images=256, bn_images=200, data="digits")
    whole = run_stitch(settings, tmp_path / "whole", log=lambda _: None)

    def killed_after_epoch_two(line: str) -> None:
        if line.startswith("joint training epoch 2"):
            raise KeyboardInterrupt

    killed = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        run_stitch(settings, killed, log=killed_after_epoch_two)
    assert (killed / "joint.pt").is_file() and not (killed / "checkpoint.json").exists()
    lines: list[str] = []
    resumed = run_stitch(settings, killed, log=lines.append, resume=True)
    assert "resumed after 2 epochs of joint training" in lines
    assert sum(line.startswith("joint training epoch") for line in lines) == 1
    assert not any(line.startswith("least squares") for line in lines)  # not fitted again
    rows = json.loads((tmp_path / "whole" / "checkpoint.json").read_text())["trials"]
    again = json.loads((killed / "checkpoint.json").read_text())["trials"]
    assert [(r["key"], r["acc"], r["test_acc"], r["acc_init"]) for r in again] == \
        [(r["key"], r["acc"], r["test_acc"], r["acc_init"]) for r in rows]
    assert resumed["best"]["acc"] == whole["best"]["acc"]
    assert not (killed / "joint.pt").exists()  # stitched.pt holds the family
    capsys.readouterr()
    assert main(["stitch", "--resume", str(killed), "--threads", "2"]) == 0
    assert "already complete: nothing to resume" in capsys.readouterr().err
    assert "only threads, device may change" in _one_error_line(
        capsys, ["stitch", "--resume", str(killed), "--epochs", "4"])
    assert "drop --anchors" in _one_error_line(
        capsys, ["stitch", "--resume", str(killed), "--anchors", *resnet_anchors.values()])
    assert "no `nas stitch` run" in _one_error_line(
        capsys, ["stitch", "--resume", str(tmp_path)])
    assert "--anchors" in _one_error_line(capsys, ["stitch", "--out", str(tmp_path / "x")])


def test_a_damaged_progress_file_is_one_clear_error(tmp_path):
    from nas.stitch.progress import PROGRESS_FILE, load_progress

    assert load_progress(tmp_path) is None  # killed before the layers were fitted
    (tmp_path / PROGRESS_FILE).write_text("not a progress file")
    with pytest.raises(StitchError, match="joint.pt is damaged"):
        load_progress(tmp_path)
