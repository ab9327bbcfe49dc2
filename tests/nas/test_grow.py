"""`nas grow` (EAS): the meta-controller, the REINFORCE update, and tiny runs end to end on
scikit-learn's digits (a tiny inverted-residual space, a few children): the run folder, the
budget, resume after a kill mid-episode, export, the CLI's one-line errors, and Ray workers."""
from __future__ import annotations

import json
import math

import pytest
import torch

from nas.cli import main
from nas.morph import GrowJob, GrowSettings, MorphError
from nas.morph import workers as workers_module
from nas.morph.children import make_child
from nas.morph.controller import Decision, MetaController, eas_reward, parse_transform, site
from search_spaces import get_space, load_space_file, register_space
from search_spaces.transforms import Transform, available

SPACE = """name: grow-tiny
base: mobile
widths: [8, 12, 16]
strides: [2, 2, 2]
acts: [relu, hswish, hswish]
se: [false, false, true]
depths: [[1, 2], [1, 2], [1, 2]]
kernels: [3, 5]
expands: [3, 4]
resolutions: [16]
stem: 8
first: 8
head: 16
mix: 16
classes: 10
"""
START = "r16-k3e3-k3e3-k3e3"
EAS_ACTORS = GrowJob.actors
FAST = {"start": START, "episodes": 2, "children": 2, "start_epochs": 1, "train_images": 256,
        "finetune_epochs": 1.0, "data": "digits", "workers": 0}


@pytest.fixture(scope="module")
def space_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("space") / "grow-tiny.yaml"
    path.write_text(SPACE)
    register_space(load_space_file(path))
    return str(path)


def settings(space_file: str, **changes) -> GrowSettings:
    return GrowSettings(**{**FAST, "space": space_file, **changes})


# --- the controller ------------------------------------------------------------------------------
def test_sites_name_the_block_a_transformation_acts_on(space_file):
    space = get_space("grow-tiny")
    arch = space.parse("r16-k3e3-k3e3.k5e4-k3e3")
    specs = space.blocks(arch)
    assert specs[site(specs, Transform("widen", 2, 2))].name == "stage2.1"
    assert specs[site(specs, Transform("deepen", 3))].name == "stage3.0"
    resnet = get_space("resnet")
    specs = resnet.blocks(resnet.min_arch())
    assert specs[site(specs, Transform("widen", 4))].name == "stage4.0"


def test_recorded_decisions_have_the_probability_they_were_sampled_with(space_file):
    space = get_space("grow-tiny")
    arch = space.parse(START)
    controller = MetaController(EAS_ACTORS, seed=3)
    generator = torch.Generator().manual_seed(0)
    for actor in ("widen", "deepen"):
        offered, logits = controller.distribution(space, arch, actor)
        assert [t.kind for t in offered] == [actor] * len(offered) and offered
        decision = controller.sample(space, arch, actor, generator)
        logp, entropy = controller.log_prob(space, Decision.from_json(decision.to_json()))
        if actor == "widen":
            p = torch.sigmoid(logits)
            taken = torch.tensor([str(t) in decision.chosen for t in offered])
            expected = torch.where(taken, p, 1 - p).log().sum()
        else:
            probs = torch.softmax(logits, 0)
            assert len(decision.chosen) == 1  # the deepen actor always deepens one stage
            index = [str(t) for t in offered].index(decision.chosen[0])
            expected = probs[index].log()
        assert float(logp.detach()) == pytest.approx(float(expected.detach()), abs=1e-5)
        assert float(entropy.detach()) > 0
    assert parse_transform("widen stage 2 block 1") == Transform("widen", 2, 1)
    assert parse_transform(str(Transform("deepen", 3))) == Transform("deepen", 3)
    copy = MetaController(EAS_ACTORS, seed=9)
    copy.load_state_json(json.loads(json.dumps(controller.state_json())))
    assert all(torch.equal(a, b) for a, b in zip(copy.parameters(), controller.parameters()))


def test_reward_shaping_is_eas_tan():
    assert eas_reward(50.0) == pytest.approx(1.0)
    assert eas_reward(0.0) == 0.0
    assert eas_reward(91.0) - eas_reward(90.0) > eas_reward(51.0) - eas_reward(50.0) > 0
    assert math.isfinite(eas_reward(100.0))


