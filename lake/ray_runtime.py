"""Starting Ray the way every part of the project wants it: quiet, sized for the machine, with the shuffle
settings that keep Ray Data fast on a few cores (STACK_NOTES), or connected to an existing cluster."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


@contextlib.contextmanager
def _quiet_spawns():
    """ray.init starts its daemons with fork+exec; lance and lancedb warn before *any* fork that they are not
    fork-safe, which matters for multiprocessing with fork, not for a process that execs at once."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="lance is not fork-safe")
        warnings.filterwarnings("ignore", message="lancedb fork support is experimental")
        yield


@contextlib.contextmanager
def _from_package_root():
    """Ray puts the driver's current folder first on every worker's sys.path. A user's lake is often a folder
    named `lake` (the default is ./data/lake, but `--lake lake` is natural): run from its parent, the workers
    would import that data folder as our `lake` package ("cannot import name 'Lake' from 'lake'"). So Ray is
    started from the folder our packages are imported from, and the caller's folder is restored after."""
    here = os.getcwd()
    os.chdir(Path(__file__).resolve().parents[1])
    try:
        yield
    finally:
        os.chdir(here)


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to a cluster, or start a quiet local Ray sized for this machine. Its object store holds 512 MiB
    (`KIWI_RAY_OBJECT_STORE_MB`): plenty for the build's batches, a single prepared batch at the published geometry
    (two 81-frame 704x1280 clips, 440 MB) fills it, so a local run of the Ray Data loader at that size wants more."""
    import logging

    import ray

    for key, value in {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0"}.items():
        os.environ.setdefault(key, value)
    if address:  # someone else's cluster: its authentication is its own
        with _from_package_root(), _quiet_spawns():
            ray.init(address=address, logging_level=logging.WARNING, ignore_reinit_error=True)
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private local cluster, reachable only from this machine
    # address="local": a new private instance even when another cluster runs on this machine (without it, Ray joins
    # the cluster named in /tmp/ray/ray_current_cluster — `ray start`, a test's two-node cluster — and refuses our
    # num_cpus); a cluster of the user's own is reached through `address` (--ray-address, $RAY_ADDRESS)
    with _from_package_root(), _quiet_spawns():
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
                 object_store_memory=int(os.environ.get("KIWI_RAY_OBJECT_STORE_MB", "512")) * 1024**2,
                 logging_level=logging.WARNING, ignore_reinit_error=True, log_to_driver=False)
    import ray.data
    from ray.data.context import ShuffleStrategy

    ctx = ray.data.DataContext.get_current()
    ctx.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    ctx.read_op_min_num_blocks = 2
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # our commands draw their own progress bar (rows written); Ray Data's note that its bars are off means nothing
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)


def node_id() -> str:
    """The Ray node this process runs on ("local" outside Ray): which machine wrote a row."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - outside Ray there is one node
        return "local"


# Ray cannot restart an actor whose constructor arguments sit in the object store (Ray Data's always do) and says so
# on every run; without restarts a lost actor fails the job, and a rerun resumes where it stopped. Ray 2.60 still
# reads max_restarts from the extra keyword arguments, which it marks deprecated (removed in 2.64: revisit on upgrade).
NO_RESTARTS = {"max_restarts": 0}


@contextlib.contextmanager
def max_restarts_accepted():
    """Around building a Ray Data graph that passes `NO_RESTARTS`: its deprecation note silenced."""
    import warnings

    from ray.util.annotations import RayDeprecationWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated", category=RayDeprecationWarning)
        yield
