"""Runners: map a batch of architectures (by key) to their metrics.

`LocalRunner` evaluates in this process. `RayRunner` evaluates on Ray actors, each holding its
own `Evaluator` built from the plain config; the heavy shared objects (data, supernet weights)
are put in the object store once and every actor, replacements included, gets that one
reference. A task whose actor dies is put back in the queue and run by another actor, and the
dead actor is replaced; results already returned are kept. Both runners return results in the
order of the keys, so the same seed gives the same search whatever runs it.
"""
from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from nas.evaluation import Evaluator, Metrics, Shared, one_line
from search_spaces import NasError

OnResult = Callable[[int, Metrics], None]
MAX_RETRIES = 3  # attempts after the first, per architecture, when its worker dies


class RunnerError(NasError):
    """The runner cannot run (no Ray cluster at the address, too few CPUs, workers lost)."""


class Runner(Protocol):
    workers: int

    def evaluate(self, keys: Sequence[str], on_result: OnResult | None = None) -> list[Metrics]:
        """Metrics of each key, in order; `on_result(index, metrics)` as each one finishes."""

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class LocalRunner:
    """Evaluates in this process, one architecture at a time."""

    workers = 1

    def __init__(self, config: Mapping[str, Any], shared: Shared | None = None,
                 evaluator: Evaluator | None = None):
        self.evaluator = evaluator if evaluator is not None else Evaluator(config, shared)

    def evaluate(self, keys: Sequence[str], on_result: OnResult | None = None) -> list[Metrics]:
        results = []
        for index, key in enumerate(keys):
            metrics = self.evaluator.evaluate_key(key)
            results.append(metrics)
            if on_result is not None:
                on_result(index, metrics)
        return results

    def describe(self) -> dict[str, Any]:
        return {"runner": "local", "workers": 1}

    def close(self) -> None:
        pass


