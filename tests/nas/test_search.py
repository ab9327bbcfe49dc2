"""The search job in this process: result files, the front, limits, seeds, failures."""
from __future__ import annotations

import json
import math
import shlex

import numpy as np
import pytest

from nas.objectives import Constraint, Objective
from nas.pareto import Box, hypervolume_box, normalised_hypervolume, pareto_mask, pareto_rows
from nas.results import read_csv, to_csv
from nas.search import SearchJob
from nas.search_settings import SearchError, parse_duration, parse_objectives
from search_spaces import NasError


@pytest.fixture(scope="module")
def finished(tmp_path_factory, small_settings):
    """One small search run to completion (shared by the checks below)."""
    return SearchJob(small_settings(), tmp_path_factory.mktemp("run"), quiet=True).run()


def test_run_folder_holds_every_result_file(finished):
    names = {p.name for p in finished.run_dir.iterdir()}
    assert {"config.json", "trials.csv", "anchors.csv", "pareto.csv", "pareto.md", "pareto.png",
            "summary.json", "checkpoint.json"} <= names
    assert "batch.json" not in names  # only while a batch runs
    assert (finished.run_dir / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((finished.run_dir / "config.json").read_text())
    assert config["command"].startswith("nas search --space nb201 --budget 60M-flops")
    assert config["evaluation"]["estimator"] == "proxy"
    assert config["constraints"] == [["flops", 60e6]]


def test_trials_csv_has_one_row_per_evaluation_with_every_metric(finished):
    rows = read_csv(finished.run_dir / "trials.csv")
    assert len(rows) == 16 == len({r["key"] for r in rows})
    for row in rows:
        assert row["acc_estimator"] == "proxy:jacov"
        assert row["flops"] > 0 and row["params"] > 0
        assert row["flops"] <= 60e6  # the strategy only proposes within the budget
    assert [r["key"] for r in rows] == [r["key"] for r in finished.rows]
    # Each evaluation is timed on its own: a finite, positive time per row (not one figure
    # copied to every row), all within the search's own time (one evaluation at a time here).
    seconds = [r["eval_seconds"] for r in rows]
    assert all(isinstance(t, float) and math.isfinite(t) and t > 0 for t in seconds), seconds
    assert len(set(seconds)) > 1
    assert sum(seconds) <= finished.summary["search_seconds"] + 0.01


def test_pareto_rows_are_non_dominated_within_budget_and_ranked(finished):
    rows = read_csv(finished.run_dir / "trials.csv")
    front = read_csv(finished.run_dir / "pareto.csv")
    assert front and [r["rank"] for r in front] == list(range(1, len(front) + 1))
    accs = [r["acc"] for r in front]
    assert accs == sorted(accs, reverse=True)
    points = np.array([[-r["acc"], r["flops"]] for r in rows])
    expected = {r["key"] for r, keep in zip(rows, pareto_mask(points)) if keep}
    assert {r["key"] for r in front} == expected
    assert 0.0 < finished.hypervolume <= 1.0
    md = (finished.run_dir / "pareto.md").read_text()
    assert all(f"`{r['key']}`" in md for r in front) and "all_c3" in md


def test_anchors_are_the_space_references(finished):
    anchors = read_csv(finished.run_dir / "anchors.csv")
    assert [a["name"] for a in anchors] == ["all_none", "all_skip", "all_c3"]
    assert all(math.isfinite(a["acc"]) and a["flops"] > 0 for a in anchors)


def test_same_seed_same_search_other_seed_other_search(tmp_path, small_settings, same_rows,
                                                       finished):
    # The first two batches do not depend on how many trials follow them.
    again = SearchJob(small_settings(trials=8, anchors=False), tmp_path / "a", quiet=True).run()
    assert same_rows(again.rows, finished.rows[:8])
    other = SearchJob(small_settings(seed=1, trials=4, anchors=False), tmp_path / "b",
                      quiet=True).run()
    assert [r["key"] for r in other.rows] != [r["key"] for r in finished.rows][:4]


def test_time_limit_stops_between_batches(tmp_path, small_settings):
    result = SearchJob(small_settings(trials=None, time_limit=0.01, anchors=False),
                       tmp_path, quiet=True).run()
    # The limit is checked before each batch: a batch that has started finishes.
    assert result.stopped == "time" and len(result.rows) in (0, 4, 8)


def test_every_failed_evaluation_stops_the_search_and_keeps_the_trials(tmp_path, small_settings):
    # DenseNet's transitions cannot run on 8x8 digits: every evaluation fails, for one reason.
    settings = small_settings(space="densenet", budget=None, trials=8)
    with pytest.raises(SearchError, match="every evaluation failed"):
        SearchJob(settings, tmp_path, quiet=True).run()
    rows = read_csv(tmp_path / "trials.csv")
    assert len(rows) == 4 and all("cannot run on 8x8" in r["error"] for r in rows)


def test_objectives_and_durations_parse_with_one_line_errors():
    assert parse_objectives(None, "nsga2", None) == [Objective("acc"),
                                                     Objective("flops", "minimize")]
    assert parse_objectives(None, "nsga2", "cpu")[1] == Objective("latency_ms", "minimize")
    assert parse_objectives(None, "evolution", None) == [Objective("acc")]
    assert parse_objectives("acc:max, latency:min,params", "nsga2", None) == [
        Objective("acc"), Objective("latency_ms", "minimize"), Objective("params", "minimize")]
    for bad in ("acc:up", "acc,acc", "1x"):
        with pytest.raises(SearchError) as info:
            parse_objectives(bad, "nsga2", None)
        assert "\n" not in str(info.value)
    assert parse_duration("90") == 90 and parse_duration("15m") == 900
    assert parse_duration("1.5h") == 5400
    with pytest.raises(SearchError, match="NUMBER"):
        parse_duration("soon")


def test_settings_that_cannot_work_fail_before_anything_runs(tmp_path, small_settings):
    for changes, message in (({"trials": 0}, "--trials"),
                             ({"strategy": "evolution", "objectives": "acc,flops"},
                              "one objective"),
                             ({"budget": "5ms-latency"}, "--device"),
                             ({"estimator": "proxy", "estimator_options": {"epochs": 2}},
                              "unknown options")):
        with pytest.raises(NasError, match=message):
            SearchJob(small_settings(**changes), tmp_path, quiet=True)


def test_front_ranking_and_hypervolume_box():
    objectives = [Objective("acc"), Objective("flops", "minimize")]
    rows = [{"key": "a", "acc": 90.0, "flops": 200.0}, {"key": "b", "acc": 80.0, "flops": 100.0},
            {"key": "c", "acc": 70.0, "flops": 150.0},  # dominated by b
            {"key": "d", "acc": 95.0, "flops": 400.0},  # over the budget
            {"key": "e", "acc": math.nan, "flops": 50.0, "error": "x"}]
    budget = [Constraint("flops", 300.0)]
    front = pareto_rows(rows, objectives, budget)
    assert [(r["key"], r["rank"]) for r in front] == [("a", 1), ("b", 2)]
    box = hypervolume_box(rows, objectives, budget, "train", {"flops": 1000.0})
    assert box == Box((100.0, 0.0), (0.0, 300.0))
    # Dominated share of [0, 300] x [0, 100]: a covers 0.9 x 1/3, b adds 0.8 x 1/3 - overlap.
    expected = (0.9 * (100 / 300)) + (0.8 * (100 / 300))
    assert normalised_hypervolume(front, objectives, box) == pytest.approx(expected)
    unbounded = hypervolume_box(rows, objectives, [], "train", {"flops": 1000.0})
    assert unbounded.reference == (0.0, 1000.0)


def test_csv_round_trip_keeps_numbers_text_and_nan(tmp_path):
    rows = [{"trial": 0, "key": "nb201:x", "acc": 0.1 + 0.2, "error": None, "within_budget": True},
            {"trial": 1, "key": "nb201:y", "acc": math.nan, "error": "boom, twice",
             "within_budget": False}]
    path = tmp_path / "t.csv"
    path.write_text(to_csv(rows))
    back = read_csv(path)
    assert back[0]["acc"] == 0.1 + 0.2 and back[0]["trial"] == 0 and back[0]["error"] is None
    assert math.isnan(back[1]["acc"]) and back[1]["error"] == "boom, twice"
    assert back[1]["within_budget"] is False


def test_device_adds_latency_to_every_row_the_objectives_and_the_budget(
        shared_data, tmp_path, monkeypatch, small_settings):
    """A device fitted on published NB201 latencies (Pixel 3) drives a latency budget."""
    from estimators.latency.fit_cli import fit_from_csv
    from search_spaces import get_space

    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    rows = (shared_data / "nb201" / "nb201.csv").read_text().splitlines()[:121]
    (tmp_path / "pixel3.csv").write_text("\n".join(rows) + "\n")
    fit_from_csv(get_space("nb201"), str(tmp_path / "pixel3.csv"), "latency_ms_pixel3", 100,
                 name="pixel3")
    result = SearchJob(small_settings(budget="12ms-latency", device="pixel3", trials=8,
                                      anchors=False), tmp_path / "run", quiet=True).run()
    assert result.summary["objectives"] == [["acc", "maximize"], ["latency_ms", "minimize"]]
    assert all(r["latency_ms"] > 0 and r["flops"] > 0 for r in result.rows)
    assert result.pareto and all(r["latency_ms"] <= 12.0 for r in result.pareto)
    assert result.summary["hypervolume_box"]["latency_ms"] == [0.0, 12.0]


def test_supernet_is_trained_once_and_reused_by_searches_with_other_seeds(tmp_path):
    from nas.evaluation import evaluation_config, prepare

    options = {"epochs": 1, "train_images": 64, "batch_size": 32, "eval_images": 100,
               "calibration_images": 64, "cache_dir": str(tmp_path), "blend_reference": 8}
    first = prepare(evaluation_config("nb201", "supernet", options, {"name": "digits"}, seed=0))
    again = prepare(evaluation_config("nb201", "supernet", options, {"name": "digits"}, seed=5))
    assert not first["supernet"]["reused"] and again["supernet"]["reused"]
    # NB201 blends jacov by default; each seed scores its own reference (its own images)
    assert first["supernet"]["blend"]["proxy"] == again["supernet"]["blend"]["proxy"] == "jacov"
    assert len(list(tmp_path.rglob("*.blend-jacov-n8-*.json"))) == 2
    assert first["supernet"]["key"] == again["supernet"]["key"]
    assert all(torch_equal(first["supernet"]["state"][k], v)
               for k, v in again["supernet"]["state"].items())


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_a_proxy_score_never_replaces_a_cost_metric():
    """The `params` proxy counts the network built for the data's 10 classes; the `params`
    cost (what budgets are checked against) counts the space's own 1000-class head."""
    from nas.evaluation import Evaluator, evaluation_config, prepare
    from search_spaces import get_space

    config = evaluation_config("mobile", "proxy", {"proxies": ["params"], "batch_size": 8,
                                                   "resolution": 32},
                               {"name": "digits"}, seed=0)
    evaluator = Evaluator(config, prepare(config))
    arch = get_space("mobile").min_arch()
    metrics = evaluator(arch)
    assert "error" not in metrics, metrics
    assert metrics["params"] == evaluator.cost(arch)["params"]


def test_objectives_constraints_and_settings_have_one_json_form(finished, small_settings):
    from nas.search_settings import SearchSettings

    for item in (Objective("acc"), Objective("latency_ms", "minimize"), Constraint("flops", 3e8)):
        assert type(item).from_json(json.loads(json.dumps(item.to_json()))) == item
    for bad in (["acc", "up"], ["acc"], "acc", ["acc", "maximize", 1], [1, "minimize"]):
        with pytest.raises(ValueError):
            Objective.from_json(bad)
    for bad in (["flops", "3e8"], ["flops", True], ["flops"], [None, 1.0]):
        with pytest.raises(ValueError):
            Constraint.from_json(bad)
    config = json.loads((finished.run_dir / "config.json").read_text())
    assert SearchSettings.from_json(config["settings"]) == small_settings()
    assert [Objective.from_json(o) for o in config["objectives"]] == \
        [Objective("acc"), Objective("flops", "minimize")]
    assert finished.summary["objectives"] == config["objectives"]


def test_a_run_folder_of_an_earlier_version_still_reads():
    """The committed example run (written before settings and budgets had a JSON form of
    their own) reads back: its settings, objectives and budget."""
    from pathlib import Path

    from nas.results import constraints_of, objectives_of
    from nas.run_folder import checked_config
    from nas.search_settings import resume_settings, settings_to_argv

    folder = Path(__file__).resolve().parents[2] / "results" / "examples" / "mobile-300M-flops"
    config = checked_config(json.loads((folder / "config.json").read_text()), folder)
    assert objectives_of(config) == [Objective("acc"), Objective("flops", "minimize")]
    assert constraints_of(config) == [Constraint("flops", 300e6)]
    settings = resume_settings(folder)
    assert (settings.space, settings.budget, settings.seed) == ("mobile", "300M-flops", 0)
    assert config["command"] == "nas search " + shlex.join(settings_to_argv(settings))
