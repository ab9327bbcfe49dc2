"""`nas latency ...`: build, predict, validate, measure, fit, import and list latency devices."""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from nas.cli import common as cli_types
from nas.cli.common import positive_int
from nas.text_table import format_table
from search_spaces import NasError, get_space

Command = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


def _emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    from nas.cli.common import emit

    emit(args, payload, text)


def _progress(args: argparse.Namespace, label: str,
              unit: str = "block") -> Callable[[int, int], None] | None:
    """A tqdm bar on stderr (None with --quiet or --json)."""
    if args.quiet or args.json:
        return None
    from tqdm import tqdm

    bar: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(total=total, desc=label, unit=unit, file=sys.stderr)
        bar["bar"].update(done - bar["bar"].n)
        if done >= total:
            bar["bar"].close()

    return update


def _profiler(args: argparse.Namespace):
    from estimators.latency import Profiler

    return Profiler(args.device, args.threads, args.batch_size, args.dtype, args.clock,
                    getattr(args, "cuda_graphs", False), high_priority=args.high_priority)


# --- commands ---------------------------------------------------------------------------------
def cmd_build(args: argparse.Namespace) -> int:
    from estimators.latency import LatencyStore, build_table

    if args.device not in ("cpu", "cuda"):
        raise NasError(f"--device for build must be cpu or cuda (this machine), "
                       f"got {args.device!r}")
    space = get_space(args.space)
    profiler = _profiler(args)
    if args.rounds < 1 or args.passes < 1:
        raise NasError(f"--rounds and --passes must be at least 1, got {args.rounds} and "
                       f"{args.passes}")
    profiler.plan = replace(profiler.plan, rounds=args.rounds)
    store = LatencyStore(cache_dir=args.cache_dir)
    report = build_table(space, profiler, store, args.classes, args.calibration, args.seed,
                         _progress(args, f"measuring {space.name} blocks"), args.passes)
    payload = {**report.as_dict(), "store": str(store.path)}
    c = report.correction
    text = (f"{report.entries} entries for {report.fingerprint} (batch {report.batch_size}, "
            f"{report.dtype}) in {store.path}\n"
            f"space {space.name}: {report.distinct_blocks} distinct blocks ({report.enumeration}), "
            f"{report.measured} measured now in {report.seconds:.0f} s")
    if c:
        text += (f"\ncorrection from {int(c['networks'])} whole networks: latency = "
                 f"{c['overhead_ms']:.3f} ms + {c['scale']:.3f} x sum(blocks) "
                 f"(worst fit error {100 * c['max_rel_error']:.1f}%)")
    _emit(args, payload, text)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from estimators.flops import analytical_cost
    from estimators.latency import open_predictor

    space = get_space(args.space)
    arch = space.parse(args.arch)
    predictor = open_predictor(space, args.device, cache_dir=args.cache_dir,
                               batch_size=args.batch_size, dtype=args.dtype, threads=args.threads,
                               clock=args.clock, num_classes=args.classes,
                               measure_missing=not args.no_measure)
    start = time.perf_counter()
    latency = float(predictor.latency_ms(arch))
    cost_ms = (time.perf_counter() - start) * 1e3
    payload: dict[str, Any] = {"space": space.name, "key": arch.key, "device": args.device,
                               "latency_ms": latency,
                               "flops": float(analytical_cost(arch, args.classes).macs),
                               "predictor": predictor.describe(),
                               "prediction_cost_ms": cost_ms}
    text = f"{arch.key}\nlatency on {args.device}: {latency:.3f} ms"
    if hasattr(predictor, "block_ms"):
        layers = [{"name": s.name, "op": s.op, "in_shape": "x".join(map(str, s.in_shape)),
                   "latency_ms": ms} for s, ms in predictor.block_ms(arch)]
        payload["layers"] = layers
        c = predictor.correction
        total = sum(r["latency_ms"] for r in layers)
        text += (f" = {c.overhead_ms:.3f} + {c.scale:.3f} x {total:.3f}"
                 f" (sum of {len(layers)} blocks)")
        if args.layers:
            text += "\n\n" + format_table(layers, ["name", "op", "in_shape", "latency_ms"])
    _emit(args, payload, text)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from estimators.latency import LatencyStore, open_predictor
    from estimators.latency.validate import validate, write_csv, write_scatter

    if args.device != "cpu" and args.device != "cuda":
        raise NasError("validate measures on this machine: --device cpu or cuda")
    space = get_space(args.space)
    profiler = _profiler(args)
    table = None
    store = LatencyStore(cache_dir=args.cache_dir)
    if store.correction(profiler.fingerprint.key, space.name, args.batch_size, args.dtype):
        table = open_predictor(space, args.device, cache_dir=args.cache_dir,
                               batch_size=args.batch_size, dtype=args.dtype,
                               threads=args.threads, clock=args.clock, num_classes=args.classes)
    result = validate(space, profiler, args.n, args.calibration, args.passes, args.seed,
                      args.classes, table, _progress(args, "measuring networks", "network"))
    out = Path(args.out or Path("results") / "latency" / f"validate-{space.name}")
    write_csv(result.rows, out / "validation.csv")
    write_scatter(result.rows, out / "validation.png",
                  f"{space.name}: {args.n} networks, {profiler.fingerprint.model}")
    payload = {**result.as_dict(), "csv": str(out / "validation.csv"),
               "png": str(out / "validation.png")}
    rows = [{"predictor": "blocks + correction (interleaved)", **result.interleaved},
            {"predictor": "FLOPs-only linear", **result.flops_baseline}]
    if result.table:
        rows.insert(1, {"predictor": "stored table + stored correction", **result.table})
    _emit(args, payload, _accuracy_table(rows) + f"\n\nwrote {out / 'validation.csv'} and "
          f"{out / 'validation.png'}")
    return 0


