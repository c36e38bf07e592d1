"""How much two cores of this machine give over one, for the pipeline's kind of work: the same single-threaded
loop run on one core alone, then on both cores at once (one process pinned to each). On a VM the two "cores" may
share a physical core or its caches and memory bandwidth; the pipeline cannot scale past this ceiling, so its
1 -> 2 CPU ratio is read against it. Two kinds of work: `decode` (decode a clip, encode a PNG and a thumbnail) and
`stages` (the build's CPU stages themselves — decode, classify, localise, scaffold, score, package — over batches of
8 synthetic pairs read from a lake, as a Ray stage task runs them, with the same one torch thread).

    python bench/core_ceiling.py [--work decode,stages] [--seconds 10]
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

STAGES = """
import json, os, sys, time
import numpy as np
os.sched_setaffinity(0, {int(sys.argv[1])})
import lake
from refvie.pipeline import PipelineConfig, cpu_stages, pending_pairs
db = lake.open(sys.argv[3])
stages = cpu_stages(db.uri, db.storage_options, PipelineConfig())
ids = pending_pairs(db)
batches = [np.array(ids[i : i + 8], dtype=object) for i in range(0, len(ids) - 7, 8)]

def run(pairs):
    batch = {"pair_id": pairs}
    for stage in stages:
        batch = stage(batch)

for pairs in batches[:2]:  # warm: models loaded, first inference done
    run(pairs)
start, deadline, rounds = time.perf_counter(), time.perf_counter() + float(sys.argv[2]), 0
while time.perf_counter() < deadline:
    run(batches[rounds % len(batches)])
    rounds += 1
print(json.dumps({"rounds_per_s": rounds / (time.perf_counter() - start)}))
"""


WHAT = {"decode": "decode + encode", "stages": "the CPU stages (batches of 8 pairs)"}


def _launch(work: str, core: int, seconds: float, lake_path: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # what Ray gives a one-CPU task
    script = WORK if work == "decode" else STAGES
    return subprocess.Popen([sys.executable, "-c", script, str(core), str(seconds), lake_path],
                            stdout=subprocess.PIPE, text=True, env=env)


def synthetic_lake(path: str, pairs: int = 256) -> str:
    """A lake of the pipeline bench's pairs (17 frames of 128x128) for the `stages` work."""
    import lake
    from refvie.ingest import IngestConfig, ingest
    from refvie.sources import SyntheticSource
    from refvie.synthetic import SyntheticConfig

    ingest(SyntheticSource(pairs, SyntheticConfig(frames=17, height=128, width=128)), lake.open(path),
           IngestConfig(progress=False))
    return path


def measure(work: str = "decode", seconds: float = 10.0, lake_path: str = "") -> dict:
    """Rounds a second on core 0 alone, and on cores 0 and 1 together; `ceiling` is the 1 -> 2 core speed-up this
    work can reach (2.0 for two independent cores)."""
    alone = json.loads(_launch(work, 0, seconds, lake_path).communicate()[0])["rounds_per_s"]
    pair = [_launch(work, core, seconds, lake_path) for core in (0, 1)]
    together = [json.loads(p.communicate()[0])["rounds_per_s"] for p in pair]
    return {"work": work, "alone": alone, "together": together, "ceiling": sum(together) / alone}


def describe(result: dict) -> str:
    return (f"   core ceiling: {WHAT[result['work']]} alone on one core {result['alone']:.1f} rounds/s, on both cores "
            f"at once {' + '.join(f'{r:.1f}' for r in result['together'])} rounds/s: 1 -> 2 cores can give at most "
            f"{result['ceiling']:.2f}x")


if __name__ == "__main__":
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="decode,stages", help="decode, stages, or both (comma-separated)")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="core-ceiling-") as folder:
        lake_path = synthetic_lake(f"{folder}/lake") if "stages" in args.work else ""
        for work in args.work.split(","):
            print(describe(measure(work, args.seconds, lake_path)), flush=True)
