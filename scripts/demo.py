"""`make demo`: the main job on the embedded default, as far as the project has come.

Today: synthetic edit pairs and a small real-layout dataset (Kiwi-Edit CSV with some broken rows) are ingested
into the lake (bad rows land in `rejects`); the RefVIE pipeline turns the pairs into scored, embedded quadruplets
on Ray Data; SQL and Daft answer the same question; the natural and a rebalanced mix are shown side by side and
saved as slices; the tiny Kiwi-Edit trains through its curriculum on them; a preview grid is written; versions
are tagged; then a reduced rebalancing experiment: the tiny model that edits on a CPU trained once per category
mix (arm) and seed with the same budget, every run evaluated per category on a frozen bench of held-out synthetic
pairs, compared over seeds with intervals, a verdict in plain words and a saved report (Markdown + PNG).
At the default size the experiment is one arm: the tiny-edit model trained on the natural mix long enough to edit
(it beats copying the source on background changes and styles), with a frame gallery of its edits; the arm
comparison is `kiwi experiment` (docs/experiment.md). `lake info` closes. Rerunning it adds nothing.
Set KIWI_LAKE to use another lake; KIWI_DEMO_* (below) size the run."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import daft

import lake
from lake import media
from lake.balance import Strategy
from lake.slices import build_slice, diff_slices, save_slice
from lake.taxonomy import EDIT_TYPES
from refvie.ingest import IngestConfig, ingest
from refvie.pipeline import build
from refvie.preview import save_grid, synthetic_rows
from refvie.sources import KiwiCsvSource, SyntheticSource
from refvie.synthetic import SyntheticConfig

WORK = Path(os.environ.get("KIWI_DEMO_DIR", "data/demo"))
N_SYNTHETIC = int(os.environ.get("KIWI_DEMO_PAIRS", "1500"))
SIZE, FRAMES = 32, 9  # the size the tiny-edit model trains at, so clips decode in no time
TRAIN_STEPS = tuple(int(s) for s in os.environ.get("KIWI_DEMO_STEPS", "4,12,12").split(","))
N_BENCH = int(os.environ.get("KIWI_DEMO_BENCH_PAIRS", "130"))  # balanced, held out: the experiment's bench
BENCH_PER_CATEGORY = int(os.environ.get("KIWI_DEMO_BENCH_PER_CATEGORY", "20"))
EXPERIMENT_STEPS = int(os.environ.get("KIWI_DEMO_EXPERIMENT_STEPS", "2000"))
EXPERIMENT_LR = float(os.environ.get("KIWI_DEMO_EXPERIMENT_LR", "3e-3"))
EXPERIMENT_MODEL = os.environ.get("KIWI_DEMO_MODEL", "tiny-edit")  # or tiny-edit-context (docs/model.md)
EXPERIMENT_SEEDS = tuple(int(s) for s in os.environ.get("KIWI_DEMO_EXPERIMENT_SEEDS", "0").split(","))
EXPERIMENT_ARMS = tuple(os.environ.get("KIWI_DEMO_EXPERIMENT_ARMS", "natural").split(","))
BENCH_DATASET = "synthetic-bench"
TRAIN_ROWS = f"split = 'train' AND dataset <> '{BENCH_DATASET}'"


def small_csv_dataset(folder: Path) -> Path:
    """A Kiwi-Edit style CSV over real files: three good pairs, one truncated video, one path escaping the root."""
    from refvie.synthetic import SyntheticWorld

    (folder / "videos").mkdir(parents=True, exist_ok=True)
    world = SyntheticWorld(SyntheticConfig(seed=99, frames=9, height=64, width=64))
    rows = []
    for i, sample in enumerate(world.samples(3)):
        for side, frames in (("src", sample.source), ("tgt", sample.target)):
            (folder / f"videos/{i}_{side}.mp4").write_bytes(media.encode_video(frames))
        rows.append([f"videos/{i}_src.mp4", f"videos/{i}_tgt.mp4", sample.instruction])
    whole = (folder / "videos/0_src.mp4").read_bytes()
    (folder / "videos/broken.mp4").write_bytes(whole[: len(whole) // 3])
    rows += [["videos/broken.mp4", "videos/0_tgt.mp4", "Add a red kite"],
             ["../../etc/passwd", "videos/0_tgt.mp4", "Read a file it should not"]]
    with (folder / "train.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["src_video", "tgt_video", "prompt"])
        writer.writerows(rows)
    return folder / "train.csv"


def main() -> None:
    db = lake.open()
    quiet = IngestConfig(progress=sys.stderr.isatty())
    print(f"lake at {db.uri}\n")

    print(f"1. synthetic world: {N_SYNTHETIC} ground-truth edit pairs ({FRAMES} frames, {SIZE}x{SIZE}, "
          "local-edit skew)")
    world = dict(frames=FRAMES, height=SIZE, width=SIZE)
    print(ingest(SyntheticSource(N_SYNTHETIC, SyntheticConfig(seed=0, **world)), db, quiet))
    print(f"   and {N_BENCH} held-out pairs, even over the five edit types, for the bench ({BENCH_DATASET})")
    uniform = {e: 1.0 for e in EDIT_TYPES if e != "other"}
    print(ingest(SyntheticSource(N_BENCH, SyntheticConfig(seed=1000, mix=uniform, dataset=BENCH_DATASET, **world)),
                 db, quiet))

    print("\n2. a Kiwi-Edit training CSV over real files, two of its rows broken")
    print(ingest(KiwiCsvSource(small_csv_dataset(WORK / "kiwi-csv"), WORK / "kiwi-csv", dataset="demo-csv"),
                 db, quiet))

    print("\n3. RefVIE pipeline on Ray Data: classify, localise, scaffold a reference, score, embed, write")
    print(build(db, progress=sys.stderr.isatty()))
    import ray

    ray.shutdown()  # the rest is single-process; a live Ray would make Daft try its Ray runner

    print("\n4. edit types of the quadruplets (named query edit_type_distribution, DuckDB over Lance):")
    dist = db.query("edit_type_distribution", table="quadruplets")
    print(dist.to_pandas().to_string(index=False))
    df = db.daft("quadruplets")
    by_daft = df.groupby("edit_type").agg(daft.col("id").count().alias("rows")).to_pydict()
    duck = {r["edit_type"]: r["rows"] for r in dist.to_pylist()}
    print(f"   Daft agrees: {duck == dict(zip(by_daft['edit_type'], by_daft['rows'], strict=True))}")
    tasks = db.sql("SELECT task, count(*) AS n, round(avg(ref_similarity), 3) AS ref_similarity "
                   "FROM quadruplets GROUP BY 1 ORDER BY n DESC")
    print(tasks.to_pandas().to_string(index=False))

    print("\n5. rebalance: the natural mix leans local; a temperature slice (alpha 0.3) evens it out, pinned to")
    print(f"   quadruplets version {db.table('quadruplets').version} and saved with its lineage:")
    natural = build_slice(db, where=TRAIN_ROWS, strategy=Strategy("natural"), name="demo-natural")
    balanced = build_slice(db, where=TRAIN_ROWS, strategy=Strategy("temperature", alpha=0.3),
                           name="demo-temperature-0.3")
    side = {r["category"]: r for r in diff_slices(natural, balanced)}
    print(f"   {'edit_type':<18} {'rows':>5} {'natural':>8} {'alpha 0.3':>10} {'repeats':>8}")
    for c, r in sorted(side.items(), key=lambda kv: -kv[1]["rows_a"]):
        print(f"   {c:<18} {r['rows_a']:>5} {r['share_a']:>8.3f} {r['share_b']:>10.3f} "
              f"{balanced.allocation.repeats()[c]:>8.2f}")
    for s in (natural, balanced):
        save_slice(db, s)
    print(f"   saved slices {natural.slice_id[:8]} ({natural.name}) and {balanced.slice_id[:8]} ({balanced.name})")

    print("\n6. the tiny Kiwi-Edit trains through its three-stage curriculum on the two slices, streamed from the lake")
    from kiwi import curriculum
    from kiwi.model.kiwi_edit import tiny
    from kiwi.train import Trainer

    reference = build_slice(db, where=f"task = 'ref_subject' AND {TRAIN_ROWS}", strategy=Strategy("natural"),
                            name="demo-reference")
    save_slice(db, reference)
    run = curriculum.tiny(balanced.slice_id, reference.slice_id, steps=TRAIN_STEPS, seed=0)
    result = Trainer(tiny(seed=0), db, run, WORK / "run").train()
    losses = [h["loss"] for h in result.history]
    stages = " / ".join(f"{s.name} {s.steps}" for s in run.stages)
    if losses:
        k = max(1, len(losses) // 4)
        print(f"   {result.steps} steps ({stages}); mean loss of the first {k} steps {sum(losses[:k]) / k:.3f} -> "
              f"last {k} {sum(losses[-k:]) / k:.3f}; run {result.run_id} recorded in the runs table")
    else:
        print(f"   {result.steps} steps ({stages}): already trained, checkpoint in {WORK / 'run' / 'checkpoint'}")

    print("\n7. what was rejected and why (named query rejects_by_reason):")
    print(db.query("rejects_by_reason").to_pandas().to_string(index=False))

    grid = save_grid(synthetic_rows(6, seed=0), WORK / "preview.png")
    print(f"\n8. preview grid (source | reference | target) written to {grid}")

    for table in ("pairs", "quadruplets"):
        if "demo" not in {tag for _, tag, _ in db.tags(table)}:
            db.tag(table, "demo")
    first = db.read("quadruplets", columns=["id", "instruction"], limit=1).to_pylist()[0]
    frames = db.read_video("quadruplets", first["id"], "target_video")
    print(f"\n9. {first['id']} ({first['instruction']!r}): target video decoded from its Lance blob, "
          f"{frames.shape} {frames.dtype}; its nearest neighbours by target embedding:")
    print(db.nearest(first["id"], k=3).to_pandas().to_string(index=False) + "\n")
    experiment(db)
    sys.stdout.flush()
    # -P: the current folder may hold a data folder named `lake`; the package must win
    subprocess.run([sys.executable, "-P", "-m", "lake.cli", "info", "--lake", db.uri], check=True)


def experiment(db: lake.Lake) -> None:
    from kiwi.eval.bench import bench_names, freeze_lake_bench, load_bench
    from kiwi.eval.experiment import ExperimentConfig, run_experiment
    from kiwi.eval.report import outputs_png

    one_arm = len(EXPERIMENT_ARMS) == 1
    what = (f"the tiny Kiwi-Edit that edits on a CPU ({EXPERIMENT_MODEL}) trained {EXPERIMENT_STEPS} steps on the "
            f"{EXPERIMENT_ARMS[0]} mix" if one_arm else
            f"the rebalancing experiment, reduced: tiny-edit trained {EXPERIMENT_STEPS} steps per arm "
            f"({', '.join(EXPERIMENT_ARMS)})")
    print(f"10. {what}, seed {list(EXPERIMENT_SEEDS)}, scored per category against the ground truth and against "
          "copying the source")
    if "demo-bench" not in bench_names(db):
        freeze_lake_bench(db, "demo-bench", per_category=BENCH_PER_CATEGORY, where=f"dataset = '{BENCH_DATASET}'")
    items = load_bench(db, "demo-bench")
    counts = {}
    for item in items:
        counts[item.category] = counts.get(item.category, 0) + 1
    print(f"   bench demo-bench (frozen copy of {BENCH_DATASET}): {len(items)} items, "
          + ", ".join(f"{c} {n}" for c, n in sorted(counts.items())))
    config = ExperimentConfig("demo-bench", arms=EXPERIMENT_ARMS, baseline=EXPERIMENT_ARMS[-1], train_where=TRAIN_ROWS,
                              steps=EXPERIMENT_STEPS, lr=EXPERIMENT_LR, seeds=EXPERIMENT_SEEDS, model=EXPERIMENT_MODEL)
    result = run_experiment(db, config, WORK / "experiment", progress=sys.stderr.isatty(),
                            log=lambda line: print("   " + line))
    print("\n   psnr per category (dB), mean over seeds, and copying the source:")
    print("   " + result.summary("psnr").to_string(float_format=lambda v: f"{v:.2f}").replace("\n", "\n   "))
    print("\n   " + result.verdict.replace("\n", "\n   "))
    picked = [next(i.item_id for i in items if i.category == c) for c in sorted(counts)]
    runs = {arm: result.eval_runs[f"{arm}/{EXPERIMENT_SEEDS[0]}"] for arm in EXPERIMENT_ARMS}
    gallery = outputs_png(db, "demo-bench", runs, picked, config.evaluation, WORK / "experiment" / "gallery.png")
    charts = ", ".join(p.name for p in sorted(result.report.parent.glob("*.png")))
    print(f"\n   report: {result.report} (with {charts}); first / middle / last frames of source, "
          f"{' / '.join(EXPERIMENT_ARMS)} and ground truth per category: {gallery}")
    print("\n   The arm comparison — does rebalancing the mix help background changes? — is `kiwi experiment`\n"
          "   (docs/experiment.md): four arms x five seeds x 1,000 steps on a 6,000-pair lake, about two hours on\n"
          "   2 cores. Its result (tiny-edit-context, the refiner modulated by the pooled context): a 90 % local mix\n"
          "   leaves backgrounds 2.4 dB and styles 2.7 dB behind the natural mix; temperature 0.3 gains 0.7 dB on\n"
          "   backgrounds, every interval above zero.\n")


if __name__ == "__main__":
    main()