def cmd_measure(args: argparse.Namespace) -> int:
    from estimators.latency.measure import measure_random, write_measurements

    if args.device not in ("cpu", "cuda"):
        raise NasError(f"measure times networks on this machine: --device cpu or cuda, "
                       f"got {args.device!r}")
    if Path(args.out).is_dir():
        raise NasError(f"--out {args.out} is a folder; give a CSV file name")
    space = get_space(args.space)
    profiler = _profiler(args)
    measured = measure_random(space, profiler, args.n, args.seed, args.passes, args.classes,
                              _progress(args, "timing networks", "timing"))
    path = write_measurements(measured, args.out)
    ms = sorted(measured.latency_ms)
    payload = {**measured.settings, "n": len(ms), "csv": str(path),
               "seconds": measured.seconds, "median_ms": ms[len(ms) // 2],
               "min_ms": ms[0], "max_ms": ms[-1]}
    _emit(args, payload,
          f"timed {len(ms)} {space.name} networks on {profiler.fingerprint.key} (batch "
          f"{profiler.batch_size}, {profiler.dtype_name}) in {measured.seconds:.1f} s: "
          f"{ms[0]:.3f} .. {ms[-1]:.3f} ms\nwrote {path}; fit it with `nas latency fit --space "
          f"{space.name} --measurements {path} --column latency_ms --train {len(ms)} "
          f"--name NAME`")
    return 0


def _accuracy_table(rows: list[dict[str, Any]]) -> str:
    shown = [{"predictor": r["predictor"], "n": r["n"],
              "within 5%": f"{100 * r['within_5pct']:.1f}%",
              "within 10%": f"{100 * r['within_10pct']:.1f}%", "MAPE": f"{r['mape']:.2f}%",
              "Kendall tau": f"{r['kendall_tau']:.3f}"} for r in rows]
    return format_table(shown)


def cmd_fit(args: argparse.Namespace) -> int:
    from estimators.latency.fit_cli import fit_from_csv

    space = get_space(args.space)
    result = fit_from_csv(space, args.measurements, args.column, args.train, args.arch_column,
                          args.name, args.seed, args.cache_dir, args.classes, args.method,
                          args.save_as_reference)
    if result["method"] == "fewshot" and not result["test_rows"]:
        rows, detail = [], ""
    elif result["method"] == "fewshot":
        rows = [{"predictor": f"few-shot ({len(result['references'])} reference devices)",
                 **result}]
        detail = f", Spearman {result['spearman']:.3f}"
    else:
        rows = [{"predictor": f"fitted ({result['feature_set']})", **result},
                {"predictor": "FLOPs-only linear", **result["flops_baseline"]}]
        detail = ""
    table = ("\n" + _accuracy_table(rows)) if rows else " (all rows train: none held out)"
    text = (f"{result['device']}: trained on {result['train_rows']} rows, tested on "
            f"{result['test_rows']}{detail}" + table +
            f"\n\nsaved as device {result['device']!r} ({result['path']}); use "
            f"--device {result['device']} with --space {space.name}")
    if result["reference"]:
        text += f"\nadded as a reference device of {space.name} ({result['reference']})"
    _emit(args, result, text)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from estimators.latency import import_lut

    result = import_lut(args.file, args.name, args.format, args.batch_size, args.cache_dir,
                        replace=args.replace)
    _emit(args, result, f"imported {result['entries']} {result['format']} entries as device "
                        f"{args.name!r} (overhead {result['overhead_ms']:.3f} ms)")
    return 0


def _spaces(device: dict[str, Any]) -> list[str]:
    """A fitted device's spaces, few-shot ones marked."""
    models = device.get("models", {})
    return [f"{name} (few-shot)" if isinstance(m, dict) and isinstance(m.get("model"), dict)
            and m["model"].get("kind") == "fewshot" else str(name)
            for name, m in (models.items() if isinstance(models, dict) else [])]


def cmd_devices(args: argparse.Namespace) -> int:
    from estimators.latency import LatencyStore, list_devices

    store = LatencyStore(cache_dir=args.cache_dir)
    named = list_devices(args.cache_dir)
    rows = [{"device": name, "kind": d.get("kind", "?"),
             "detail": (d.get("format", "") + f" {d.get('entries', '')} entries").strip()
             if d.get("kind") == "lut" else "spaces: " + ", ".join(_spaces(d))}
            for name, d in named.items()]
    tables = store.summary()
    payload = {"store": str(store.path), "tables": tables, "devices": named}
    text = (f"measured tables in {store.path}:\n"
            + (format_table(tables) if tables else "(none)") + "\n\nnamed devices:\n"
            + (format_table(rows) if rows else "(none)"))
    _emit(args, payload, text)
    return 0


# --- parser -----------------------------------------------------------------------------------
def _local_options(p: argparse.ArgumentParser, device_help: str) -> None:
    p.add_argument("--device", default="cpu", help=device_help)
    p.add_argument("--batch-size", type=positive_int, default=1)
    p.add_argument("--threads", type=cli_types.threads, default=None,
                   help="CPU threads (default 1)")
    p.add_argument("--dtype", default="float32", help="float32, bfloat16 or (cuda) float16")
    p.add_argument("--clock", default=None,
                   help="thread (CPU time of the timing thread; default with 1 thread) or wall")
    p.add_argument("--high-priority", action="store_true",
                   help="measure at niceness -20 where permitted (fewer pre-emptions)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-dir", default=None,
                   help="where tables and devices live (default $NAS_CACHE_DIR or ~/.cache/nas)")
    p.add_argument("--classes", type=cli_types.classes, default=None,
                   help="classifier outputs (space default)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                   help="machine-readable output")


def register(command: Command) -> None:
    parent = command("latency", lambda args: _missing_verb(), "hardware latency: build tables, "
                     "predict, validate, fit devices from measurements, import published tables")
    verbs = parent.add_subparsers(dest="latency_command", required=True,
                                  parser_class=type(parent), metavar="VERB")

    def verb(name: str, func: Callable[[argparse.Namespace], int], help: str):
        p = verbs.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        _common(p)
        return p

    p = verb("build", cmd_build, "measure the missing blocks of a space on this machine and fit "
             "the whole-network correction (resumable)")
    p.add_argument("--space", required=True)
    _local_options(p, "cpu or cuda")
    p.add_argument("--cuda-graphs", action="store_true", help="time CUDA graph replays")
    p.add_argument("--calibration", type=cli_types.non_negative_int, default=12,
                   help="whole networks measured to fit the correction (default 12)")
    p.add_argument("--rounds", type=positive_int, default=7,
                   help="timed rounds per block (median and min over them; default 7)")
    p.add_argument("--passes", type=positive_int, default=3,
                   help="interleaved passes per calibration network (default 3)")
    p.add_argument("--seed", type=cli_types.seed, default=0)

    p = verb("predict", cmd_predict, "predicted latency of one architecture on a device")
    p.add_argument("--space", required=True)
    p.add_argument("--arch", required=True, help="a key or a published form (see nas describe)")
    _local_options(p, "cpu, cuda, or a fitted/imported device name")
    p.add_argument("--layers", action="store_true", help="show the per-block table")
    p.add_argument("--no-measure", action="store_true",
                   help="fail instead of measuring blocks missing from the table")

    p = verb("validate", cmd_validate, "measure random networks end to end (interleaved with "
             "their blocks) against the predictions; writes a CSV and a scatter plot")
    p.add_argument("--space", required=True)
    p.add_argument("-n", type=positive_int, default=100, help="test networks (default 100)")
    p.add_argument("--calibration", type=cli_types.non_negative_int, default=20,
                   help="extra networks the correction is fitted on (default 20)")
    p.add_argument("--passes", type=positive_int, default=3,
                   help="interleaved passes per network")
    p.add_argument("--seed", type=cli_types.seed, default=0)
    p.add_argument("--out", default=None,
                   help="output folder (default results/latency/validate-SPACE)")
    _local_options(p, "cpu or cuda")

    p = verb("measure", cmd_measure, "time N random whole networks of a space on this "
             "machine; writes a CSV (arch, latency_ms) for `nas latency fit`")
    p.add_argument("--space", required=True)
    p.add_argument("-n", "--n", type=positive_int, default=10,
                   help="networks to time (default 10)")
    p.add_argument("--out", required=True, help="CSV file to write")
    p.add_argument("--passes", type=positive_int, default=3,
                   help="passes over all networks, in alternation (median; default 3)")
    p.add_argument("--seed", type=cli_types.seed, default=0)
    _local_options(p, "cpu or cuda")

    p = verb("fit", cmd_fit, "learn a device from whole-network latencies measured on it "
             "(CSV), evaluate on the rows not used, save it as a device name")
    p.add_argument("--space", required=True)
    p.add_argument("--measurements", required=True, help="CSV with an architecture column")
    p.add_argument("--column", required=True, help="the latency column (ms)")
    p.add_argument("--train", type=positive_int, required=True,
                   help="rows to train on (random, seeded)")
    p.add_argument("--arch-column", default="arch")
    p.add_argument("--name", default=None,
                   help="device name to save (default: the column without 'latency_ms_')")
    p.add_argument("--seed", type=cli_types.seed, default=0)
    p.add_argument("--method", choices=("auto", "fewshot", "network"), default="auto",
                   help="fewshot: from the space's reference devices (any --train >= 3); "
                        "network: whole-network features (--train >= 10); auto (default): "
                        "fewshot when --train < 30 and the space has reference devices")
    p.add_argument("--save-as-reference", action="store_true",
                   help="also add the file's measured column to your reference devices of "
                        "the space (used by later few-shot fits)")

    p = verb("import", cmd_import, "import a published per-operator lookup table as a device")
    p.add_argument("file", help="TF-NAS JSON or ProxylessNAS YAML")
    p.add_argument("--name", required=True, help="device name to save it as")
    p.add_argument("--format", default=None, help="tfnas or proxyless (default: detected)")
    p.add_argument("--batch-size", type=positive_int, default=1,
                   help="batch size the table was measured at")
    p.add_argument("--replace", action="store_true",
                   help="replace an existing device of this name wholly (without it, an "
                        "existing name is refused: the two tables would mix)")

    verb("devices", cmd_devices, "list measured tables and named devices")


def _missing_verb() -> int:
    raise NasError("latency needs a verb: build, predict, validate, measure, fit, import or "
                   "devices")
