"""Hostile inputs against the `nas` command line: every case must end in exit 0 or 2 with at
most one `error:` line, never a traceback, never a partly written run folder, never a changed
checkpoint. Prints the counts and writes every case to results/bench/hostile_cli/.

    python bench/hostile_cli.py [--out results/bench/hostile_cli] [--only sample,search]

The cases are generated from one list of nasty values crossed with every flag of `nas sample`,
`nas describe`, `nas search` and `nas latency`, plus damaged run folders (each result file
truncated, replaced by junk, spliced, deleted or retyped) for `nas report` and `nas export`,
space files with wrong types and values, and `--out`/`--plot` at places that cannot be written.
Two groups cover the other commands: "every flag" gives each value flag of each of them 8
hostile values behind a missing input (so nothing trains; a refused run must leave no folder),
and "valid inputs" does the same behind valid inputs for the commands that finish at once
(benchmark, evaluate with a table, latency fit). Cases run in a temporary folder.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

NASTY = ["0", "-1", "-5", "3.5", "nan", "inf", "-inf", "1e400", "9" * 400, "", " ", "abc",
         "\u0663", "\uff11\uff12", "/", "/dev/null", "a=b", "=", "null", "[]", "{}", "true",
         "x" * 300, "1M", "-", "\x00"]


CASE_SECONDS = 60  # a case still running after this long counts as a hang


class Hang(Exception):
    pass


def _hang(signum, frame):
    raise Hang()


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    from nas.cli import main

    out, err = io.StringIO(), io.StringIO()
    signal.signal(signal.SIGALRM, _hang)
    signal.alarm(CASE_SECONDS)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
        except Hang:
            err.write(f"hang: still running after {CASE_SECONDS} s\n")
            code = 124
        except BaseException as exc:  # noqa: BLE001 - what a user would see as a traceback
            import traceback

            err.write("Traceback (escaped main)\n" + "".join(traceback.format_exception(exc)))
            code = 1
        finally:
            signal.alarm(0)
    return code, out.getvalue(), err.getvalue()


class Case:
    def __init__(self, group: str, argv: list[str], check: Callable[[int], str] | None = None):
        self.group, self.argv, self.check = group, argv, check


def judge(case: Case, code: int, err: str) -> str:
    """'' when the outcome is clean, else what is wrong."""
    if "Traceback" in err:
        return "traceback: " + err.strip().splitlines()[-1][:200]
    if code == 124:
        return "hang"
    if code not in (0, 2):
        return f"exit {code}"
    if code == 2 and len([ln for ln in err.splitlines() if ln.startswith("error:")]) != 1:
        return "exit 2 without exactly one error line"
    return case.check(code) if case.check else ""


def folder_whole(out: Path) -> Callable[[int], str]:
    def check(code: int) -> str:
        files = {p.name for p in out.iterdir()} if out.is_dir() else set()
        if code == 0 and not {"config.json", "checkpoint.json", "pareto.csv"} <= files:
            return f"finished run lacks files: {sorted(files)}"
        if code == 2 and files and not {"config.json", "checkpoint.json"} <= files:
            return f"partly written run folder: {sorted(files)}"
        return ""
    return check


def unchanged(path: Path) -> Callable[[int], str]:
    before = path.read_bytes() if path.exists() else None

    def check(code: int) -> str:
        after = path.read_bytes() if path.exists() else None
        return "" if after == before else f"{path.name} changed"
    return check


def nb201_table(root: Path) -> Path:
    from search_spaces import get_space

    space = get_space("nb201")
    path = root / "nb201.csv"
    path.write_text("arch,acc\n" + "".join(f"{space.from_index(i).key},{50 + i % 4000 / 100}\n"
                                           for i in range(15625)))
    return path


def explore_cases() -> list[Case]:
    cases = []
    for value in NASTY:
        for flag in ("-n", "--seed", "--classes", "--budget"):
            cases.append(Case("sample", ["sample", "--space", "mobile", flag, value]))
        cases.append(Case("sample", ["sample", "--space", value]))
        cases.append(Case("describe", ["describe", "--space", "resnet", "--arch", value]))
        cases.append(Case("describe", ["describe", "--space", "mobile", "--ref", value]))
        cases.append(Case("describe", ["describe", "--space", "nb201", "--ref", "all_conv3x3",
                                       "--classes", value]))
    for budget in ("1e400M-flops", "9" * 400 + "-flops", "nanM-flops", "-3M-flops",
                   "0M-params", "300M-nosuch", "20ms-latency", "300M-flops,", ",,"):
        cases.append(Case("sample", ["sample", "--space", "mobile", "--budget", budget]))
    for key in ("resnet:\u0663", "densenet:r128-\uff11", "resnet:r-8", "mobile:r-8-k3e3",
                "mobile:r128-k4e3.k3e3-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3",
                "mobile:r128-k3e0.k3e3-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3", "nb201:", ":"):
        space = key.split(":")[0] or "mobile"
        cases.append(Case("describe", ["describe", "--space", space, "--arch", key]))
    return cases


def space_file_cases(root: Path) -> list[Case]:
    wrong = {"kernels": ["three", [4], [2, 3], [0], [-3], [1e9], [3.5], [True], [], None],
             "expands": [[0], [1e9], [-1], ["x"], [], [0.0]],
             "resolutions": [[-8], [0], ["r"], [1e9], []],
             "widths": [[0], [-16], "wide", [24, 40]],
             "depths": [[0], [-2], [[]], "deep", [2.5]],
             "classes": [0, -5, "ten", 1e400],
             "stem": [0, -1, "s"], "dropout": [-0.5, 2, "d"]}
    cases = []
    for setting, values in wrong.items():
        for i, value in enumerate(values):
            for suffix in (".yaml", ".json"):
                path = root / f"space_{setting}_{i}{suffix}"
                path.write_text(json.dumps({"base": "mobile", "name": f"fuzz_{setting}_{i}",
                                            setting: value}, allow_nan=True))
                cases.append(Case("space file", ["sample", "--space", str(path), "-n", "2"]))
                cases.append(Case("space file", ["describe", "--space", str(path), "--ref",
                                                 "nosuch"]))
    for name in ("mobile", "nb201", "", "a:b"):
        path = root / f"named_{len(name)}.yaml"
        path.write_text(json.dumps({"base": "mobile", "name": name}))
        cases.append(Case("space file", ["sample", "--space", str(path), "-n", "1"]))
    (root / "mobile.yaml").write_text(json.dumps({"base": "resnet"}))
    cases.append(Case("space file", ["sample", "--space", str(root / "mobile.yaml")]))
    for junk in (b"", b"\x80\x81", b"[1, 2]", b"base: [", b"- a\n- b"):
        path = root / f"junk_{len(junk)}_{junk[:1].hex()}.yaml"
        path.write_bytes(junk)
        cases.append(Case("space file", ["sample", "--space", str(path)]))
    return cases


SEARCH_FLAGS = ("--budget", "--objectives", "--trials", "--time-limit", "--seed", "--batch-size",
                "--threads", "--cost-classes", "--epochs", "--option", "--proxy", "--column",
                "--val-fraction", "--address", "--strategy", "--data", "--table", "--device",
                "--space", "--data-dir", "--estimator", "--results", "--resume", "--workers")


def search_cases(root: Path, table: Path) -> list[Case]:
    base = ["search", "--space", "nb201", "--estimator", "table", "--table", str(table),
            "--trials", "2", "--workers", "0", "--no-anchors", "--quiet"]
    cases = []
    n = 0

    def add(extra: list[str], out: Path | None = None) -> None:
        nonlocal n
        n += 1
        out = out or root / f"run{n}"
        argv = base + extra
        # the last occurrence of a flag wins in argparse: the nasty one comes after the base
        cases.append(Case("search", argv + ["--out", str(out)], folder_whole(out)))

    values = ["0", "-1", "nan", "inf", "abc", "", "\u0663", "9" * 400, "1e400", "/dev/null"]
    for flag in SEARCH_FLAGS:
        for value in values:
            add([flag, value])
    for option in ("population=-3", "population=abc", "population=", "=3", "nosuch=1",
                   "mutation_rate=2", "population=1e400"):
        add(["--option", option, "--strategy", "evolution", "--objectives", "acc"])
    add(["--objectives", "nosuch"])
    add(["--objectives", "acc,nosuch:max"])
    add(["--address", "127.0.0.1:1", "--workers", "0"])
    add(["--estimator", "proxy", "--proxy", "nosuch"])
    add(["--estimator", "train", "--epochs", "0"])
    add(["--column", "nosuch"])
    empty = root / "empty.csv"
    empty.write_text("")
    add(["--table", str(empty)])
    a_file = root / "a_file"
    a_file.write_text("x")
    add([], a_file)
    add([], a_file / "below")
    taken = root / "taken"
    taken.mkdir()
    (taken / "config.json").write_text("{}")
    cases.append(Case("search", base + ["--out", str(taken)], unchanged(taken / "config.json")))
    cases.append(Case("search", ["search", "--resume", str(root / "nosuch")]))
    cases.append(Case("search", ["search", "--resume", str(a_file)]))
    return cases


def damaged_run_cases(root: Path, table: Path) -> list[Case]:
    finished = root / "finished"
    code, _, err = run_cli(["search", "--space", "nb201", "--estimator", "table", "--table",
                            str(table), "--trials", "12", "--workers", "0", "--no-anchors",
                            "--quiet", "--out", str(finished)])
    assert code == 0, err
    cases = []
    for target in ("trials.csv", "checkpoint.json", "config.json", "pareto.csv", "summary.json"):
        for how in ("truncate", "junk", "splice", "delete", "retype"):
            run = root / f"damaged_{target}_{how}"
            shutil.copytree(finished, run)
            path = run / target
            data = path.read_bytes()
            if how == "truncate":
                path.write_bytes(data[: len(data) * 2 // 3])
            elif how == "junk":
                path.write_bytes(b"\x80\x00garbage\xff")
            elif how == "splice":
                path.write_bytes(data[: len(data) // 2] + b'",\n\x00' + data[len(data) // 2:])
            elif how == "delete":
                path.unlink()
            elif target.endswith(".json"):
                value = json.loads(data)
                path.write_text(json.dumps({k: "retyped" for k in value}))
            else:
                path.write_text(data.decode().replace(",", ";"))
            checkpoint = run / "checkpoint.json"
            cases.append(Case("report", ["report", str(run)], unchanged(checkpoint)))
            for rank in ("1", "0", "-1", "999"):
                cases.append(Case("export", ["export", str(run), "--rank", rank, "--out",
                                             str(run / f"model{rank}.pt"), "--quiet"],
                                  unchanged(checkpoint)))
    for value in FLAG_VALUES:
        checkpoint = finished / "checkpoint.json"
        cases.append(Case("export", ["export", str(finished), "--epochs", value, "--out",
                                     str(root / "e.pt"), "--quiet"], unchanged(checkpoint)))
        cases.append(Case("report", ["report", str(finished), "--results", value],
                          unchanged(checkpoint)))
    a_file = root / "a_file"
    for out in (a_file, a_file / "below", root, root / "nosuch" / "deep" / "m.pt"):
        cases.append(Case("export", ["export", str(finished), "--out", str(out), "--quiet"]))
        cases.append(Case("report", ["report", str(finished), "--plot", str(out)]))
    return cases


def latency_cases(root: Path) -> list[Case]:
    cases = []
    for value in NASTY[:14]:
        cases.append(Case("latency", ["latency", "predict", "--space", "mobile", "--device",
                                      value, "--arch", "x"]))
        cases.append(Case("latency", ["latency", "predict", "--space", "mobile", "--arch",
                                      value, "--no-measure", "--cache-dir", str(root / "cache")]))
    return cases


# Commands beyond those above, each with a base whose input is missing, so that a run that
# accepts the hostile value still ends at once (nothing trains).
MISSING = "/nonexistent/input"
FAST_FAILING = {
    ("evaluate",): ["--space", f"{MISSING}.yaml", "--estimator", "flops", "--arch", "x"],
    ("train",): ["--space", f"{MISSING}.yaml", "--arch", "x"],
    ("grow",): ["--start", f"{MISSING}.pt"],
    ("compress",): ["--teacher", f"{MISSING}.pt"],
    ("stitch",): ["--anchors", f"{MISSING}.pt", f"{MISSING}2.pt"],
    ("differentiable",): ["--space", f"{MISSING}.yaml"],
    ("supernet", "train"): ["--space", f"{MISSING}.yaml"],
    ("evolve-layer",): ["--space-file", f"{MISSING}.yaml"],
    ("benchmark",): ["--table", f"{MISSING}.csv", "--space", "nb201", "--objective", "acc",
                     "--strategy", "random"],
    ("latency", "build"): ["--space", f"{MISSING}.yaml"],
    ("latency", "validate"): ["--space", f"{MISSING}.yaml"],
    ("latency", "measure"): ["--space", f"{MISSING}.yaml"],
    ("latency", "fit"): ["--space", "nb201", "--measurements", f"{MISSING}.csv", "--column",
                         "ms", "--train", "10"],
    ("latency", "import"): [f"{MISSING}.json", "--name", "x"],
}
FLAG_VALUES = ["0", "-1", "nan", "abc", "", "9" * 400, "\x00", "/dev/null"]


def every_flag_cases(root: Path) -> list[Case]:
    """Every value-taking flag of the commands in FAST_FAILING, with each of FLAG_VALUES."""
    import argparse as ap

    from nas.cli import build_parser

    def subparser(parser: ap.ArgumentParser, words: tuple[str, ...]) -> ap.ArgumentParser:
        for word in words:
            action = next(a for a in parser._actions if isinstance(a, ap._SubParsersAction))
            parser = action.choices[word]
        return parser

    cases = []
    for words, base in FAST_FAILING.items():
        parser = subparser(build_parser(), words)
        flags = [a.option_strings[-1] for a in parser._actions
                 if a.option_strings and a.nargs != 0 and a.dest != "help"]
        for flag in flags:
            for value in FLAG_VALUES:
                out = root / "every" / "_".join(words)
                given = ["--out", str(out)] if flag != "--out" else []
                cases.append(Case("every flag", [*words, *base, *given, flag, value],
                                  nothing_left(out) if given else None))
    return cases


def valid_input_cases(root: Path, table: Path) -> list[Case]:
    """Every value flag of the commands that finish at once on valid inputs, with each of
    FLAG_VALUES: the hostile value is checked by the command itself, past its inputs."""
    import argparse as ap

    from nas.cli import build_parser

    lines = table.read_text().splitlines()[1:200]
    key = lines[0].split(",")[0]
    measured = root / "measured.csv"
    measured.write_text("arch,ms\n" + "".join(f"{ln.split(',')[0]},{1 + i % 7}\n"
                                               for i, ln in enumerate(lines)))
    bases = {
        ("benchmark",): ["--table", str(table), "--space", "nb201", "--objective", "acc",
                         "--strategy", "random", "--queries", "5", "--seeds", "2"],
        ("evaluate",): ["--space", "nb201", "--estimator", "table", "--table", str(table),
                        "--column", "acc", "--arch", key],
        ("latency", "fit"): ["--space", "nb201", "--measurements", str(measured), "--column",
                             "ms", "--train", "20", "--cache-dir", str(root / "fit-cache")],
    }
    cases = []
    for words, base in bases.items():
        parser = build_parser()
        for word in words:
            parser = next(a for a in parser._actions
                          if isinstance(a, ap._SubParsersAction)).choices[word]
        flags = [a.option_strings[-1] for a in parser._actions
                 if a.option_strings and a.nargs != 0 and a.dest != "help"]
        for flag in flags:
            for value in FLAG_VALUES:
                cases.append(Case("valid inputs", [*words, *base, flag, value]))
    return cases


def nothing_left(out: Path) -> Callable[[int], str]:
    """A command that refused its input leaves no --out folder behind."""
    def check(code: int) -> str:
        return f"left {out.name}/ behind" if code == 2 and out.exists() else ""
    return check


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/bench/hostile_cli")
    parser.add_argument("--only", default=None, help="groups, comma-separated")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    out = Path(args.out)
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.chdir(root)  # relative paths among the hostile values land here, not in the checkout
        table = nb201_table(root)
        groups = {"sample": explore_cases, "space file": lambda: space_file_cases(root),
                  "search": lambda: search_cases(root, table),
                  "report": lambda: damaged_run_cases(root, table),
                  "latency": lambda: latency_cases(root),
                  "every flag": lambda: every_flag_cases(root),
                  "valid inputs": lambda: valid_input_cases(root, table)}
        wanted = set(args.only.split(",")) if args.only else set(groups)
        cases = [c for name, make in groups.items() if name in wanted for c in make()]
        rows = []
        start = time.perf_counter()
        for i, case in enumerate(cases):
            code, _, err = run_cli(case.argv)
            problem = judge(case, code, err)
            rows.append({"group": case.group, "argv": " ".join(a[:60] for a in case.argv),
                         "exit": code, "problem": problem,
                         "error": next((ln for ln in err.splitlines()
                                        if ln.startswith("error:")), "")[:240]})
            if problem:
                print(f"[{i + 1}/{len(cases)}] {case.group}: {problem}\n    {rows[-1]['argv']}",
                      flush=True)
        os.chdir(here)
    summary = {"cases": len(rows), "clean": sum(not r["problem"] for r in rows),
               "tracebacks": sum(r["problem"].startswith("traceback") for r in rows),
               "other_problems": sum(bool(r["problem"]) and not r["problem"].startswith(
                   "traceback") for r in rows),
               "exit_0": sum(r["exit"] == 0 for r in rows),
               "exit_2": sum(r["exit"] == 2 for r in rows),
               "by_group": {g: sum(r["group"] == g for r in rows) for g in
                            dict.fromkeys(r["group"] for r in rows)},
               "seconds": round(time.perf_counter() - start, 1)}
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "cases.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0 if summary["clean"] == summary["cases"] else 1


if __name__ == "__main__":
    sys.exit(main())
