"""`nas search` against a real `ray start --head` cluster on 127.0.0.1.

Starts a head node in its own session (`ray start --head --block`), runs a small search twice
against it: once joined with `--address HOST:PORT`, once through RAY_ADDRESS alone (what
`ray job submit -- nas search ...` gives the entrypoint), checks from each run's summary that
the search ran on that cluster, then stops the head by process id: SIGTERM to the `ray start`
process, then SIGKILL to any process it started that is still alive (found by walking
/proc: Linux only). Prints the figures and what was cleaned up.

    python bench/search_cluster.py [--trials 16] [--workers 2]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, session id), from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        table[int(entry.name)] = (int(fields[1]), int(fields[3]))
    return table


def started_by(root: int) -> set[int]:
    """Every live process descending from `root` or in its session (Ray daemons re-parent)."""
    table = proc_table()
    found = {pid for pid, (_, sid) in table.items() if sid == root}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _) in table.items():
            if ppid == parent and pid not in found:
                found.add(pid)
                frontier.append(pid)
    found.discard(root)
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"no Ray head on 127.0.0.1:{port} after {timeout:.0f}s")


def search(argv: list[str], env: dict[str, str], out: Path) -> tuple[dict, dict, float]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "nas", "search", *argv, "--out", str(out),
                           "--json", "--quiet"], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=900)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"nas search failed ({proc.returncode}): {proc.stderr[-2000:]}")
    summary = json.loads((out / "summary.json").read_text())
    return json.loads(proc.stdout), summary, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    port = free_port()
    # Loopback only: with Ray's cluster mode off the head keeps 127.0.0.1 instead of swapping
    # in the machine's address (see estimators/ray_local.py), so auth may stay off.
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(["ray", "start", "--head", "--block", "--port", str(port),
                             "--node-ip-address", "127.0.0.1", "--num-cpus", str(args.workers),
                             "--include-dashboard=false", "--disable-usage-stats"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    address = f"127.0.0.1:{port}"
    common = ["--space", "nb201", "--budget", "60M-flops", "--estimator", "proxy",
              "--option", 'proxies=["jacov"]', "--option", "batch_size=16", "--data", "digits",
              "--trials", str(args.trials), "--workers", str(args.workers), "--no-anchors"]
    children: set[int] = set()
    try:
        start = time.perf_counter()
        wait_for_port(port, 120)
        print(f"ray start --head on {address}: pid {head.pid}, port open after "
              f"{time.perf_counter() - start:.1f}s")
        with tempfile.TemporaryDirectory() as tmp:
            joined, summary, seconds = search(common + ["--address", address], env,
                                              Path(tmp) / "address")
            runner = summary["runner"]
            print(f"--address {address}: {joined['trials']} trials in {seconds:.1f}s "
                  f"(process total), runner {runner['runner']} at {runner['address']}, "
                  f"{runner['workers']} workers, front {len(joined['pareto'])}, "
                  f"hypervolume {joined['hypervolume']:.4f}")
            # GCS reports the node's own address; the port says which cluster it is.
            assert runner["runner"] == "ray" and runner["address"].endswith(f":{port}"), runner
            job_env = {**env, "RAY_ADDRESS": address}
            as_job, summary2, seconds2 = search(common, job_env, Path(tmp) / "job")
            print(f"RAY_ADDRESS={address} (the `ray job submit` entrypoint's view): "
                  f"{as_job['trials']} trials in {seconds2:.1f}s, runner at "
                  f"{summary2['runner']['address']}")
            assert summary2["runner"]["address"].endswith(f":{port}"), summary2["runner"]
            same = [r["key"] for r in joined["pareto"]] == [r["key"] for r in as_job["pareto"]]
            print(f"same front both ways (same seed): {same}")
        children = started_by(head.pid)
    finally:
        children |= started_by(head.pid)
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops its processes on SIGTERM
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.kill(head.pid, signal.SIGKILL)
            head.wait()
        time.sleep(1.0)
        leftover = sorted(pid for pid in children if alive(pid))
        for pid in leftover:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        still = [pid for pid in leftover if alive(pid)]
        # `ray start` records its cluster for later bare ray.init() calls; `ray stop` would
        # remove the record, but it stops every cluster: remove only the one naming ours.
        record = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        if record.is_file() and record.read_text().strip().endswith(f":{port}"):
            record.unlink()
        print(f"cleanup: ray start pid {head.pid} exited {head.returncode}; "
              f"{len(children)} processes it started, {len(leftover)} still alive after "
              f"SIGTERM and killed by pid, {len(still)} left")
    return 0


if __name__ == "__main__":
    sys.exit(main())
