"""`nas supernet train`: train (or reuse from the cache) the weight-sharing supernet of a space
on a data set; `--workers N` trains data-parallel on N Ray Train CPU workers."""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import fields
from typing import Any

from nas.cli.common import CommandAdder, number_in, positive_int, resolution, seed, threads
from search_spaces import NasError, get_space


def _recipe(args: argparse.Namespace, space):
    """The options given, over the space's default recipe (`default_recipe`)."""
    from estimators.supernet import default_recipe
    from estimators.supernet.estimator import RECIPE_OPTIONS

    # one flag per recipe option of the supernet estimator (--option NAME=VALUE in nas search)
    given = {name: getattr(args, name) for name in RECIPE_OPTIONS}
    values = {k: v for k, v in given.items() if v is not None}  # --lr 0 is refused, not replaced
    if args.train_images == 0:
        values["train_images"] = None
    return default_recipe(space, kernel_transform=not args.no_kernel_transform, seed=args.seed,
                          **values)


def cmd_train(args: argparse.Namespace) -> int:
    from estimators.supernet import train_supernet

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    space = get_space(args.space)
    from estimators.data import load_data

    data = load_data(args.data, args.data_dir, val_fraction=args.val_fraction, seed=args.seed)
    recipe = _recipe(args, space)
    quiet = args.quiet or getattr(args, "json", False)
    if args.workers > 1:
        from estimators.ray_local import ensure_ray

        ensure_ray(args.address)
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        if not quiet:
            from tqdm import tqdm

            tqdm.write(line, file=sys.stderr)  # above the progress bar, not inside it

    trained = train_supernet(space, data, recipe, workers=args.workers, resume=args.resume,
                             quiet=quiet, cache_dir=args.cache_dir, reuse=not args.retrain,
                             log=log)
    summary: dict[str, Any] = {**trained.summary(), "recipe": recipe.as_dict(),
                               "data": data.summary(), "workers": args.workers}
    history = trained.history
    text = [f"supernet of {space.name} ({trained.supernet.style}), "
            f"{summary['shared_params']:,} shared parameters in {summary['slots']} slots",
            f"data: {data.name}, train {len(data.train)}, val {len(data.val)} "
            f"(trained at {recipe.resolution or data.resolution} px)",
            f"epochs: {trained.epochs_done}/{recipe.epochs}"
            + (" (reused from the cache)" if trained.reused else
               f" in {trained.seconds:.1f}s" + (f", resumed after epoch {trained.resumed_from}"
                                                if trained.resumed_from else "")),
            f"checkpoint: {trained.path}"]
    if history:
        text.append(f"last epoch loss: {history[-1]['loss']:.4f}")
    from nas.cli.common import emit

    emit(args, summary, "\n".join(text))
    return 0


def _missing_verb() -> int:
    raise NasError("`nas supernet` needs a verb: train (see `nas supernet --help`)")


def register(command: CommandAdder) -> None:
    from estimators.data import DATASETS
    from estimators.supernet import SupernetRecipe
    from estimators.supernet.estimator import SupernetOptions
    from estimators.supernet.recipe import SAMPLINGS, STYLE_RECIPE

    def option_help(name: str) -> str:
        """The supernet estimator's help text of a recipe option (`--option NAME=VALUE`)."""
        return next(f.metadata["help"] for f in fields(SupernetOptions) if f.name == name)

    parent = command("supernet", lambda args: _missing_verb(),
                     "weight-sharing supernets: train one per space and data set (cached)")
    verbs = parent.add_subparsers(dest="supernet_command", required=True,
                                  parser_class=type(parent), metavar="VERB")
    help_text = ("train the supernet of a space (sandwich rule with in-place distillation or "
                 "fair sampling, a checkpoint per epoch), or reuse the cached one")
    p = verbs.add_parser("train", help=help_text, description=help_text)
    p.set_defaults(func=cmd_train)
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                   help="machine-readable output")
    p.add_argument("--space", required=True, help="space name or path to a YAML/JSON space file")
    p.add_argument("--data", default="fashion-mnist", choices=DATASETS,
                   help="data set (default fashion-mnist; scikit-learn's digits when it is not "
                        "installed)")
    p.add_argument("--data-dir", default=None, help="folder of the data set")
    p.add_argument("--val-fraction", type=float, default=1 / 6,
                   help="share of the training set held out for validation (default 1/6)")
    defaults = SupernetRecipe()
    p.add_argument("--epochs", type=positive_int, default=None,
                   help=f"epochs (default {defaults.epochs}; one-shot spaces "
                        f"{STYLE_RECIPE['one-shot']['epochs']}; a checkpoint after each)")
    p.add_argument("--train-images", type=int, default=None,
                   help=f"training images drawn per epoch (default {defaults.train_images}; "
                        f"0: the whole split)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help=f"images per step (default {defaults.batch_size})")
    p.add_argument("--lr", type=float, default=None, help=f"peak learning rate "
                                                         f"(default {defaults.lr})")
    p.add_argument("--weight-decay", type=number_in(0, math.inf, "a number >= 0"),
                   default=None, help=f"L2 penalty on conv/linear weights (default "
                                      f"{defaults.weight_decay:g}; one-shot spaces "
                                      f"{STYLE_RECIPE['one-shot']['weight_decay']:g})")
    p.add_argument("--random-subnets", type=int, default=None,
                   help=f"random subnets per step besides the largest and smallest "
                        f"(default {defaults.random_subnets})")
    p.add_argument("--sampling", choices=SAMPLINGS, default=None,
                   help="subnets per step: sandwich (largest, smallest, random; in-place "
                        "distillation), fair (every option of every gene once), uniform, or "
                        "auto (default: sandwich for elastic supernets, fair for one-shot)")
    p.add_argument("--subnets-per-pass", type=positive_int, default=None,
                   help=f"{option_help('subnets_per_pass')}; the batch size must be at "
                        f"least 2 per subnet")
    p.add_argument("--rank-loss", type=number_in(0, math.inf, "a number >= 0"), default=None,
                   help=option_help("rank_loss"))
    p.add_argument("--resolution", type=resolution, default=None,
                   help="training input size: 'data' (default), 'arch' (each subnet's own) or "
                        "pixels")
    p.add_argument("--no-norm-affine", dest="norm_affine", action="store_const", const=False,
                   default=None, help="BatchNorm without scale and shift (held at 1 and 0), as "
                                      "in DARTS's and NAS-Bench-201's own supernets")
    p.add_argument("--no-kernel-transform", action="store_true",
                   help="elastic kernels without OFA's kernel transform matrices")
    p.add_argument("--seed", type=seed, default=0,
                   help="initialisation, data order, subnets and validation split")
    p.add_argument("--workers", type=positive_int, default=1,
                   help="data-parallel Ray Train CPU workers (default 1: in this process)")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join with --workers (default: start one in-process)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its last epoch checkpoint")
    p.add_argument("--retrain", action="store_true",
                   help="train again even when the cache holds this supernet")
    p.add_argument("--cache-dir", default=None,
                   help="where trained supernets live (default $NAS_CACHE_DIR or ~/.cache/nas)")
    p.add_argument("--threads", type=threads, default=None,
                   help="torch threads of this process (default: torch's, one per core; use 1 "
                        "on a machine other work keeps busy)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
