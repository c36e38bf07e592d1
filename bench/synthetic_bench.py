"""Synthetic world benchmark: samples rendered per second, and rendering time against the floor of merely
encoding the same frames with PyAV (every sample must be encoded to reach the lake, so encoding is the floor).

    python bench/synthetic_bench.py [--n 300] [--frames 17] [--size 128]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import report  # noqa: E402

from lake import media  # noqa: E402
from refvie.synthetic import SyntheticConfig, SyntheticWorld  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    world = SyntheticWorld(SyntheticConfig(frames=args.frames, height=args.size, width=args.size))
    world.sample(0)  # warm-up: imports, caches

    start = time.perf_counter()
    samples = list(world.samples(args.n))
    render_s = time.perf_counter() - start

    start = time.perf_counter()
    for s in samples:
        media.encode_video(s.source)
        media.encode_video(s.target)
    encode_s = time.perf_counter() - start

    print(f"{args.n} samples of {args.frames}x{args.size}x{args.size}: render {args.n / render_s:.0f} samples/s "
          f"({render_s / args.n * 1e3:.1f} ms each), H.264 encode of source+target {args.n / encode_s:.0f} samples/s")
    report("synthetic_bench", [dict(
        what=f"render one sample ({args.frames}x{args.size}x{args.size}, source+target+mask+reference)",
        ours_s=render_s / args.n, baseline="PyAV H.264 encode of the same two clips (the floor)",
        baseline_s=encode_s / args.n)], Path("bench/results/synthetic_bench.json"))
    print(f"\nrender / encode-floor time ratio: {render_s / encode_s:.2f}")


if __name__ == "__main__":
    main()