def test_reinforce_moves_the_policy_towards_rewarded_choices(space_file):
    """Children that deepened stage 3 are rewarded (acc 90 %), the others not (10 %): after a
    few updates the deepen actor picks stage 3 more often."""
    job = GrowJob(settings(space_file, lr=0.1), "/nonexistent-not-written")
    space = job.space
    arch = space.parse(START)
    controller = MetaController(EAS_ACTORS, seed=0)
    optimizer = torch.optim.Adam(controller.parameters(), lr=0.1)
    state = {"baseline": None, "untrained_draws": 0, "rewards": []}

    def stage3_probability() -> float:
        with torch.no_grad():
            moves, logits = controller.distribution(space, arch, "deepen")
            return float(torch.softmax(logits, 0)[moves.index(Transform("deepen", 3))])

    before = stage3_probability()
    generator = torch.Generator().manual_seed(1)
    for episode in range(8):
        decisions = [[controller.sample(space, arch, "deepen", generator)] for _ in range(6)]
        keys = [f"child-{episode}-{i}" for i in range(6)]
        rows = [{"key": key, "reward": eas_reward(90.0 if d[0].chosen == ("deepen stage 3",)
                                                  else 10.0)} for key, d in zip(keys, decisions)]
        plan = {"children": [{"key": key, "decisions": [x.to_json() for x in d]}
                             for key, d in zip(keys, decisions)], "refused": [], "repeats": []}
        job._update(controller, optimizer, state, plan, rows)
    assert stage3_probability() > before + 0.2
    frozen = GrowJob(settings(space_file, policy="random"), "/nonexistent-not-written")
    fixed = MetaController(EAS_ACTORS, seed=0)
    untouched = fixed.state_json()
    frozen._update(fixed, torch.optim.Adam(fixed.parameters(), lr=0.1), dict(state), plan, rows)
    assert fixed.state_json() == untouched  # the random baseline keeps its initial policy


def test_draws_that_are_not_trained_still_teach_the_controller(space_file):
    """A repeat of a child trained already is not trained again and gets that child's reward;
    a copy of the parent is drawn again and gets 0."""
    from nas.morph.episodes import RESAMPLES, Brood

    job = GrowJob(settings(space_file), "/nonexistent-not-written")
    space = job.space
    parent = space.parse("r16-k3e3-k3e3.k3e3-k3e3.k3e3")  # only stage 1 can deepen
    only = space.parse("r16-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3")
    controller = MetaController(EAS_ACTORS, seed=0)
    brood = Brood(parent, "unused.pt", -1, ("deepen",))
    generator = torch.Generator().manual_seed(0)
    children, refused, repeats = job._draw(1, [{"key": only.key, "reward": 7.0}], brood,
                                           controller, generator)
    assert children == [] and refused == [] and [k for _, k in repeats] == [only.key] * 2
    children, refused, repeats = job._draw(0, [], brood, controller, generator)
    assert [c["key"] for c in children] == [only.key] and [k for _, k in repeats] == [only.key]
    repeat_of_only = repeats
    widen_only = Brood(space.max_arch(), "unused.pt", -1, ("widen",))
    children, refused, repeats = job._draw(0, [], widen_only, controller, generator)
    assert children == [] == repeats and len(refused) == 2 * RESAMPLES  # copies: reward 0
    assert {reward for _, reward in refused} == {0.0}
    # the update gives a repeat the reward of the child it repeats
    state = {"baseline": None, "untrained_draws": 0, "rewards": []}
    plan = {"children": [], "refused": [], "repeats": repeat_of_only}
    job._update(controller, torch.optim.Adam(controller.parameters()), state, plan,
                [{"key": only.key, "reward": 7.0}])
    assert state["baseline"] == pytest.approx(7.0) and state["untrained_draws"] == 1


def test_parents_best_grows_the_best_child_so_far(space_file, tmp_path):
    run = tmp_path / "best"
    GrowJob(settings(space_file, parents="best"), run, log=lambda _: None).run()
    rows = json.loads((run / "checkpoint.json").read_text())["trials"]
    best_first = max(rows[:2], key=lambda r: r["acc"])
    assert all(r["parent"] == -1 for r in rows[:2])
    assert all(r["parent"] == best_first["trial"] for r in rows[2:])


# --- children ------------------------------------------------------------------------------------
def test_a_child_without_noise_computes_what_its_parent_computes(space_file, tmp_path):
    from estimators.checkpoints import load_model

    run = tmp_path / "run"
    GrowJob(settings(space_file, episodes=1, children=1), run, log=lambda _: None).run()
    parent, _ = load_model(run / "start.pt")
    space = get_space("grow-tiny")
    moves = available(space, space.parse(START))
    out = tmp_path / "child.pt"
    arch = make_child(run / "start.pt", moves[:3], out, noise=0.0, seed=0, record={})
    child, info = load_model(out)
    assert info["key"] == arch.key != parent.arch_key
    x = torch.randn(4, *parent.input_shape)
    with torch.no_grad():
        assert float((parent(x) - child(x)).abs().max()) < 1e-5


# --- runs ----------------------------------------------------------------------------------------
def test_a_run_writes_a_search_run_folder(space_file, tmp_path):
    run = tmp_path / "run"
    result = GrowJob(settings(space_file), run, log=lambda _: None).run()
    rows = json.loads((run / "checkpoint.json").read_text())["trials"]
    # 2 episodes x 2 draws; a repeat of a child trained before is not trained again
    assert 2 <= len(rows) == result["trials"] <= 4
    assert len(rows) + result["summary"]["untrained_draws"] >= 4
    assert [r["batch"] for r in rows] == sorted(r["batch"] for r in rows)
    assert all(r["parent"] == -1 for r in rows)  # every child grows the start network (EAS)
    assert len({r["key"] for r in rows}) == len(rows)  # no child is trained twice
    for row in rows:
        assert row["transforms"] and 0 <= row["acc"] <= 100 and row["flops"] > 0
        assert (run / "children" / f"{row['trial']}.pt").is_file()
    for name in ("config.json", "trials.csv", "pareto.csv", "pareto.md", "pareto.png",
                 "summary.json", "anchors.csv", "start.pt"):
        assert (run / name).is_file(), name
    assert not (run / "episode.json").exists()
    assert main(["report", str(run)]) == 0
    assert main(["export", str(run), "--out", str(tmp_path / "best.pt"), "--quiet"]) == 0
    import nas.export

    model = nas.export.load(tmp_path / "best.pt")
    assert model.arch_key == result["best"]["key"]


