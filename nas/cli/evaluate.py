"""`nas evaluate`: the accuracy of one architecture by an estimator (proxy, train, table)."""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from nas.cli.common import CommandAdder, positive_int, resolution, seed
from search_spaces import Arch, NasError, SearchSpace, get_space


def _pick_arch(space: SearchSpace, args: argparse.Namespace) -> Arch:
    if args.ref is not None:
        refs = space.reference_archs()
        if args.ref not in refs:
            raise NasError(f"unknown reference {args.ref!r} for space {space.name}; "
                           f"known: {', '.join(refs) or 'none'}")
        return refs[args.ref]
    return space.parse(args.arch)


def _progress(args: argparse.Namespace) -> Callable[[int, int, float], None] | None:
    """A tqdm bar on stderr for training, unless --quiet or --json."""
    if args.quiet or args.json:
        return None
    from tqdm import tqdm

    state: dict[str, Any] = {}

    def update(step: int, total: int, loss: float) -> None:
        if "bar" not in state:
            state["bar"] = tqdm(total=total, desc="train", unit="step", file=sys.stderr,
                                leave=False)
        bar = state["bar"]
        bar.update(step - bar.n)
        bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        if step >= total:
            bar.close()

    return update


def cmd_evaluate(args: argparse.Namespace) -> int:
    from estimators.accuracy import make_estimator
    from estimators.registry import get_estimator
    from estimators.train import TrainRecipe

    if args.test and not get_estimator(args.estimator).test_split:
        raise NasError("--test (score on the test split) applies to --estimator train or "
                       "supernet only")
    space = get_space(args.space)
    arch = _pick_arch(space, args)
    data = None
    if get_estimator(args.estimator).needs_data:
        from estimators.data import load_data

        data = load_data(args.data, args.data_dir, val_fraction=args.val_fraction,
                         seed=args.seed)
    recipe = TrainRecipe() if args.estimator != "train" else TrainRecipe(
        epochs=args.epochs, batch_size=args.batch_size or TrainRecipe.batch_size, lr=args.lr,
        train_images=args.train_images, eval_images=args.eval_images)
    estimator = make_estimator(
        args.estimator, space, data=data, table=args.table, column=args.column,
        proxy=args.proxy, batch_size=args.batch_size or 64, recipe=recipe, seed=args.seed,
        split="test" if args.test else "val", resolution=args.resolution,
        progress=_progress(args), cache_dir=args.cache_dir)
    start = time.perf_counter()
    metrics = estimator(arch)
    seconds = time.perf_counter() - start
    payload: dict[str, Any] = {"space": space.name, "key": arch.key, "estimator": estimator.name,
                               **metrics, "seconds": round(seconds, 3)}
    if data is not None:
        payload["data"] = data.summary()
    lines = [arch.key, f"estimator: {metrics['acc_estimator']}"]
    if data is not None:
        summary = data.summary()
        lines.append(f"data: {summary['name']} ({summary['source']}), train {summary['train']}, "
                     f"val {summary['val']}, test {summary['test']}")
    for name, value in metrics.items():
        if name != "acc_estimator":
            lines.append(f"{name}: {value:.6g}" if isinstance(value, float) else f"{name}: {value}")
    lines.append(f"seconds: {seconds:.2f}")
    from nas.cli.common import emit

    emit(args, payload, "\n".join(lines))
    return 0


def register(command: CommandAdder) -> None:
    from estimators.data import DATASETS
    from estimators.proxies import PROXY_NAMES
    from estimators.registry import list_estimators
    from estimators.train import TrainRecipe

    p = command("evaluate", cmd_evaluate,
                "accuracy of one architecture: zero-cost proxies, short training, or a table")
    p.add_argument("--space", required=True, help="space name or path to a YAML/JSON space file")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--arch", help="a key, or the form of the published data (NB201 cell "
                                      "string, ...)")
    group.add_argument("--ref", help="a reference network of the space (see `nas spaces`)")
    p.add_argument("--estimator", required=True, choices=list_estimators())
    p.add_argument("--seed", type=seed, default=0,
                   help="initialisation, batch choice, shuffling and validation split")
    data = p.add_argument_group("data (proxy, train, supernet)")
    data.add_argument("--data", default="fashion-mnist", choices=DATASETS,
                      help="data set (default fashion-mnist; scikit-learn's digits when it "
                           "is not installed)")
    data.add_argument("--data-dir", default=None,
                      help="folder of the data set (fashion-mnist: default "
                           "/usr/share/datasets/fashion-mnist)")
    data.add_argument("--val-fraction", type=float, default=1 / 6,
                      help="share of the training set held out for validation (default 1/6)")
    data.add_argument("--resolution", type=resolution, default=None,
                      help="input size: 'data' (default, the data set's), 'arch' (the "
                           "architecture's own) or pixels")
    data.add_argument("--batch-size", type=positive_int, default=None,
                      help="proxy batch (default 64) or training batch (default 128)")
    proxy = p.add_argument_group("proxy")
    proxy.add_argument("--proxy", default="jacov", choices=PROXY_NAMES,
                       help="the proxy reported as acc (all are reported; default jacov)")
    train = p.add_argument_group("train")
    train.add_argument("--epochs", type=float, default=1.0, help="passes over the train split")
    train.add_argument("--lr", type=float, default=TrainRecipe.lr,
                       help=f"peak learning rate (default {TrainRecipe.lr})")
    train.add_argument("--train-images", type=positive_int, default=None,
                       help="cap on training images per epoch (default all)")
    train.add_argument("--eval-images", type=positive_int, default=None,
                       help="cap on images scored (default the whole split)")
    train.add_argument("--test", action="store_true",
                       help="score on the test split (final reports only; train, supernet)")
    supernet = p.add_argument_group("supernet")
    supernet.add_argument("--cache-dir", default=None,
                          help="where `nas supernet train` cached the trained supernet "
                               "(default: its cache)")
    table = p.add_argument_group("table")
    table.add_argument("--table", default=None, help="CSV with an 'arch' column")
    table.add_argument("--column", default=None,
                       help="column read as acc (default 'acc' or the only 'acc...' column)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

