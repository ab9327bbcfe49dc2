"""`nas train` end to end on a tiny NAS-Bench-201 cell and scikit-learn's digits: the JSON and
text output, a checkpoint per epoch, Ctrl-C then --resume (the same weights as an
uninterrupted run), --from, --distill, and one `error:` line with exit status 2 for mistakes."""
from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch

from estimators.checkpoints import load_model, read_checkpoint
from nas.cli import main
from search_spaces import Arch

SPACE = "name: cli-train-cell\nbase: nb201\nchannels: 4\ncells: 1\nclasses: 10\nresolution: 8\n"
ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|" \
       "nor_conv_3x3~2|"
SMALL = ("--data", "digits", "--epochs", "2", "--train-images", "192", "--batch-size", "32",
         "--bn-images", "128", "--threads", "1", "--seed", "1")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def space_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("spaces") / "cli-train-cell.yaml"
    path.write_text(SPACE)
    return str(path)


@pytest.fixture(scope="module")
def trained(space_file, tmp_path_factory):
    """(JSON summary, checkpoint path) of one straight two-epoch run."""
    out = tmp_path_factory.mktemp("runs") / "model.pt"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()):
        code = main(["train", "--space", space_file, "--arch", ARCH, *SMALL, "--out", str(out),
                     "--json"])
    assert code == 0
    return json.loads(stdout.getvalue()), out


def test_json_summary_and_the_checkpoint(trained):
    summary, out = trained
    assert summary["key"] == "cli-train-cell:c3+c3.c3+skip.c3.c3"
    assert summary["space"] == "cli-train-cell" and summary["params"] > 0
    assert summary["epochs"] == summary["epochs_done"] == 2 and summary["complete"]
    assert [row["epoch"] for row in summary["history"]] == [1, 2]
    assert 0 <= summary["test_acc"] <= 100 and 0 <= summary["val_acc"] <= 100
    assert summary["checkpoint"] == str(out) and summary["data"]["name"] == "digits"
    assert summary["recipe"]["train"]["epochs"] == 2 and summary["seed"] == 1
    payload = torch.load(out, map_location="cpu", weights_only=True)
    assert payload["complete"] and payload["test_acc"] == summary["test_acc"]
    assert payload["data"]["args"] == {"name": "digits", "dir": None, "val_fraction": 1 / 6}


def test_text_output_names_arch_epochs_accuracy_and_checkpoint(trained, capsys):
    summary, out = trained
    code, text, err = run(capsys, "train", "--out", str(out), "--resume", "--quiet")
    assert code == 0 and err == ""
    assert text.splitlines()[0] == summary["key"]
    assert f"final: val {summary['val_acc']:.2f} %, test {summary['test_acc']:.2f} %" in text
    assert "epoch  train loss  val acc" in text and f"checkpoint: {out}" in text
    assert "already complete" in text


def test_resume_takes_the_runs_thread_count(trained, capsys):
    _, out = trained
    assert torch.load(out, weights_only=True)["threads"] == 1
    code, _, err = run(capsys, "train", "--out", str(out), "--resume", "--threads", "2",
                       "--quiet")
    assert code == 0 and err.startswith("warning: resuming with 2 torch threads; the run "
                                        "started with 1")


def test_ctrl_c_keeps_the_last_epoch_and_resume_matches(trained, space_file, tmp_path, capsys,
                                                        monkeypatch):
    summary, straight = trained
    out = tmp_path / "killed.pt"
    import estimators.standalone as standalone

    evaluate, calls = standalone.evaluate, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # epoch 2's validation: epoch 1 is checkpointed
            raise KeyboardInterrupt
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(standalone, "evaluate", interrupted)
    code, _, err = run(capsys, "train", "--space", space_file, "--arch", ARCH, *SMALL,
                       "--out", str(out), "--quiet")
    assert code == 130 and "keeps epoch 1/2" in err and "--resume" in err
    saved = read_checkpoint(out)
    assert saved["epochs_done"] == 1 and not saved["complete"]
    monkeypatch.setattr(standalone, "evaluate", evaluate)
    code, _, err = run(capsys, "train", "--out", str(out), "--space", space_file, "--arch",
                       ARCH, *SMALL, "--quiet")
    assert code == 2 and "interrupted training" in err and "--resume" in err
    code, text, _ = run(capsys, "train", "--out", str(out), "--resume", "--arch", ARCH,
                        "--seed", "1", "--json")  # options that agree with the run's
    assert code == 0
    resumed = json.loads(text)
    assert resumed["resumed_from"] == 1 and resumed["test_acc"] == summary["test_acc"]
    first = torch.load(straight, weights_only=True)["state_dict"]
    second = torch.load(out, weights_only=True)["state_dict"]
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_from_fine_tunes_a_trained_model(trained, tmp_path, capsys):
    summary, out = trained
    code, text, _ = run(capsys, "train", "--from", str(out), "--data", "digits", "--epochs",
                        "1", "--train-images", "64", "--batch-size", "32", "--threads", "1",
                        "--out", str(tmp_path / "tuned.pt"), "--json")
    assert code == 0
    tuned = json.loads(text)
    assert tuned["key"] == summary["key"] and tuned["init"]["from"] == str(out)
    assert tuned["resolution"] == 8  # the model's own
    model, info = load_model(tmp_path / "tuned.pt")
    assert info["init"]["key"] == summary["key"] and model.arch_key == summary["key"]


