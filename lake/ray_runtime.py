"""Starting Ray the way every part of the project wants it: quiet, sized for the machine, with the shuffle
settings that keep Ray Data fast on a few cores (STACK_NOTES), or connected to an existing cluster."""

from __future__ import annotations

import os


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to a cluster, or start a quiet local Ray sized for this machine."""
    import logging

    import ray

    for key, value in {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "RAY_DEDUP_LOGS": "0"}.items():
        os.environ.setdefault(key, value)
    if address:
        ray.init(address=address, logging_level=logging.WARNING, ignore_reinit_error=True)
        return
    ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, object_store_memory=512 * 1024**2,
             logging_level=logging.WARNING, ignore_reinit_error=True, log_to_driver=False)
    import ray.data
    from ray.data.context import ShuffleStrategy

    ctx = ray.data.DataContext.get_current()
    ctx.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    ctx.read_op_min_num_blocks = 2
    logging.getLogger("ray.data").setLevel(logging.WARNING)
