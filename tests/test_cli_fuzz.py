"""Fuzzing the command line (Hypothesis): whatever the argument values, space files or damaged
run folders, `nas` exits 0 or 2, says what is wrong in an `error:` line, never shows a traceback,
never leaves a partly written run folder and never changes a run's checkpoint."""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import string
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nas.cli import main
from search_spaces import get_space
from search_spaces.registry import BUILTIN, FAMILIES

# Seeded (derandomize): the same examples on every run, so CI cannot fail by chance. Searches
# and damaged runs cost seconds each, so they get fewer examples.
FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
FUZZ_SLOW = settings(FUZZ, max_examples=20)

# Values a careless or hostile user types: signs, zero, non-finite, huge, non-ASCII digits,
# paths, JSON, empty strings.
NASTY = ["0", "-1", "-5", "1", "2", "3.5", "nan", "inf", "-inf", "1e400", "9" * 400, "", " ",
         "abc", "\u0663", "\uff11\uff12", "/", "/dev/null", "..", "a=b", "=", "null", "[]",
         "{}", "true", "x" * 300, "1M", "300M-flops", "acc", "flops", "-", "--", "\x00"]
TEXT = st.text(alphabet=string.printable + "\u0663\uff11\u00e9", max_size=12)
VALUE = st.one_of(st.sampled_from(NASTY), st.integers(-3, 40).map(str), TEXT)


