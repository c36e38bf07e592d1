"""The training loader at the published geometry (`python bench/loader_bench.py --geometry published`): pairs of
81-frame 1280x720 H.264 clips in a lake, read by `kiwi.data.SliceLoader` as the published recipe reads them
(the first 81 frames, 921,600-pixel budget, batch 1, two preparing threads), on three paths:

- decode: source and target decoded and fitted every step (a first epoch: `decoded_cache_mb=0`);
- decode on Ray Data: the same, prepared in Ray Data tasks (`DataConfig.ray`; a local 2-CPU Ray, started after the
  thread paths are measured), its workers' CPU counted with the trainer's;
- latents: the target read from the `latents` table instead (`DataConfig.latent_set`), the source decoded for
  the MLLM, of which only the 16 frames it reads are converted to RGB (`DataConfig.source_frames`). The latents
  are fabricated at the Wan2.2 VAE's shape for such a clip (48 x 21 x 44 x 80, bfloat16, of its 704x1280
  frames): what is measured is reading them, which does not depend on their values.

Against floors measured in the same run with the same threads: raw PyAV decode of the same source + target (the
decode paths), and of the source alone with its 16 MLLM frames converted (the latent path: H.264 reaches frame 80
only by decoding every frame before it).
Core-seconds per sample are the CPU time of the process and the processes under it over the pass; with the
GPU-seconds a sample costs (stage 3 of kiwi-paper, `kiwi plan --flops`: 2.71 s at 40 % MFU of an H100, 32 % of it
the VAE's encodes, which the latent path takes off the GPU), they give the cores a GPU needs to be fed."""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

FRAMES, HEIGHT, WIDTH = 81, 720, 1280
# Wan2.2-TI2V-5B VAE: 48 channels, 4x in time (+1), 16x in space, of the 704x1280 frames a 720p clip trains at
# (sides floored to multiples of 32)
LATENT_SHAPE = (48, 21, 44, 80)
MLLM_FRAMES = 16  # the release's MLLM encoder reads 16 of the source's frames (its max_frames)


def clip(seed: int, count: int = FRAMES) -> np.ndarray:
    """`count` frames of 720p with motion and texture (a moving gradient, stripes and a block), cheap to make."""
    t = np.arange(count, dtype=np.float32)[:, None, None]
    y = np.arange(HEIGHT, dtype=np.float32)[None, :, None]
    x = np.arange(WIDTH, dtype=np.float32)[None, None, :]
    r = (x + 7 * t + 40 * seed) % 256
    g = (y + 3 * t) % 256
    b = 128 + 100 * np.sin((x + y) / (17 + seed) + t / 5)
    frames = np.stack(np.broadcast_arrays(r, g, b), -1).clip(0, 255).astype(np.uint8)
    for i in range(count):
        top, left = 100 + (i * 3) % 400, 200 + (i * 7 + 90 * seed) % 800
        frames[i, top : top + 120, left : left + 160] = (255 - 30 * seed) % 256
    return frames


def published_lake(db, pairs: int) -> list[str]:
    """A small synthetic lake whose quadruplets get 81-frame 720p source and target clips."""
    from lake import media
    from refvie.ingest import IngestConfig, ingest
    from refvie.pipeline import build_local
    from refvie.sources import SyntheticSource
    from refvie.synthetic import SyntheticConfig

    ingest(SyntheticSource(pairs + 2, SyntheticConfig(frames=5, height=32, width=32, seed=3)), db,
           IngestConfig(progress=False))
    build_local(db)
    spec = db.spec("quadruplets")
    rows = db.read("quadruplets", columns=spec.metadata_columns, limit=pairs).to_pylist()
    for i, row in enumerate(rows):
        started = time.perf_counter()
        source, target = media.encode_video(clip(2 * i)), media.encode_video(clip(2 * i + 1))
        db.upsert("quadruplets", [{**row, "source_video": source, "target_video": target, "num_frames": FRAMES,
                                   "width": WIDTH, "height": HEIGHT}])
        print(f"  pair {i + 1}/{len(rows)}: {len(source) / 1e6:.1f} + {len(target) / 1e6:.1f} MB of H.264, "
              f"encoded in {time.perf_counter() - started:.0f} s", flush=True)
    return [r["id"] for r in rows]


def fabricated_latents(db, ids: list[str]) -> str:
    """bfloat16 latents of the published shape for each row, under a latent set of the published geometry."""
    import torch

    from lake.latents import LatentSet, latent_row

    latent_set = LatentSet("fabricated-for-the-bench", FRAMES, "prefix_cut", max_pixels=HEIGHT * WIDTH)
    version = db.table("quadruplets").version
    rows = db.take("quadruplets", ids, columns=db.spec("quadruplets").metadata_columns).to_pylist()
    generator = torch.Generator().manual_seed(0)
    for row in rows:
        source, target = (torch.randn(LATENT_SHAPE, generator=generator).to(torch.bfloat16) for _ in range(2))
        db.upsert("latents", [latent_row(latent_set, row, version, source, target)])
    return latent_set.key


def cpu_seconds() -> float:
    """User + system CPU time of this process and every process under it (Ray's workers and daemons): what the
    Ray Data path spends outside the trainer's process counts too."""
    import psutil

    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:
            pass
    return total


def start_ray() -> None:
    """The project's private local Ray (quiet, 2 CPUs), as `kiwi train` starts it, with an object store of 4 GiB
    (`KIWI_RAY_OBJECT_STORE_MB`): a prepared batch here is 440 MB, and the default 512 MiB would spill to disk."""
    import os

    from lake.ray_runtime import init_ray

    os.environ.setdefault("KIWI_RAY_OBJECT_STORE_MB", "4096")
    init_ray(num_cpus=2)