def test_from_accepts_a_nas_export_file(trained, space_file, tmp_path, capsys):
    summary, out = trained
    model, info = load_model(out)
    export = {"format": 1, "key": summary["key"], "space": space_file, "num_classes": 10,
              "in_channels": 1, "resolution": 8, "weights": "standalone",
              "state_dict": model.state_dict()}  # as `nas export` writes it
    torch.save(export, tmp_path / "export.pt")
    code, text, _ = run(capsys, "train", "--from", str(tmp_path / "export.pt"), "--data",
                        "digits", "--epochs", "1", "--train-images", "32", "--threads", "1",
                        "--out", str(tmp_path / "tuned.pt"), "--json")
    assert code == 0 and json.loads(text)["key"] == summary["key"]


def test_distill_from_a_teacher(trained, space_file, tmp_path, capsys):
    summary, teacher = trained
    code, text, _ = run(capsys, "train", "--space", space_file, "--arch", ARCH, *SMALL,
                        "--out", str(tmp_path / "student.pt"), "--distill", str(teacher),
                        "--temperature", "2", "--json")
    assert code == 0
    student = json.loads(text)
    assert student["distill"] == {"teacher": str(teacher), "teacher_key": summary["key"],
                                  "weight": 0.9, "temperature": 2.0,
                                  "teacher_test_acc": summary["test_acc"]}
    assert [r["loss"] for r in student["history"]] != [r["loss"] for r in summary["history"]]


def test_adamw_takes_its_own_lr_and_weight_decay_unless_given(space_file, tmp_path, capsys):
    code, text, _ = run(capsys, "train", "--space", space_file, "--arch", ARCH, *SMALL,
                        "--optimizer", "adamw", "--out", str(tmp_path / "a.pt"), "--json")
    assert code == 0
    recipe = json.loads(text)["recipe"]["train"]
    assert (recipe["optimizer"], recipe["lr"], recipe["weight_decay"]) == ("adamw", 1e-3, 0.05)
    code, text, _ = run(capsys, "train", "--space", space_file, "--arch", ARCH, *SMALL,
                        "--optimizer", "adamw", "--lr", "0.003", "--weight-decay", "0",
                        "--out", str(tmp_path / "b.pt"), "--json")
    recipe = json.loads(text)["recipe"]["train"]
    assert code == 0 and (recipe["lr"], recipe["weight_decay"]) == (0.003, 0.0)


def test_clip_norm_is_recorded_and_named_in_the_text(space_file, tmp_path, capsys):
    code, text, _ = run(capsys, "train", "--space", space_file, "--arch", ARCH, *SMALL,
                        "--clip-norm", "2", "--out", str(tmp_path / "c.pt"))
    assert code == 0 and "gradient norm cap 2" in text
    code, text, _ = run(capsys, "train", "--space", space_file, "--arch", ARCH, *SMALL,
                        "--clip-norm", "0.5", "--out", str(tmp_path / "d.pt"), "--json")
    assert code == 0 and json.loads(text)["recipe"]["train"]["clip_norm"] == 0.5


def test_a_checkpoint_written_before_the_optimizer_field_resumes(trained, tmp_path, capsys):
    """Old checkpoints have no `optimizer` in their recipe: they were SGD runs."""
    _, done = trained
    payload = torch.load(done, weights_only=True)
    del payload["recipe"]["train"]["optimizer"]
    payload.update(complete=False, epochs_done=1, history=payload["history"][:1])
    old = tmp_path / "old.pt"
    torch.save(payload, old)
    code, _, err = run(capsys, "train", "--out", str(old), "--resume", "--quiet")
    assert code == 0, err
    code, _, err = run(capsys, "train", "--out", str(old), "--resume", "--optimizer", "adamw")
    assert code == 2 and "--optimizer" in err


