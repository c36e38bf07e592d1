"""The pipeline bench's CPU accounting charges each Ray process to the role it plays, by the titles Ray gives them:
the answer to "where did the rest of the 2x go" is only as good as this."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import cpu_accounting  # noqa: E402


def test_titles_seen_in_a_parallel_writes_build_map_to_their_roles():
    # each title as psutil read it during `refvie build --parallel-writes` on Ray 2.60 (cut to its first words)
    seen = {
        "ray::MapBatches(run_cpu_stages)": "stage tasks",
        "ray::MapWorker(MapBatches(Embed))": "embed actor",
        "ray::MapWorker(MapBatches(Embed)).submit": "embed actor",
        "ray::MapWorker(MapBatches(Embed)).__init__": "embed actor",
        "ray::MapBatches(write_fragments_task)": "write tasks",
        "ray::IDLE": "idle workers",
        "/v/bin/python /v/lib/python3.11/site-packages/ray/_private/workers/default_worker.py": "idle workers",
        "ray::_StatsActor": "ray system", "ray::_StatsActor.register_dataset": "ray system",
        "ray::DashboardAgent": "ray system", "ray::RuntimeEnvAgent": "ray system",
        "ray::ActorLocationTracker.get_actor_locations": "ray system",
        "ray::_AutoscalingCoordinatorActor.request_resources": "ray system",
        "/v/lib/python3.11/site-packages/ray/core/src/ray/raylet/raylet --raylet_socket_name": "ray system",
        "/v/bin/python -u /v/lib/python3.11/site-packages/ray/_private/log_monitor.py": "ray system",
    }
    assert {title: cpu_accounting.role(title) for title in seen} == seen


def test_a_live_embed_actor_is_charged_to_the_embed_role(ray_local):
    import ray.data

    class Embed:  # defined here so that Ray ships it by value; named like the pipeline's embed stage
        def __call__(self, batch):
            end = time.process_time() + 0.6  # busy long enough for the monitor's polls to see it
            while time.process_time() < end:
                pass
            return batch

    with cpu_accounting.CpuMonitor(every=0.1) as monitor:
        ray.data.range(4, override_num_blocks=2).map_batches(Embed, concurrency=1, batch_size=2).materialize()
    assert monitor.used["embed actor"] >= 0.8  # two batches of 0.6 s of CPU each
    assert monitor.used["stage tasks"] < monitor.used["embed actor"]
    assert len(monitor.processes["embed actor"]) == 1  # concurrency=1: one actor did the work