def test_children_over_the_budget_are_never_trained(space_file, tmp_path):
    space = get_space("grow-tiny")
    from nas.evaluation import Evaluator, evaluation_config

    cost = Evaluator(evaluation_config(space_file, "train"), {}).cost
    start_flops = cost(space.parse(START))["flops"]
    budget = f"{(start_flops * 1.08) / 1e6:.4f}M-flops"
    trained = []
    real = workers_module.finetune

    def counting(init, out, *args):
        trained.append(out)
        return real(init, out, *args)

    run = tmp_path / "run"
    job = GrowJob(settings(space_file, budget=budget, episodes=1, children=3, widen_steps=1,
                           deepen_steps=1), run,
                  log=lambda _: None)
    workers_module.finetune, saved = counting, workers_module.finetune
    try:
        result = job.run()
    finally:
        workers_module.finetune = saved
    rows = json.loads((run / "checkpoint.json").read_text())["trials"]
    assert len(trained) == len(rows) >= 1  # only a few distinct children fit this budget
    assert all(r["flops"] <= start_flops * 1.08 and r["within_budget"] for r in rows)
    assert result["summary"]["untrained_draws"] > 0
    with pytest.raises(MorphError, match="within the budget"):
        GrowJob(settings(space_file, budget="1K-flops", episodes=1), tmp_path / "none",
                log=lambda _: None).run()


def test_a_kill_mid_episode_keeps_the_finished_children(space_file, tmp_path, monkeypatch):
    job_module = workers_module
    real = job_module.finetune
    calls = []

    def dies_on_second(init, out, *args):
        calls.append(out)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(init, out, *args)

    run = tmp_path / "run"
    monkeypatch.setattr(job_module, "finetune", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        GrowJob(settings(space_file, episodes=1), run, log=lambda _: None).run()
    plan = json.loads((run / "episode.json").read_text())
    assert list(plan["done"]) == ["0"]
    calls.clear()
    monkeypatch.setattr(job_module, "finetune", lambda init, out, *a: (calls.append(out),
                                                                       real(init, out, *a))[1])
    GrowJob(settings(space_file, episodes=1), run, log=lambda _: None).run()
    assert [c.rsplit("/", 1)[1] for c in calls] == ["1.pt"]  # child 0 was not trained again
    rows = json.loads((run / "checkpoint.json").read_text())["trials"]
    assert rows[0]["acc"] == plan["done"]["0"]["acc"] and len(rows) == 2
    # more episodes continue the run; other settings are refused
    GrowJob(settings(space_file, episodes=2), run, log=lambda _: None).run()
    saved = json.loads((run / "checkpoint.json").read_text())
    assert saved["batches"] == 2 and saved["trials"][:2] == rows
    with pytest.raises(MorphError, match="other settings"):
        GrowJob(settings(space_file, episodes=3, lr=0.5), run, log=lambda _: None).run()


def exit_code(args: list[str]) -> int:
    try:
        return main(args)
    except SystemExit as exc:  # argparse's own errors
        return int(exc.code)


def test_cli_runs_and_bad_input_is_one_line_exit_2(space_file, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["grow", "--space", space_file, "--start", START, "--episodes", "1", "--children",
            "1", "--start-epochs", "1", "--train-images", "128", "--data", "digits",
            "--workers", "0", "--out", str(out)]
    assert main([*args, "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["trials"] == 1 and payload["best"]["key"].startswith("grow-tiny:")
    for bad, words in ((["--policy", "greedy"], "policy"), (["--children", "0"], "children"),
                       (["--start", "r99-x"], "r99"), (["--budget", "many-flops"], "budget")):
        code = exit_code([*args[:-1], str(tmp_path / "bad"), *bad])
        err = capsys.readouterr().err
        assert code == 2 and words in err and err.count("\n") == 1 and "Traceback" not in err
    assert main(args) == 2 and "already holds a run" in capsys.readouterr().err
    assert main(["grow", "--resume", str(out), "--episodes", "2", "--quiet"]) == 0
    assert len(json.loads((out / "checkpoint.json").read_text())["trials"]) == 2


def test_children_train_on_ray_workers(space_file, tmp_path, ray_session):
    run = tmp_path / "ray"
    result = GrowJob(settings(space_file, episodes=1, workers=2), run, log=lambda _: None).run()
    assert result["trials"] == 2
    assert all((run / "children" / f"{t}.pt").is_file() for t in (0, 1))
