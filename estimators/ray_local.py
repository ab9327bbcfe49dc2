"""Ray inside this process, reachable from this machine only, or a cluster the user names.

The one place the engine starts Ray: searches, runners, the Ray Tune sweep and data-parallel
supernet training all come through here (see docs/search.md, "Security model of a cluster").
"""
from __future__ import annotations

import os
from typing import Any

LOOPBACK = "127.0.0.1"


def start_local_ray(**init_kwargs: Any) -> None:
    """Start a new Ray instance inside this process that only this machine can reach.

    Ray binds its servers (GCS, raylet, workers and actors, runtime-env agent) to every
    interface unless the node address is exactly a loopback one, and `ray.init` replaces a
    loopback `_node_ip_address` with the machine's network address while Ray's "cluster
    mode" is on (the default on Linux). So cluster mode is off for this one call, which makes
    the node address 127.0.0.1 and every listener loopback-only; the node address is then
    checked, and the instance shut down again if it is not loopback. Never used to join a
    cluster: that is `ray.init(address=...)`, with the caller's own environment."""
    import ipaddress

    import ray
    from ray._private import ray_constants

    # Token authentication is off here unless the user set RAY_AUTH_MODE (then theirs
    # holds): only this machine can reach the instance, and with the mode unset Ray 2.60
    # would write a new token to ~/.ray/auth_token (0644 under the usual umask), which later
    # `ray.init(address="auto")` calls then pick up. Set for the start only: the instance's
    # processes inherit it, and a cluster joined later from this process sees the user's
    # environment unchanged.
    saved_mode = os.environ.get("RAY_AUTH_MODE")
    saved_cluster = ray_constants.ENABLE_RAY_CLUSTER
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(address="local", _node_ip_address=LOOPBACK, include_dashboard=False,
                 dashboard_host=LOOPBACK, **init_kwargs)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_cluster
        if saved_mode is None:
            os.environ.pop("RAY_AUTH_MODE", None)
    node_ip = ray.util.get_node_ip_address()
    if not ipaddress.ip_address(node_ip).is_loopback:
        ray.shutdown()
        raise RuntimeError(f"the local Ray instance came up on {node_ip}, not on a loopback "
                           f"address; refusing to run it reachable from the network")


def ensure_ray(address: str | None = None) -> None:
    """Start Ray unless this process already did: `address` (HOST:PORT or `auto`), else
    RAY_ADDRESS (set by `ray job submit`), joins a running cluster with the caller's
    environment (its RAY_AUTH_MODE and token); otherwise a new instance starts inside this
    process, reachable from this machine only (`start_local_ray`)."""
    import ray

    if ray.is_initialized():
        return
    if address != "local" and (address or os.environ.get("RAY_ADDRESS")):
        ray.init(address=address, logging_level="ERROR")  # address=None reads RAY_ADDRESS
    else:
        start_local_ray(logging_level="ERROR")