@pytest.fixture(scope="module")
def five_class_teacher(trained, tmp_path_factory):
    """A well-formed checkpoint of the same cell built for 5 classes."""
    _, out = trained
    payload = torch.load(out, weights_only=True)
    arch = Arch.decode(payload["key"])
    small = arch.search_space.build(arch, num_classes=5, in_channels=1)
    payload.update(num_classes=5, state_dict=small.state_dict())
    path = tmp_path_factory.mktemp("teachers") / "five.pt"
    torch.save(payload, path)
    return path


def _mistakes(space_file, trained, tmp_path, five_class_teacher):
    _, done = trained
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a checkpoint")
    foreign = tmp_path / "foreign.pt"
    torch.save({"format": 1, "supernet": {}}, foreign)  # a cached supernet's format
    export = tmp_path / "export.pt"
    torch.save({"format": 1, "key": "x", "state_dict": {}}, export)  # a damaged `nas export`
    interrupted = tmp_path / "interrupted.pt"
    payload = torch.load(done, weights_only=True)
    payload.update(complete=False, epochs_done=1)
    torch.save(payload, interrupted)
    new = str(tmp_path / "new.pt")
    base = ("train", "--space", space_file, "--arch", ARCH, *SMALL)
    return {
        "unknown space": ("train", "--space", "nope", "--arch", "x", "--out", new),
        "bad arch": ("train", "--space", space_file, "--arch", "zz", "--out", new),
        "unknown reference": ("train", "--space", space_file, "--ref", "nope", "--out", new),
        "no arch": ("train", "--space", space_file, "--out", new),
        "missing --from": ("train", "--from", str(tmp_path / "missing.pt"), "--out", new),
        "corrupt --from": ("train", "--from", str(garbage), "--out", new),
        "other format": ("train", "--from", str(foreign), "--out", new),
        "damaged export": ("train", "--from", str(export), "--out", new),
        "resume without checkpoint": ("train", "--out", new, "--resume"),
        "resume a corrupt file": ("train", "--out", str(garbage), "--resume"),
        "teacher of 5 classes": (*base, "--out", new, "--distill", str(five_class_teacher)),
        "missing teacher": (*base, "--out", new, "--distill", str(tmp_path / "none.pt")),
        "finished out": (*base, "--out", str(done)),
        "foreign out": (*base, "--out", str(garbage)),
        "interrupted out": (*base, "--out", str(interrupted)),
        "resume other epochs": ("train", "--out", str(interrupted), "--resume", "--epochs",
                                "5"),
        "resume with --force": ("train", "--out", str(interrupted), "--resume", "--force"),
        "weight without teacher": (*base, "--out", new, "--distill-weight", "0.5"),
        "bad weight": (*base, "--out", new, "--distill", str(done), "--distill-weight", "2"),
        "bad temperature": (*base, "--out", new, "--distill", str(done), "--temperature",
                            "nan"),
        "zero epochs": (*base[:-len(SMALL)], "--epochs", "0", "--out", new),
        "zero lr": (*base, "--lr", "0", "--out", new),
        "unknown optimizer": (*base, "--optimizer", "adam", "--out", new),
        "negative weight decay": (*base, "--weight-decay", "-0.1", "--out", new),
        "zero clip norm": (*base, "--clip-norm", "0", "--out", new),
        "folder out": (*base, "--out", str(tmp_path)),
    }


MISTAKES = ["unknown space", "bad arch", "unknown reference", "no arch", "missing --from",
            "corrupt --from", "other format", "damaged export", "resume without checkpoint",
            "resume a corrupt file", "teacher of 5 classes", "missing teacher", "finished out",
            "foreign out", "interrupted out", "resume other epochs", "resume with --force",
            "weight without teacher", "bad weight", "bad temperature", "zero epochs",
            "zero lr", "unknown optimizer", "negative weight decay", "zero clip norm",
            "folder out"]


@pytest.mark.parametrize("mistake", MISTAKES)
def test_mistakes_are_one_error_line_with_status_2(mistake, space_file, trained, tmp_path,
                                                   five_class_teacher, capsys):
    argv = _mistakes(space_file, trained, tmp_path, five_class_teacher)[mistake]
    code, out, err = run(capsys, *argv, "--quiet")
    assert code == 2, err
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert not (tmp_path / "new.pt").exists()