# --- Ray ----------------------------------------------------------------------------------------
def init_ray(address: str | None = None) -> bool:
    """Connect to Ray: `address` (HOST:PORT or `auto`) joins a running cluster; without it,
    RAY_ADDRESS (set by `ray job submit`) is honoured, else a local instance starts inside this
    process, reachable from this machine only (`start_local_ray`: every Ray listener on
    127.0.0.1, token authentication off unless RAY_AUTH_MODE says otherwise). A cluster is
    joined with the caller's environment as it is: its RAY_AUTH_MODE and token are never
    overridden. Returns True when this call started the connection (so it should end it)."""
    import ray

    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
    joining = address != "local" and bool(address or os.environ.get("RAY_ADDRESS"))
    try:
        if joining:
            # address=None reads RAY_ADDRESS
            ray.init(address=address or None, **quiet)
        else:
            # A new instance even where `ray start` left a (maybe stale) cluster file behind,
            # which a bare ray.init() would try to join.
            from estimators.ray_local import start_local_ray

            start_local_ray(**quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = (address or os.environ.get("RAY_ADDRESS")) if joining else "a new local instance"
        raise RunnerError(f"cannot start Ray on {where}: {one_line(exc)}; start a cluster with "
                          f"`ray start --head` and pass --address HOST:PORT, or omit "
                          f"--address to run Ray inside this process") from None
    return True


class EvalWorker:
    """A Ray actor's state: one Evaluator. Construction errors are kept and reported per
    evaluation (as `error`), so a bad config fails the trials, not the actor loop."""

    def __init__(self, config: Mapping[str, Any], shared: Shared):
        import torch

        torch.set_num_threads(int(config.get("threads", 1)))
        self.error: str | None = None
        try:
            self.evaluator: Evaluator | None = Evaluator(config, shared)
        except Exception as exc:
            self.evaluator, self.error = None, one_line(exc)

    def pid(self) -> int:
        return os.getpid()

    def evaluate(self, key: str) -> Metrics:
        if self.evaluator is None:
            return {"error": self.error}
        return self.evaluator.evaluate_key(key)


_REMOTE_WORKER: Any = None


def run_pool(jobs: list[Any], limit: int, submit: Callable[[Any], tuple[Any, int]],
             save: Callable[[int, Any], None]) -> None:
    """Keep at most `limit` Ray tasks in flight: `submit(job)` starts one and returns (its
    ObjectRef, the job's index); `save(index, result)` is called as each task finishes."""
    import ray

    pending: dict[Any, int] = {}
    queue = list(jobs)
    while queue or pending:
        while queue and len(pending) < limit:
            ref, index = submit(queue.pop(0))
            pending[ref] = index
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            save(pending.pop(ref), ray.get(ref))


def _remote_worker() -> Any:
    global _REMOTE_WORKER
    if _REMOTE_WORKER is None:
        import ray

        # max_restarts=0: a dead actor stays dead; the runner retries its task elsewhere.
        _REMOTE_WORKER = ray.remote(max_restarts=0)(EvalWorker)
    return _REMOTE_WORKER


class RayRunner:
    """Evaluates on `workers` Ray actors (one CPU each unless `cpus_per_worker` says)."""

    def __init__(self, config: Mapping[str, Any], shared: Shared, workers: int | None = None,
                 address: str | None = None, cpus_per_worker: float = 1.0,
                 max_retries: int = MAX_RETRIES):
        self.started_ray = init_ray(address)
        import ray

        total = float(ray.cluster_resources().get("CPU", 0.0))
        capacity = int(total // cpus_per_worker)
        if workers is None:
            workers = max(1, capacity)
        if workers < 1:
            raise RunnerError(f"--workers must be at least 1 for Ray (0 runs in this process), "
                              f"got {workers}")
        if workers > capacity:
            self.close()
            raise RunnerError(f"the Ray cluster has {total:g} CPUs: at most {capacity} workers "
                              f"of {cpus_per_worker:g} CPU, not {workers}")
        self.config = dict(config)
        self.workers = workers
        self.cpus_per_worker = cpus_per_worker
        self.max_retries = max_retries
        # Put once: every actor (replacements too) gets this same reference, never a copy.
        self.shared_ref = ray.put(shared)
        self.retries = 0
        self.replaced = 0
        self.pids: dict[Any, int] = {}
        self.actors: list[Any] = []
        self._busy: list[Any] = []
        self._start(workers)

    def _start(self, count: int) -> list[Any]:
        import ray

        new = [_remote_worker().options(num_cpus=self.cpus_per_worker)
               .remote(self.config, self.shared_ref) for _ in range(count)]
        try:
            pids = ray.get([a.pid.remote() for a in new])
        except ray.exceptions.RayError as exc:
            raise RunnerError(f"cannot start Ray workers: {one_line(exc)}") from None
        for actor, pid in zip(new, pids):
            self.pids[actor] = pid
        self.actors.extend(new)
        return new

    def worker_pids(self) -> list[int]:
        return [self.pids[a] for a in self.actors]

    def busy_pids(self) -> list[int]:
        """Process ids of the actors evaluating right now (for fault-injection tests)."""
        return [self.pids[a] for a in self._busy]

    def evaluate(self, keys: Sequence[str], on_result: OnResult | None = None) -> list[Metrics]:
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        results: list[Metrics | None] = [None] * len(keys)
        queue: deque[tuple[int, int]] = deque((i, 0) for i in range(len(keys)))
        inflight: dict[Any, tuple[int, int, Any]] = {}
        idle = list(self.actors)
        self._busy = []

        def finish(index: int, metrics: Metrics) -> None:
            results[index] = metrics
            if on_result is not None:
                on_result(index, metrics)

        while queue or inflight:
            while queue and idle:
                index, tries = queue.popleft()
                actor = idle.pop(0)
                inflight[actor.evaluate.remote(keys[index])] = (index, tries, actor)
                self._busy.append(actor)
            if not inflight:  # every worker is gone and none could be started
                raise RunnerError("no Ray worker is left to evaluate on; the evaluations "
                                  "done so far are saved")
            ready, _ = ray.wait(list(inflight), num_returns=1)
            ref = ready[0]
            index, tries, actor = inflight.pop(ref)
            self._busy.remove(actor)
            try:
                metrics = ray.get(ref)
            except RayActorError as exc:
                idle.extend(self._replace(actor))
                self.retries += 1
                if tries < self.max_retries:
                    queue.appendleft((index, tries + 1))  # first in line for the next worker
                else:
                    finish(index, {"error": f"its worker died {tries + 1} times "
                                            f"({one_line(exc)[:120]})"})
                continue
            except RayTaskError as exc:  # a bug in the worker, not in the arch's estimate
                metrics = {"error": one_line(exc)}
            idle.append(actor)
            finish(index, metrics)
        self._busy = []
        return [r if r is not None else {"error": "not evaluated"} for r in results]

    def _replace(self, dead: Any) -> list[Any]:
        """Drop a dead actor and start another in its place (on any node with room)."""
        import ray

        if dead in self.actors:
            self.actors.remove(dead)
            self.pids.pop(dead, None)
            ray.kill(dead, no_restart=True)
        if self.replaced >= 4 * self.workers + 4:
            raise RunnerError(f"Ray workers keep dying ({self.replaced} replaced); "
                              f"the evaluations done so far are saved")
        self.replaced += 1
        return self._start(1)

    def describe(self) -> dict[str, Any]:
        import ray

        context = ray.get_runtime_context()
        return {"runner": "ray", "workers": self.workers, "cpus_per_worker": self.cpus_per_worker,
                "address": getattr(context, "gcs_address", None), "retries": self.retries,
                "replaced": self.replaced}

    def close(self) -> None:
        import ray

        if ray.is_initialized():
            for actor in getattr(self, "actors", []):
                ray.kill(actor, no_restart=True)
            self.actors = []
            if self.started_ray:
                ray.shutdown()


def make_runner(config: Mapping[str, Any], shared: Shared, workers: int | None,
                address: str | None = None, evaluator: Evaluator | None = None) -> Runner:
    """`workers == 0`: in this process; otherwise Ray (embedded, or the cluster at `address`;
    None: one worker per CPU of the cluster), whose workers leave latency to the caller."""
    if workers == 0:
        if address:
            raise RunnerError("--address joins a Ray cluster; it needs --workers of at least 1")
        return LocalRunner(config, shared, evaluator)
    # Latency comes from a predictor in the driver (cheap): workers on other nodes need no
    # latency table or fitted device of their own.
    return RayRunner(dict(config, device=None), shared, workers, address,
                     cpus_per_worker=float(config.get("threads", 1)))
