"""N2N benchmark (issue 14): `nas compress` of a ResNet-18-shaped teacher (quarter width)
trained on Fashion-MNIST with `nas train`'s recipe; the learned policies against the same
controller frozen at its initial policy (random removal and narrowing), 3 seeds each; the
best student with at least 5x fewer parameters, distilled further, against the teacher.

    python bench/n2n.py --part teacher     # the teacher (10 epochs; resumes)
    python bench/n2n.py --part search      # 3 seeds x {reinforce, random}; resumes
    python bench/n2n.py --part final       # best >=5x student of each learned run, distilled
    python bench/n2n.py --part report      # results/bench/n2n/report.json (+ --plot)

Run folders go to results/bench/n2n/runs/ (their .pt files are not committed).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from morph_runs import Runs, mean_se  # noqa: E402  (bench/ is the script's folder)

OUT = ROOT / "results" / "bench" / "n2n"
SPACE = str(ROOT / "bench" / "spaces" / "n2n_resnet.yaml")
TEACHER_KEY = "basic-d2.2.2.2-w1.0.1.0.1.0.1.0-r32"
TEACHER = OUT / "runs" / "teacher.pt"
DATA_DIR = ROOT.parent / "shared" / "data" / "fashion-mnist"
RUNS = Runs(OUT / "runs")
POLICIES = ("reinforce", "random")
TEACHER_EPOCHS = 10
# 4 removal + 6 narrowing episodes x 4 students = 40 students per run
SETTINGS = {"episodes": 10, "remove_episodes": 4, "children": 4, "student_epochs": 1.0,
            "train_images": 10_000, "workers": 0, "threads": 1}
COMPRESSION = 5.0  # the target: at least this many times fewer parameters
FINAL_EPOCHS = 5  # distillation of the chosen student on the whole train split


def train_teacher() -> Path:
    from estimators.checkpoints import read_model_file
    from estimators.data import load_data
    from estimators.standalone import TRAIN_DEFAULTS, resume_training, train_to_checkpoint
    from search_spaces import get_space

    data = load_data("fashion-mnist", DATA_DIR, seed=0)
    if TEACHER.is_file():
        if read_model_file(TEACHER)["complete"]:
            return TEACHER
        resume_training(TEACHER, data, log=print)
        return TEACHER
    recipe = replace(TRAIN_DEFAULTS, epochs=TEACHER_EPOCHS)
    train_to_checkpoint(TEACHER, data, get_space(SPACE).parse(TEACHER_KEY), recipe=recipe,
                        seed=0, log=print)
    return TEACHER


def run_search(seeds: list[int], policies: list[str]) -> None:
    from nas.morph import CompressJob, CompressSettings

    for seed in seeds:
        for policy in policies:
            if RUNS.finished(policy, seed):
                continue
            run = RUNS.folder(policy, seed)
            print(f"== {policy} seed {seed}", flush=True)
            settings = CompressSettings(teacher=str(TEACHER), space=SPACE, policy=policy,
                                        seed=seed, data_dir=str(DATA_DIR), **SETTINGS)
            CompressJob(settings, run, log=lambda text: print(text, flush=True)).run()




def teacher_info() -> dict:
    from estimators.checkpoints import load_model
    from nas.evaluation import Evaluator, evaluation_config
    from search_spaces import get_space

    model, info = load_model(TEACHER)
    cost = Evaluator(evaluation_config(SPACE, "train", cost_classes=10), {}).cost
    # `params`: as the runs count them (the space's 3 input channels; the data has 1), so
    # that ratios with their rows are like for like; `own_params`: the model's own
    return {"key": info["key"], "val_acc": info["val_acc"], "test_acc": info["test_acc"],
            "params": cost(get_space(SPACE).parse(TEACHER_KEY))["params"],
            "own_params": sum(p.numel() for p in model.parameters())}


def compressed(rows: list[dict], params: int) -> list[dict]:
    return [r for r in rows if r["params"] * COMPRESSION <= params]


def run_final(seeds: list[int]) -> None:
    """The most accurate student with >= 5x fewer parameters of each learned run, distilled
    from the teacher for FINAL_EPOCHS epochs on the whole train split, from its weights."""
    from estimators.data import load_data
    from estimators.standalone import TRAIN_DEFAULTS, DistillSpec, train_to_checkpoint

    out = OUT / "final.json"
    results = json.loads(out.read_text()) if out.is_file() else {}
    teacher = teacher_info()
    data = load_data("fashion-mnist", DATA_DIR, seed=0)
    for seed in seeds:
        name = f"s{seed}"
        pool = compressed(RUNS.rows("reinforce", seed), teacher["params"])
        if name in results or not pool:
            continue
        pick = max(pool, key=lambda r: r["acc"])
        student = RUNS.folder("reinforce", seed) / "children" / f"{pick['trial']}.pt"
        recipe = replace(TRAIN_DEFAULTS, epochs=FINAL_EPOCHS)
        trained = train_to_checkpoint(OUT / "runs" / f"final-{name}.pt", data, init=student,
                                      recipe=recipe, distill=DistillSpec(str(TEACHER)),
                                      seed=seed, force=True, log=print)
        own = sum(p.numel() for p in trained.model.parameters())
        results[name] = {"key": pick["key"], "params": own,
                         "compression": teacher["own_params"] / own,
                         "search_val_acc": pick["acc"], "val_acc": trained.info["val_acc"],
                         "test_acc": trained.info["test_acc"], "seconds": trained.seconds}
        out.write_text(json.dumps(results, indent=1))



def report(seeds: list[int], plot: bool) -> dict:
    teacher = teacher_info()
    summary: dict = {"settings": SETTINGS, "teacher": teacher, "seeds": seeds, "policies": {}}
    for policy in POLICIES:
        runs = [RUNS.rows(policy, s) for s in seeds if RUNS.finished(policy, s)]
        best_reward = [max(r, key=lambda x: x["reward"]) for r in runs]
        best_5x = [max(compressed(r, teacher["params"]), key=lambda x: x["acc"],
                       default=None) for r in runs]
        summary["policies"][policy] = {
            "runs": len(runs), "trained_children": [len(r) for r in runs],
            "best_reward": mean_se([b["reward"] for b in best_reward]),
            "best_reward_compression": [teacher["params"] / b["params"] for b in best_reward],
            "best_reward_val_acc": [b["acc"] for b in best_reward],
            "best_5x_val_acc": mean_se([b["acc"] for b in best_5x if b]),
            "runs_with_a_5x_student": sum(b is not None for b in best_5x)}
    learned, random = summary["policies"]["reinforce"], summary["policies"]["random"]
    diff = learned["best_reward"][0] - random["best_reward"][0]
    diff_se = math.hypot(learned["best_reward"][1], random["best_reward"][1])
    summary["difference_best_reward"] = {"value": diff, "se": diff_se,
                                         "above_2se": bool(diff > 2 * diff_se)}
    final = OUT / "final.json"
    if final.is_file():
        summary["final"] = json.loads(final.read_text())
    (OUT / "report.json").write_text(json.dumps(summary, indent=1))
    if plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        episodes = SETTINGS["episodes"]
        for policy, colour in zip(POLICIES, ("tab:blue", "tab:grey")):
            for i, seed in enumerate(seeds):
                rows = RUNS.rows(policy, seed)
                means = [statistics.mean(r["reward"] for r in rows if r["batch"] == e)
                         for e in range(episodes) if any(r["batch"] == e for r in rows)]
                ax.plot(range(1, len(means) + 1), means, color=colour, marker="o", ms=3,
                        alpha=0.8, label=policy if i == 0 else None)
        ax.axvline(SETTINGS["remove_episodes"] + 0.5, color="k", lw=0.8, ls=":")
        ax.set_xlabel("episode (removal, then narrowing)")
        ax.set_ylabel("mean reward of the episode's students")
        ax.set_title("N2N on Fashion-MNIST: reward per episode")
        ax.legend()
        fig.tight_layout()
        fig.savefig(ROOT / "docs" / "n2n-fmnist.png", dpi=120)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("teacher", "search", "final", "report"),
                        required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    parser.add_argument("--plot", action="store_true")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    (OUT / "runs").mkdir(parents=True, exist_ok=True)
    if args.part == "teacher":
        train_teacher()
    elif args.part == "search":
        run_search(args.seeds, args.policies)
    elif args.part == "final":
        run_final(args.seeds)
    else:
        print(json.dumps(report(args.seeds, args.plot), indent=1))


if __name__ == "__main__":
    main()