def run_cli(*argv: str) -> tuple[int, str, str]:
    """One `nas` call in this process: (exit status, stdout, stderr). An exception that
    escapes `main` is what a user would see as a traceback: the test fails on it."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse usage errors
            code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue(), err.getvalue()


def assert_clean_exit(code: int, err: str, argv: tuple[str, ...]) -> None:
    assert code in (0, 2), f"exit {code} for {argv}: {err[-500:]}"
    assert "Traceback" not in err, f"traceback for {argv}: {err[-800:]}"
    if code == 2:
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, f"expected one error line for {argv}, got: {err[-500:]}"


# --- nas sample / describe -----------------------------------------------------------------
SPACES = st.sampled_from(["mobile", "nb201", "resnet", "densenet", "vit", "fbnet",
                          "mobile-sparse", "nosuch", "", "nb201-sparse"])


@FUZZ
@given(space=SPACES, n=st.sampled_from(["1", "2", "0", "-4", "x", "1.5", "\u0663"]),
       seed=VALUE, budget=st.one_of(VALUE, st.sampled_from(
           ["300M-flops", "5M-params", "1e400M-flops", "nanM-flops", "-3M-flops", "0M-flops",
            "20ms-latency", "300M-flops,5M-params", "9" * 400 + "-flops", "300M-nosuch"])),
       classes=VALUE)
def test_sample_any_values(space, n, seed, budget, classes):
    argv = ("sample", "--space", space, "-n", n, "--seed", seed, "--budget", budget,
            "--classes", classes)
    code, _, err = run_cli(*argv)
    assert_clean_exit(code, err, argv)


@FUZZ
@given(space=SPACES, arch=st.one_of(VALUE, st.sampled_from(
    ["mobile:r128-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3", "resnet:\u0663",
     "densenet:r128-\uff11", "nb201:0000000", "|nor_conv_3x3~0|+|none~0|none~1|+"])),
       classes=VALUE, verify=st.booleans())
def test_describe_any_values(space, arch, classes, verify):
    argv = ("describe", "--space", space, "--arch", arch, "--classes", classes,
            *(["--verify"] if verify else []))
    code, _, err = run_cli(*argv)
    assert_clean_exit(code, err, argv)


# --- space files ---------------------------------------------------------------------------
SCALAR = st.one_of(st.integers(-3, 48), st.sampled_from([0.0, 0.5, 1e9, float("nan"),
                                                         float("inf"), -1.5, True, False, None]),
                   st.sampled_from(["three", "", "relu", "\u0663", "mobile"]))
SETTING = st.one_of(SCALAR, st.lists(SCALAR, max_size=4),
                    st.lists(st.lists(SCALAR, max_size=3), max_size=3))


@FUZZ
@given(base=st.sampled_from(sorted(BUILTIN)), data=st.data(), suffix=st.sampled_from(
    [".yaml", ".json"]), name=st.one_of(st.none(), st.sampled_from(
        ["mine", "mobile", "nb201", "", "a:b", "x" * 80])))
def test_space_file_any_settings(tmp_path_factory, base, data, suffix, name):
    family = BUILTIN[base]
    import importlib

    preset = importlib.import_module(FAMILIES[family]).PRESETS[base]
    setting = data.draw(st.sampled_from(sorted(preset)), label="setting")
    config = {"base": base, setting: data.draw(SETTING, label="value")}
    if name is not None:
        config["name"] = name
    path = tmp_path_factory.mktemp("space") / f"fuzzed{suffix}"
    text = json.dumps(config) if suffix == ".json" else yaml.safe_dump(config)
    path.write_text(text)
    argv = ("sample", "--space", str(path), "-n", "2", "--seed", "0")
    code, out, err = run_cli(*argv, "--json")
    assert_clean_exit(code, err, (*argv, text))
    if code == 0:
        for row in json.loads(out):
            # Every sampled key reads back to the same architecture, and describes.
            space = get_space(str(path))
            assert space.parse(row["key"]).key == row["key"]
            code, _, err = run_cli("describe", "--space", str(path), "--arch", row["key"])
            assert_clean_exit(code, err, ("describe", row["key"], text))


# --- nas search: settings are checked before anything is written ---------------------------
@pytest.fixture(scope="module")
def nb201_table(tmp_path_factory) -> Path:
    """A made-up accuracy for every NB201 cell: searches cost no training."""
    space = get_space("nb201")
    path = tmp_path_factory.mktemp("table") / "nb201.csv"
    lines = ["arch,acc"] + [f"{space.from_index(i).key},{50 + (i * 7919) % 4000 / 100:.2f}"
                            for i in range(15625)]
    path.write_text("\n".join(lines) + "\n")
    return path


SEARCH_FLAGS = ["--budget", "--objectives", "--trials", "--time-limit", "--seed",
                "--batch-size", "--threads", "--cost-classes", "--epochs", "--option",
                "--proxy", "--column", "--val-fraction", "--address", "--strategy", "--data",
                "--table", "--space", "--device"]


def assert_run_folder_whole(out: Path, code: int) -> None:
    """A failed search leaves no folder (or an empty one), or a whole resumable run."""
    files = {p.name for p in out.iterdir()} if out.exists() else set()
    if code == 0:
        assert {"config.json", "checkpoint.json", "trials.csv", "pareto.csv"} <= files, files
    else:
        assert not files or {"config.json", "checkpoint.json"} <= files, files


@FUZZ_SLOW
@given(flags=st.lists(st.tuples(st.sampled_from(SEARCH_FLAGS), VALUE), min_size=1,
                      max_size=2, unique_by=lambda f: f[0]))
def test_search_any_settings(nb201_table, tmp_path_factory, flags):
    out = tmp_path_factory.mktemp("run") / "out"
    given_flags = dict(flags)
    base = {"--space": "nb201", "--estimator": "table", "--table": str(nb201_table),
            "--trials": "2", "--workers": "0"}
    if "--trials" in given_flags and given_flags["--trials"].strip().isdigit():
        given_flags["--trials"] = str(min(int(given_flags["--trials"].strip()), 3))
    argv = [arg for flag, value in {**base, **given_flags}.items() for arg in (flag, value)]
    argv = ("search", *argv, "--no-anchors", "--quiet", "--out", str(out))
    code, _, err = run_cli(*argv)
    assert_clean_exit(code, err, argv)
    assert_run_folder_whole(out, code)


# --- nas report / export on damaged run folders ---------------------------------------------
@pytest.fixture(scope="module")
def finished_run(nb201_table, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    code, _, err = run_cli("search", "--space", "nb201", "--estimator", "table", "--table",
                           str(nb201_table), "--trials", "12", "--workers", "0", "--no-anchors",
                           "--quiet", "--out", str(out))
    assert code == 0, err
    return out


def damage(path: Path, how: str, at: float, junk: bytes) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: int(len(data) * at)])
    elif how == "junk":
        path.write_bytes(junk)
    elif how == "splice":
        cut = int(len(data) * at)
        path.write_bytes(data[:cut] + junk + data[cut:])
    elif how == "delete":
        path.unlink()
    elif how == "retype" and path.suffix == ".json":
        value = json.loads(data)
        if isinstance(value, dict) and value:
            key = sorted(value)[int(at * (len(value) - 1))]
            value[key] = "not what it should be"
        path.write_text(json.dumps(value))


@FUZZ_SLOW
@given(target=st.sampled_from(["trials.csv", "checkpoint.json", "config.json", "pareto.csv",
                               "summary.json"]),
       how=st.sampled_from(["truncate", "junk", "splice", "delete", "retype"]),
       at=st.floats(0, 1), junk=st.binary(max_size=40), rank=st.sampled_from(["1", "2", "0",
                                                                               "-1", "999"]))
def test_report_and_export_on_damaged_runs(finished_run, tmp_path_factory, target, how, at,
                                           junk, rank):
    run = tmp_path_factory.mktemp("damaged") / "run"
    shutil.copytree(finished_run, run)
    damage(run / target, how, at, junk)
    checkpoint = (run / "checkpoint.json").read_bytes() if (run / "checkpoint.json").exists() \
        else None
    code, _, err = run_cli("report", str(run))
    assert_clean_exit(code, err, ("report", target, how))
    model = run.parent / "model.pt"
    code, out, err = run_cli("export", str(run), "--rank", rank, "--out", str(model), "--json",
                             "--quiet")
    assert_clean_exit(code, err, ("export", target, how, rank))
    if checkpoint is not None:
        assert (run / "checkpoint.json").read_bytes() == checkpoint, "the checkpoint changed"
    if code == 0 and target != "checkpoint.json":
        # The exported network is the one the checkpoint's own front ranks there.
        assert json.loads(out)["key"] == _front_keys(finished_run)[int(rank) - 1]


def _front_keys(run: Path) -> list[str]:
    import csv

    with open(run / "pareto.csv", newline="") as handle:
        return [row["key"] for row in csv.DictReader(handle)]