def run(db, pairs: int, repeat: int, gpu_seconds: float, vae_share: float) -> list[dict]:
    from kiwi.data import DataConfig, SliceLoader
    from lake import media
    from lake.slices import build_slice

    print(f"{pairs} pairs of {FRAMES} frames {WIDTH}x{HEIGHT}:")
    ids = published_lake(db, pairs)
    key = fabricated_latents(db, ids)
    where = "id IN (" + ", ".join(f"'{i}'" for i in ids) + ")"
    slice_ = build_slice(db, where=where, seed=0)
    decode = DataConfig(frames=FRAMES, sampling="prefix_cut", max_pixels=HEIGHT * WIDTH, size=32, decoded_cache_mb=0)
    latents = DataConfig(frames=FRAMES, sampling="prefix_cut", max_pixels=HEIGHT * WIDTH, size=32, decoded_cache_mb=0,
                         latent_set=key, source_frames=MLLM_FRAMES)
    on_ray = DataConfig(frames=FRAMES, sampling="prefix_cut", max_pixels=HEIGHT * WIDTH, size=32, decoded_cache_mb=0,
                        ray=True)

    def timed(fn) -> tuple[float, float, int]:
        """Median wall and CPU seconds of `repeat` passes (after one warm-up pass), and the samples of one."""
        fn()
        walls, cpus, n = [], [], 0
        for _ in range(repeat):
            wall, cpu = time.perf_counter(), cpu_seconds()
            n = fn()
            walls.append(time.perf_counter() - wall)
            cpus.append(cpu_seconds() - cpu)
        return float(np.median(walls)), float(np.median(cpus)), n

    def floor() -> int:
        def decode_pair(row_id):
            for column in ("source_video", "target_video"):
                (blob,) = db.read_blobs("quadruplets", column, [row_id])
                media.decode_video(blob)
        with ThreadPoolExecutor(max_workers=decode.workers) as pool:
            list(pool.map(decode_pair, ids))
        return len(ids)

    def source_floor() -> int:
        """The latent path's floor: every frame of the source decoded (the MLLM's 16 are spread to its end), those
        16 converted to RGB, in raw PyAV."""
        import av

        wanted = set(np.linspace(0, FRAMES - 1, MLLM_FRAMES).round().astype(int).tolist())

        def decode_source(row_id):
            (blob,) = db.read_blobs("quadruplets", "source_video", [row_id])
            with av.open(io.BytesIO(blob)) as container:
                [f.to_ndarray(format="rgb24") for i, f in enumerate(container.decode(video=0)) if i in wanted]
        with ThreadPoolExecutor(max_workers=decode.workers) as pool:
            list(pool.map(decode_source, ids))
        return len(ids)

    def loader_pass(config: DataConfig) -> int:
        loader = SliceLoader(db, slice_, config, batch_size=1, seed=0, task="instruct")
        return sum(len(b.ids) for b in loader)

    video_bytes = [len(db.read_blobs("quadruplets", c, [i])[0]) for i in ids for c in ("source_video", "target_video")]
    latent_bytes = 2 * int(np.prod(LATENT_SHAPE)) * 2
    per_sample_video = sum(video_bytes) / len(ids)
    results = {}
    for name, fn in (("raw PyAV decode", floor), ("raw PyAV decode of the source, 16 frames to RGB", source_floor),
                     ("loader, decode path", lambda: loader_pass(decode)),
                     ("loader, latent path", lambda: loader_pass(latents)),
                     ("loader, decode path on Ray Data", lambda: loader_pass(on_ray))):
        if "Ray" in name:  # started only now: its idle processes would count against the thread paths
            start_ray()
        wall, cpu, n = timed(fn)
        results[name] = (wall / n, cpu / n)
        print(f"  {name}: {wall / n:.2f} s and {cpu / n:.2f} core-seconds per sample "
              f"({n} samples, median of {repeat} passes)", flush=True)
    gpu_latent = gpu_seconds * (1 - vae_share)
    rows = []
    pair_floor = f"raw PyAV decode of the same source + target, {decode.workers} threads"
    source_only = (f"raw PyAV decode of the same source, its {MLLM_FRAMES} MLLM frames to RGB, {decode.workers} "
                   "threads")
    for name, gpu, read, baseline in (
            ("decode path", gpu_seconds, per_sample_video, "raw PyAV decode"),
            ("latent path", gpu_latent, per_sample_video / 2 + latent_bytes,
             "raw PyAV decode of the source, 16 frames to RGB"),
            ("decode path on Ray Data", gpu_seconds, per_sample_video, "raw PyAV decode")):
        wall, cpu = results[f"loader, {name}"]
        cores, floor_cores = cpu / gpu, results[baseline][1] / gpu
        print(f"  {name}: {cores:.2f} cores per GPU (its floor {floor_cores:.2f}; GPU {gpu:.2f} s per sample), "
              f"{read / 1e6:.1f} MB read per sample from the lake")
        rows.append(dict(what=f"SliceLoader at 81x1280x720, {name} (per sample; {cores:.2f} cores per GPU)",
                         ours_s=wall, baseline=pair_floor if baseline == "raw PyAV decode" else source_only,
                         baseline_s=results[baseline][0], core_seconds=cpu, gpu_seconds=gpu,
                         cores_per_gpu=cores, floor_core_seconds=results[baseline][1], bytes_per_sample=read))
    return rows
