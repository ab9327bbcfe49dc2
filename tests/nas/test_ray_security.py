"""The Ray instance the engine starts is reachable from this machine only, and a cluster joined
with --address or RAY_ADDRESS keeps the user's own authentication settings.

The listening sockets are read with psutil (Ray bundles it) from the process tree: the driver,
the GCS server, the raylet, its agents and the worker/actor processes are all descendants."""
from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import ray

from estimators import ray_local
from nas.runners import RunnerError, init_ray

REPO = Path(__file__).resolve().parents[2]


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    if address.version == 6 and address.ipv4_mapped is not None:  # ::ffff:127.0.0.1
        address = address.ipv4_mapped
    return address.is_loopback


def listeners(root: psutil.Process) -> dict[tuple[str, int], str]:
    """Every listening TCP socket of `root` and its descendants: {(ip, port): process}."""
    found = {}
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return found
    for proc in procs:
        try:
            name = " ".join(proc.cmdline()[:1]) or proc.name()
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    found[(conn.laddr.ip, conn.laddr.port)] = f"{proc.pid} {name}"
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def exposed(found: dict[tuple[str, int], str]) -> list[str]:
    return [f"{ip}:{port} ({who})" for (ip, port), who in sorted(found.items())
            if not is_loopback(ip)]


def test_loopback_check():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("::ffff:127.0.0.1")
    assert not is_loopback("::") and not is_loopback("0.0.0.0")
    assert not is_loopback("192.0.2.2") and not is_loopback("::ffff:192.0.2.2")


def test_search_listens_on_loopback_only(tmp_path):
    """A real `nas search` on Ray: while its EvalWorker actor is evaluating, every socket its
    processes listen on is a loopback one (before the fix: 7 of 7 on `*` or the host's
    address), and the token-less embedded instance leaves no token file behind."""
    run_dir, home = tmp_path / "run", tmp_path / "home"
    home.mkdir()
    argv = [sys.executable, "-m", "nas", "search", "--space", "nb201", "--budget", "60M-flops",
            "--estimator", "proxy", "--option", "proxies=[\"jacov\"]", "--option",
            "batch_size=16", "--data", "digits", "--trials", "100000", "--time-limit", "300",
            "--batch-size", "2", "--workers", "1", "--no-anchors", "--quiet", "--out",
            str(run_dir)]
    # A user who set nothing: no cluster to join, Ray's own authentication default.
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    env.update(PYTHONPATH=str(REPO), HOME=str(home), RAY_USAGE_STATS_ENABLED="0")
    stderr_path = tmp_path / "stderr.txt"
    seen: dict[tuple[str, int], str] = {}
    tree: dict[int, psutil.Process] = {}
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                stderr=stderr)
    root = psutil.Process(proc.pid)
    try:
        worker_listening = evaluated = False
        deadline = time.monotonic() + 240
        # Until the actor listens and has finished evaluations (so the instance is whole),
        # then one more look: no dependence on how long the search would run by itself.
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                tree.update({p.pid: p for p in root.children(recursive=True)})
            except psutil.NoSuchProcess:
                break
            now = listeners(root)
            seen.update(now)
            if worker_listening and evaluated:
                break
            worker_listening = any("EvalWorker" in who for who in now.values())
            evaluated = (run_dir / "batch.json").is_file() or \
                (run_dir / "checkpoint.json").is_file()
            time.sleep(0.2)
        assert proc.poll() is None, stderr_path.read_text()[-3000:]
        assert worker_listening and evaluated, "the search never reached its Ray worker"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # the search shuts its Ray instance down
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        _, alive = psutil.wait_procs(list(tree.values()), timeout=15)
        for leftover in alive:  # only processes of this search, by pid
            try:
                leftover.kill()
            except psutil.NoSuchProcess:
                pass
    assert seen, "no listening socket seen: the check saw nothing"
    assert any("EvalWorker" in who for who in seen.values())
    assert not exposed(seen), f"Ray listens beyond loopback: {exposed(seen)}"
    assert not (home / ".ray" / "auth_token").exists()


def test_session_instance_listens_on_loopback_only(ray_session):
    """The tests' own shared instance (conftest) is loopback-only too."""

    class Pinger:  # defined here: shipped by value, the workers cannot import this module
        def pid(self) -> int:
            return os.getpid()

    actor = ray_session.remote(num_cpus=0)(Pinger).remote()
    assert ray_session.get(actor.pid.remote()) > 0
    found = listeners(psutil.Process())
    try:
        assert any("Pinger" in who for who in found.values()), found
        assert not exposed(found), f"Ray listens beyond loopback: {exposed(found)}"
    finally:
        ray_session.kill(actor)


# --- init_ray's arguments, without starting anything ----------------------------------------------
@pytest.fixture
def fake_ray(monkeypatch):
    """ray.init records its arguments and the environment it saw; nothing starts."""
    from ray._private import ray_constants

    calls = []

    def init(**kwargs):
        calls.append({"kwargs": kwargs, "auth": os.environ.get("RAY_AUTH_MODE"),
                      "cluster_mode": ray_constants.ENABLE_RAY_CLUSTER})

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: calls.append("shutdown"))
    monkeypatch.setattr(ray.util, "get_node_ip_address", lambda: "127.0.0.1")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    return calls


def test_local_instance_is_loopback_with_auth_off_for_the_start_only(fake_ray):
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    assert init_ray() is True
    (call,) = fake_ray
    assert call["kwargs"]["address"] == "local"
    assert call["kwargs"]["_node_ip_address"] == "127.0.0.1"
    assert call["kwargs"]["include_dashboard"] is False
    assert call["cluster_mode"] is False  # else Ray swaps 127.0.0.1 for the host's address
    assert call["auth"] == "disabled"
    assert ray_constants.ENABLE_RAY_CLUSTER == before
    assert "RAY_AUTH_MODE" not in os.environ  # the user's environment, as it was


def test_local_instance_keeps_a_users_auth_mode(fake_ray, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    init_ray("local")
    assert fake_ray[0]["kwargs"]["address"] == "local" and fake_ray[0]["auth"] == "token"
    assert os.environ["RAY_AUTH_MODE"] == "token"


def test_a_local_instance_off_loopback_is_refused(fake_ray, monkeypatch):
    monkeypatch.setattr(ray.util, "get_node_ip_address", lambda: "192.0.2.2")
    with pytest.raises(RunnerError, match="not on a loopback address"):
        init_ray()
    assert fake_ray[-1] == "shutdown"


@pytest.mark.parametrize("mode", [None, "token"])
def test_a_cluster_is_joined_with_the_users_auth_settings(fake_ray, monkeypatch, mode):
    if mode is not None:
        monkeypatch.setenv("RAY_AUTH_MODE", mode)
    assert init_ray("head:6379") is True
    monkeypatch.setenv("RAY_ADDRESS", "http://head:8265")  # what `ray job submit` gives
    assert init_ray() is True
    ray_local.ensure_ray("head:6379")
    ray_local.ensure_ray()
    assert [c["kwargs"]["address"] for c in fake_ray] == ["head:6379", None, "head:6379", None]
    assert all(c["auth"] == mode and c["cluster_mode"] is True for c in fake_ray)
    assert all("_node_ip_address" not in c["kwargs"] for c in fake_ray)


def test_supernet_training_starts_the_same_loopback_instance(fake_ray):
    ray_local.ensure_ray()
    (call,) = fake_ray
    assert call["kwargs"]["address"] == "local"
    assert call["kwargs"]["_node_ip_address"] == "127.0.0.1" and call["cluster_mode"] is False
