"""`nas compress` (N2N): the reward, and tiny runs end to end on scikit-learn's digits (a tiny
inverted-residual teacher trained with `nas train`'s code): removal students, then narrowed
students of the best removal, all starting from the teacher's weights and trained by
distillation; the run folder, resume, and the CLI's one-line errors."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from nas.cli import main
from nas.morph import CompressJob, CompressSettings, MorphError
from nas.morph.n2n import n2n_reward
from search_spaces import load_space_file, register_space

SPACE = """name: compress-tiny
base: mobile
widths: [8, 12, 16]
strides: [2, 2, 2]
acts: [relu, hswish, hswish]
se: [false, false, true]
depths: [[1, 2, 3], [1, 2, 3], [1, 2, 3]]
kernels: [3, 5]
expands: [3, 4, 6]
resolutions: [16]
stem: 8
first: 8
head: 16
mix: 16
classes: 10
"""
TEACHER = "r16-k3e6.k3e6.k3e6-k5e6.k3e6.k3e6-k3e6.k3e6.k3e6"


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    from estimators.data import load_data
    from estimators.standalone import TRAIN_DEFAULTS, train_to_checkpoint

    folder = tmp_path_factory.mktemp("teacher")
    path = folder / "compress-tiny.yaml"
    path.write_text(SPACE)
    space = load_space_file(path)
    register_space(space)
    data = load_data("digits")
    out = folder / "teacher.pt"
    recipe = replace(TRAIN_DEFAULTS, epochs=2, train_images=512)
    train_to_checkpoint(out, data, space.parse(TEACHER), recipe=recipe, seed=0)
    return out


def settings(teacher, **changes) -> CompressSettings:
    base = {"teacher": str(teacher), "episodes": 2, "remove_episodes": 1, "children": 2,
            "student_epochs": 1.0, "train_images": 256, "data": "digits", "workers": 0}
    return CompressSettings(**{**base, **changes})


def test_the_reward_is_n2ns():
    assert n2n_reward(90.0, 90.0, 100.0, 100.0) == 0.0  # no compression earns nothing
    assert n2n_reward(90.0, 90.0, 0.0, 100.0) == pytest.approx(1.0)
    assert n2n_reward(45.0, 90.0, 50.0, 100.0) == pytest.approx(0.5 * 0.5 * 1.5)
    rewards = [n2n_reward(90.0, 90.0, c, 100.0) for c in (90, 50, 20, 10)]
    assert rewards == sorted(rewards)  # more compression, more reward at equal accuracy


def test_removal_then_narrowing_students_learn_from_the_teacher(teacher, tmp_path):
    from estimators.checkpoints import load_model

    run = tmp_path / "run"
    result = CompressJob(settings(teacher), run, log=lambda _: None).run()
    rows = json.loads((run / "checkpoint.json").read_text())["trials"]
    assert len(rows) == 4 and result["teacher"]["key"].endswith(TEACHER)
    teacher_params = result["teacher"]["params"]
    for row in rows:
        assert row["params"] < teacher_params and row["transforms"]
        kinds = {t.split()[0] for t in row["transforms"].split("; ")}
        assert kinds == {"remove"} if row["batch"] == 0 else "narrow" in kinds
        expected = n2n_reward(row["acc"], result["teacher"]["acc"], row["params"],
                              teacher_params)
        assert row["reward"] == pytest.approx(expected)
        student, info = load_model(run / "children" / f"{row['trial']}.pt")
        assert info["distill"]["teacher"] == str(teacher)
        # costs are the trained network's (10 classes), not the space's 1000-class head; like
        # every cost of the engine they count the space's 3 input channels (digits have 1:
        # the stem's 3x3x8 conv has 144 weights more)
        assert row["params"] - sum(p.numel() for p in student.parameters()) == 3 * 3 * 8 * 2
    best_removal = max(rows[:2], key=lambda r: r["reward"])
    if best_removal["reward"] > 0:  # the second policy narrows the best removal student
        assert all(r["transforms"].startswith(best_removal["transforms"]) for r in rows[2:])
    for name in ("trials.csv", "pareto.csv", "pareto.md", "anchors.csv", "summary.json"):
        assert (run / name).is_file()
    assert main(["export", str(run), "--out", str(tmp_path / "student.pt"), "--quiet"]) == 0


def test_a_student_starts_from_the_teachers_weights(teacher, tmp_path):
    from estimators.checkpoints import load_model
    from nas.morph.children import make_child
    from search_spaces.transforms import Transform

    out = tmp_path / "student.pt"
    arch = make_child(teacher, [Transform("remove", 2, 3), Transform("remove", 1, 2)], out,
                      noise=0.0, seed=0, record={})
    teacher_model, _ = load_model(teacher)
    student, _ = load_model(out)
    assert arch.key.endswith("r16-k3e6.k3e6-k5e6.k3e6-k3e6.k3e6.k3e6")
    kept = dict(student.named_parameters())
    for name, param in teacher_model.named_parameters():
        if name in kept and kept[name].shape == param.shape and "stage3" in str(name):
            assert torch.equal(kept[name], param)
    assert sum(p.numel() for p in student.parameters()) < \
        sum(p.numel() for p in teacher_model.parameters())


def test_resume_and_one_line_errors(teacher, tmp_path, capsys):
    run = tmp_path / "cli"
    base = ["compress", "--teacher", str(teacher), "--episodes", "1", "--remove-episodes", "1",
            "--children", "1", "--train-images", "128", "--data", "digits", "--workers", "0"]
    assert main([*base, "--out", str(run), "--quiet"]) == 0
    assert main(["compress", "--resume", str(run), "--episodes", "2", "--quiet"]) == 0
    rows = json.loads((run / "checkpoint.json").read_text())["trials"]
    assert [r["batch"] for r in rows] == [0, 1]
    capsys.readouterr()
    for bad, words in ((["--target", "energy"], "target"),
                       (["--remove-episodes", "3"], "remove_episodes"),
                       (["--teacher", str(tmp_path / "none.pt")], "does not exist"),
                       (["--target", "latency_ms"], "--device")):
        code = main([*base, "--out", str(tmp_path / "bad"), *bad])
        err = capsys.readouterr().err
        assert code == 2 and words in err and err.count("\n") == 1, err
    with pytest.raises(MorphError, match="other settings"):
        CompressJob(settings(teacher, episodes=2, children=1, train_images=128,
                             student_epochs=2.0), run, log=lambda _: None).run()


def test_a_teacher_exported_without_accuracy_is_scored_first(teacher, tmp_path):
    from estimators.checkpoints import read_model_file

    payload = read_model_file(teacher)
    exported = tmp_path / "exported.pt"
    torch.save({"format": 1, "key": payload["key"], "space": payload["space"]["name"],
                "num_classes": payload["num_classes"], "in_channels": payload["in_channels"],
                "resolution": payload["resolution"], "state_dict": payload["state_dict"]},
               exported)
    result = CompressJob(settings(exported, episodes=1, children=1), tmp_path / "run",
                         log=lambda _: None).run()
    assert result["teacher"]["acc"] == pytest.approx(payload["val_acc"], abs=1e-6)
    assert result["best"]["reward"] == pytest.approx(n2n_reward(
        result["best"]["acc"], payload["val_acc"], result["best"]["params"],
        result["teacher"]["params"]), abs=1e-6)
