"""A local Ray head with its dashboard (the Jobs API) on 127.0.0.1, for tests and the notebook run in CI. It prints
the dashboard's address, then holds the cluster until its stdin closes (the test, or the test process, ended) or
`--lifetime` seconds pass, and shuts it down: it stops by itself.

    python tests/ray_head.py [--lifetime 900]"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--lifetime", type=float, default=900)
    p.add_argument("--num-cpus", type=int, default=2)
    a = p.parse_args()
    import ray
    from ray._private import parameter

    # ray.init has no option for the dashboard agent's port and every Ray node on a machine takes the same default
    # (52365): beside another cluster (a test running alongside) this head's agent could not listen, and the Jobs
    # API answers "No available agent" for as long as the head lives. Give this head's agent a free port instead.
    agent_port, params_init = free_port(), parameter.RayParams.__init__

    def with_free_agent_port(self, *args, **kwargs):
        kwargs.setdefault("dashboard_agent_listen_port", agent_port)
        params_init(self, *args, **kwargs)

    parameter.RayParams.__init__ = with_free_agent_port
    port = free_port()
    ray.init(address="local", num_cpus=a.num_cpus, include_dashboard=True, dashboard_host="127.0.0.1",
             dashboard_port=port, object_store_memory=256 * 1024**2, log_to_driver=False,
             _node_ip_address="127.0.0.1")
    print(f"http://127.0.0.1:{port}", flush=True)
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    done.wait(a.lifetime)
    ray.shutdown()


@contextlib.contextmanager
def ray_head(lifetime: float = 900):
    """Start the head in its own process; yields the dashboard address; shuts it down on exit."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    # the jobs' `python` is this environment's (the cluster runs what the project installs)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    head = subprocess.Popen([sys.executable, str(Path(__file__)), "--lifetime", str(lifetime)], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        address = head.stdout.readline().strip()
        if not address.startswith("http://"):
            raise RuntimeError(f"the Ray head did not start (exit code {head.poll()})")
        yield address
    finally:
        head.stdin.close()
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            head.kill()


if __name__ == "__main__":
    main()
