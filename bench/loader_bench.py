"""Training data path: samples/s delivered by `kiwi.data.SliceLoader` (sampler order, Lance take + blob reads,
decode, 4k+1 frame sampling, resize + crop, reference on white, with prefetch) against the raw PyAV decode rate
of the same clips (source + target) measured in the same run with the same threads, both warmed up — the floor.
Aim: at least 0.8 of the floor. The loader decodes every pass here (`decoded_cache_mb=0`: a first epoch); a second
row times later epochs of a slice small enough for the decoded rows to be kept (the default), against the same
floor.

    python bench/loader_bench.py [--n 200] [--frames 17] [--size 128]
    python bench/loader_bench.py --geometry published [--pairs 4]    # 81 frames of 720p: bench/loader_published.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import report, timeit  # noqa: E402

import lake  # noqa: E402
from kiwi.data import DataConfig, SliceLoader  # noqa: E402
from lake import media  # noqa: E402
from lake.balance import Strategy  # noqa: E402
from lake.slices import build_slice  # noqa: E402
from refvie.ingest import IngestConfig, ingest  # noqa: E402
from refvie.pipeline import build_local  # noqa: E402
from refvie.sources import SyntheticSource  # noqa: E402
from refvie.synthetic import SyntheticConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--geometry", choices=("cpu", "published"), default="cpu")
    parser.add_argument("--pairs", type=int, default=4, help="published: pairs of 81-frame 720p clips")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--gpu-seconds", type=float, default=2.71,
                        help="published: GPU-seconds per sample (kiwi plan --flops, stage 3, 40%% MFU of an H100)")
    parser.add_argument("--vae-share", type=float, default=0.32,
                        help="published: the VAE's share of them (kiwi plan --flops), off the GPU on the latent path")
    args = parser.parse_args()
    db = lake.open(Path(tempfile.mkdtemp(prefix="loader-bench-")) / "lake")
    if args.geometry == "published":
        from loader_published import run

        report("loader_bench_published", run(db, args.pairs, args.repeat, args.gpu_seconds, args.vae_share),
               Path("bench/results/loader_bench_published.json"))
        return
    ingest(SyntheticSource(args.n, SyntheticConfig(frames=args.frames, height=args.size, width=args.size)), db,
           IngestConfig(progress=False))
    build_local(db)
    s = build_slice(db, strategy=Strategy("natural"), seed=0)
    ids = list(s.ids)

    config = DataConfig(frames=5, size=args.size // 32 * 32, decoded_cache_mb=0)
    kept = DataConfig(frames=5, size=args.size // 32 * 32)

    def decode_floor() -> int:
        """Read and decode every source + target with as many threads as the loader prepares batches with."""
        def chunk_decode(chunk):
            for blob in db.read_blobs("quadruplets", "source_video", chunk) + db.read_blobs(
                    "quadruplets", "target_video", chunk):
                media.decode_video(blob)
        with ThreadPoolExecutor(max_workers=config.workers) as pool:
            list(pool.map(chunk_decode, [ids[i : i + 8] for i in range(0, len(ids), 8)]))
        return len(ids)

    def loader_pass(data: DataConfig = config) -> int:
        loader = SliceLoader(db, s, data, batch_size=8, seed=0, task="instruct")
        return sum(len(b.ids) for b in loader)

    delivered = loader_pass()
    floor = timeit(decode_floor, repeat=3, warmup=1)  # both sides warm: a pass of each before timing
    ours = timeit(loader_pass, repeat=3, warmup=0)
    later = timeit(lambda: loader_pass(kept), repeat=3, warmup=1)  # the warm-up pass is the epoch that decodes
    print(f"{delivered} samples in {ours:.2f}s = {delivered / ours:.0f}/s; raw decode of {len(ids)} pairs "
          f"{floor:.2f}s = {len(ids) / floor:.0f}/s: {(delivered / ours) / (len(ids) / floor):.2f} of the floor; "
          f"later epochs with decoded rows kept {later:.2f}s: {(delivered / later) / (len(ids) / floor):.2f} "
          "of the floor")
    baseline = f"raw PyAV decode of the same source + target, {config.workers} threads"
    report("loader_bench", [dict(what=f"SliceLoader, one sample ({args.frames}x{args.size}x{args.size} pair -> 5 "
                                      "frames)", ours_s=ours / delivered, baseline=baseline,
                                 baseline_s=floor / len(ids)),
                            dict(what="SliceLoader, later epochs (decoded rows kept)", ours_s=later / delivered,
                                 baseline=baseline, baseline_s=floor / len(ids))],
           Path("bench/results/loader_bench.json"))


if __name__ == "__main__":
    main()
