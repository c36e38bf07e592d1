"""How much two cores of this machine give over one, for the pipeline's kind of work: the same single-threaded
decode + encode loop run on one core alone, then on both cores at once (one process pinned to each). On a VM the
two "cores" may share a physical core or its caches and memory bandwidth; the pipeline cannot scale past this
ceiling, so its 1 -> 2 CPU ratio is read against it.

    python bench/core_ceiling.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

WORK = """
import json, os, sys, time
import numpy as np
from lake import media
os.sched_setaffinity(0, {int(sys.argv[1])})
clip = (np.random.default_rng(0).integers(0, 255, (17, 128, 128, 3))).astype(np.uint8)
clip[:, 32:96, 32:96] = 200  # some structure, like the synthetic pairs
encoded = media.encode_video(clip)
for _ in range(3):  # warm: codecs loaded, caches filled
    media.encode_image(media.decode_video(encoded)[8])
start, deadline, rounds = time.perf_counter(), time.perf_counter() + float(sys.argv[2]), 0
while time.perf_counter() < deadline:
    frames = media.decode_video(encoded)
    media.encode_image(frames[8])
    media.thumbnail(frames[4])
    rounds += 1
print(json.dumps({"rounds_per_s": rounds / (time.perf_counter() - start)}))
"""


def _launch(core: int, seconds: float) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", WORK, str(core), str(seconds)], stdout=subprocess.PIPE, text=True,
                            env=env)


def measure(seconds: float = 10.0) -> dict:
    """Rounds a second on core 0 alone, and on cores 0 and 1 together; `ceiling` is the 1 -> 2 core speed-up this
    work can reach (2.0 for two independent cores)."""
    alone = json.loads(_launch(0, seconds).communicate()[0])["rounds_per_s"]
    pair = [_launch(core, seconds) for core in (0, 1)]
    together = [json.loads(p.communicate()[0])["rounds_per_s"] for p in pair]
    return {"alone": alone, "together": together, "ceiling": sum(together) / alone}


def describe(result: dict) -> str:
    return (f"   core ceiling: decode + encode alone on one core {result['alone']:.1f} rounds/s, on both cores at once "
            f"{' + '.join(f'{r:.1f}' for r in result['together'])} rounds/s: 1 -> 2 cores can give at most "
            f"{result['ceiling']:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    print(describe(measure(parser.parse_args().seconds)))
