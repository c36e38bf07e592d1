"""The RefVIE pipeline end to end on Ray Data: every pair ends in exactly one of quadruplets / rejects,
reruns add nothing, a killed run resumes, and the same call runs on a two-node cluster and an S3 lake."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import lake
from lake import media
from refvie.ingest import IngestConfig, ingest
from refvie.pipeline import PipelineConfig, build, build_local, pending_pairs
from refvie.sources import SyntheticSource
from refvie.stages.write import STAGES
from refvie.synthetic import SyntheticConfig
from tests.conftest import moving_square

SMALL = SyntheticConfig(frames=9, height=64, width=64, seed=21)
QUIET = IngestConfig(progress=False)
ROOT = Path(__file__).resolve().parent.parent


def bad_pairs() -> list[dict]:
    """Pairs that pass ingest but not the pipeline."""
    clip = media.encode_video(moving_square(1, size=64))
    small = media.encode_video(moving_square(1, size=32))
    return [
        dict(pair_id="bad-same", dataset="bad", instruction="Add a red ball", source_video=clip, target_video=clip),
        dict(pair_id="bad-size", dataset="bad", instruction="Add a red ball", source_video=clip, target_video=small),
        dict(pair_id="bad-nobytes", dataset="bad", instruction="Add a red ball", source_uri="videos/a.mp4",
             target_uri="videos/b.mp4"),
    ]


def final_state(db) -> tuple[set, Counter]:
    quads = db.read("quadruplets", columns=["id", "pair_id"])
    assert len(set(quads["id"].to_pylist())) == quads.num_rows, "duplicate quadruplets"
    stages = ", ".join(f"'{s}'" for s in STAGES)
    rejects = db.read("rejects", columns=["input_ref", "reason"], where=f"stage IN ({stages})")
    built = set(quads["pair_id"].to_pylist())
    rejected = rejects["input_ref"].to_pylist()
    assert len(set(rejected)) == len(rejected), "a pair rejected twice"
    assert not built & set(rejected), "a pair both built and rejected"
    return built | set(rejected), Counter(rejects["reason"].to_pylist())


@pytest.fixture(scope="module")
def built_lake(tmp_path_factory, ray_local):
    db = lake.open(tmp_path_factory.mktemp("pipeline") / "lake")
    ingest(SyntheticSource(200, SMALL), db, QUIET)
    db.upsert("pairs", bad_pairs())
    summary = build(db, PipelineConfig(batch_size=8, write_batch=16), progress=False)
    return db, summary


def test_every_pair_lands_in_exactly_one_table(built_lake):
    db, summary = built_lake
    done, reasons = final_state(db)
    assert done == set(db.read("pairs", columns=["pair_id"])["pair_id"].to_pylist())
    assert summary.pending == 203 == summary.accepted + summary.rejected_total
    assert {"no_visible_edit", "size_mismatch", "missing_file"} <= set(reasons)
    assert db.read("rejects", columns=["reason"], where="input_ref = 'bad-size'")["reason"][0].as_py() == \
        "size_mismatch"
    table = summary.stage_table()
    assert table[0]["rows_in"] == 203 and table[-1]["rows_out"] == summary.accepted
    assert all(row["seconds"] > 0 for row in table), table  # dedup and write are timed too, not shown as 0.00
    print("\n" + str(summary))


def test_quadruplets_are_complete_and_correct(built_lake):
    db, summary = built_lake
    assert summary.accepted >= 180  # measured 189 of 200 good pairs; the rest fail a quality filter
    rows = db.read("quadruplets").to_pylist()
    truth = dict(zip(*db.read("pairs", columns=["pair_id", "gt_edit_type"]).to_pydict().values(), strict=True))
    accuracy = np.mean([r["edit_type"] == truth[r["pair_id"]] for r in rows])
    assert accuracy >= 0.95
    for r in rows:
        assert len(r["instruction_emb"]) == 384 and len(r["target_emb"]) == 256
        assert r["split"] in ("train", "val", "bench") and r["pipeline_version"] == "refvie-0.1"
        assert r["edit_strength"] is not None and 0 < r["mask_area"] <= 1
        if r["task"] == "instruct" and r["edit_type"] != "global_style":
            assert r["reference_image"] is None and r["reference_emb"] is None
        if r["task"] != "instruct":
            assert media.decode_image(r["reference_image"]).shape == (64, 64, 3)
            assert len(r["reference_emb"]) == 256
    one = rows[0]["id"]
    assert db.read_video("quadruplets", one, "target_video").shape == (9, 64, 64, 3)
    dist = db.query("edit_type_distribution").to_pylist()
    assert sum(d["rows"] for d in dist) == summary.accepted
    assert len(db.nearest(one, k=5)) == 5


def test_rerun_builds_nothing(built_lake):
    db, _ = built_lake
    versions = (db.table("quadruplets").version, db.table("rejects").version)
    assert pending_pairs(db) == []
    again = build(db, progress=False)
    assert again.pending == 0 and (db.table("quadruplets").version, db.table("rejects").version) == versions


def test_interrupted_run_resumes_to_exact_counts(tmp_path, built_lake):
    """With parallel writes (the one-writer path's resume is the killed-process test below): stopped after two
    batches and rerun, every pair ends once, with the rows the one-writer build made."""
    db = lake.open(tmp_path / "lake")
    ingest(SyntheticSource(60, SMALL), db, QUIET)
    config = PipelineConfig(batch_size=4, write_batch=8, parallel_writes=True)
    first = build(db, replace(config, stop_after_writes=2), progress=False)
    assert first.stopped_early and 0 < first.accepted + first.rejected_total < 60
    second = build(db, config, progress=False)
    assert second.pending == 60 - (first.accepted + first.rejected_total)
    assert sum(second.write_nodes.values()) == second.pending  # every row went through a write task
    done, _ = final_state(db)
    assert len(done) == 60
    columns = ["id", "edit_type", "split", "edit_mask", "reference_image", "edit_strength"]
    ours = db.read("quadruplets", columns=columns).sort_by("id")
    assert ours.to_pylist() == built_lake[0].take("quadruplets", ours["id"].to_pylist(), columns=columns).to_pylist()


def test_killed_process_resumes_to_exact_counts(tmp_path):
    """A real SIGKILL in the middle of a run (the plain-loop runner, so no Ray processes are orphaned)."""
    db = lake.open(tmp_path / "lake")
    ingest(SyntheticSource(80, SMALL), db, QUIET)
    env = {**os.environ, "KIWI_LAKE": str(tmp_path / "lake")}
    command = [sys.executable, "-m", "refvie.cli", "build", "--no-ray", "--quiet", "--batch-size", "4"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and lake.open(tmp_path / "lake").count("quadruplets") < 8:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = lake.open(tmp_path / "lake").count("quadruplets")
    assert 0 < partial < 80, "the kill came too late to test anything"
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=300)
    done, _ = final_state(lake.open(tmp_path / "lake"))
    assert len(done) == 80


def test_plain_loop_gives_the_same_quadruplets_as_ray(tmp_path, built_lake):
    db_ray, _ = built_lake
    db = lake.open(tmp_path / "lake")
    ingest(SyntheticSource(24, SMALL), db, QUIET)
    build_local(db)
    ours = db.read("quadruplets", columns=["id", "edit_type", "edit_mask", "reference_image", "edit_strength"])
    theirs = db_ray.take("quadruplets", ours["id"].to_pylist(),
                         columns=["id", "edit_type", "edit_mask", "reference_image", "edit_strength"])
    assert ours.to_pylist() == theirs.to_pylist()  # same bytes: every stage is deterministic per pair


def test_pipeline_on_an_s3_lake(s3_lake_options, ray_local):
    db = lake.open("s3://kiwi/pipeline", storage_options=s3_lake_options)
    ingest(SyntheticSource(16, SMALL), db, QUIET)
    summary = build(db, PipelineConfig(batch_size=4, write_batch=8), progress=False)
    assert summary.accepted + summary.rejected_total == 16 and summary.accepted > 10
    assert len(final_state(db)[0]) == 16


def test_two_node_cluster(tmp_path):
    """A real two-node Ray cluster (ray.cluster_utils.Cluster) in a fresh process; both nodes do work, and with
    parallel writes both nodes write the quadruplets' bytes (the driver only commits)."""
    db = lake.open(tmp_path / "lake")
    ingest(SyntheticSource(48, SMALL), db, QUIET)
    script = textwrap.dedent(f"""
        import json, ray, lake
        from ray.cluster_utils import Cluster
        from refvie.pipeline import PipelineConfig, build
        cluster = Cluster(initialize_head=True, head_node_args={{"num_cpus": 2, "include_dashboard": False}})
        try:
            cluster.add_node(num_cpus=2)
            ray.init(address=cluster.address, log_to_driver=False)
            summary = build(lake.open({str(tmp_path / "lake")!r}),
                            PipelineConfig(batch_size=2, write_batch=4, parallel_writes=True), progress=False)
            print(json.dumps({{"accepted": summary.accepted, "rejected": summary.rejected_total,
                              "nodes": dict(summary.nodes), "write_nodes": dict(summary.write_nodes)}}))
        finally:  # a cluster left up makes every later `ray.init(num_cpus=…)` on this machine fail
            ray.shutdown()
            cluster.shutdown()
    """)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    # its own process group: on a timeout the cluster's raylets and GCS go with it
    process = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"the two-node build took over 300 s: {stderr[-3000:]}")
    assert process.returncode == 0, stderr[-3000:]
    import json

    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["accepted"] + result["rejected"] == 48
    assert len(result["nodes"]) == 2 and all(n > 0 for n in result["nodes"].values())
    assert set(result["write_nodes"]) == set(result["nodes"]) and sum(result["write_nodes"].values()) == 48
    assert len(final_state(lake.open(tmp_path / "lake"))[0]) == 48


def test_model_scaffold_runs_on_its_own_actors(tmp_path, ray_local):
    """Plumbing of the diffusers path through Ray (pre tasks -> scaffold actors -> post tasks): every pair is
    accounted for; with random weights most references fail the similarity filter, which is the point of it."""
    from tests.tiny_models import tiny_instruct_pix2pix

    path = str(tiny_instruct_pix2pix(tmp_path / "pix2pix"))
    db = lake.open(tmp_path / "lake")
    ingest(SyntheticSource(12, SMALL), db, QUIET)
    summary = build(db, PipelineConfig(batch_size=4, write_batch=4, scaffold_model_path=path), progress=False)
    assert summary.accepted + summary.rejected_total == 12
    assert len(final_state(db)[0]) == 12
    rows = db.read("quadruplets", columns=["task", "reference_image"]).to_pylist()
    assert all(media.decode_image(r["reference_image"]).shape == (64, 64, 3) for r in rows if r["task"] != "instruct")


def test_a_graph_that_cannot_schedule_fails_fast(tmp_path, ray_local):
    db = lake.open(tmp_path / "lake")
    ingest(SyntheticSource(2, SMALL), db, QUIET)
    with pytest.raises(ValueError, match="no task could ever run"):
        build(db, PipelineConfig(embed_cpus=2.0), progress=False)


def test_model_localiser_in_the_pipeline(tmp_path):
    from tests.tiny_models import tiny_clipseg

    db = lake.open(tmp_path / "lake")
    ingest(SyntheticSource(10, SMALL), db, QUIET)
    summary = build_local(db, PipelineConfig(localise_model_path=str(tiny_clipseg(tmp_path / "clipseg"))))
    assert summary.accepted + summary.rejected_total == 10
    assert len(final_state(db)[0]) == 10


def test_clip_image_embeddings_in_the_pipeline(tmp_path):
    from tests.tiny_models import tiny_clip

    db = lake.open(tmp_path / "lake")
    ingest(SyntheticSource(8, SMALL), db, QUIET)
    summary = build_local(db, PipelineConfig(image_model_path=str(tiny_clip(tmp_path / "clip"))))
    assert summary.accepted + summary.rejected_total == 8 and summary.accepted > 0
    assert all(len(v) == 256 for v in db.read("quadruplets", columns=["target_emb"])["target_emb"].to_pylist())


def test_ray_workers_import_our_packages_even_beside_a_data_folder_named_lake(tmp_path):
    """A user's lake is naturally a folder named `lake`; Ray puts the driver's folder first on the workers' path,
    where that folder would shadow the `lake` package ("cannot import name 'Lake' from 'lake'"). (-P: the driver
    itself does not look in its folder, as an installed command does not.)"""
    import subprocess
    import sys

    lake.open(tmp_path / "lake")
    script = ("import os; from lake.ray_runtime import init_ray; init_ray(num_cpus=1); import ray; "
              "print(ray.get(ray.remote(lambda: __import__('lake').Lake.__name__).remote()), os.getcwd()); "
              "ray.shutdown()")
    done = subprocess.run([sys.executable, "-P", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["Lake", str(tmp_path)]  # imported, and the caller's folder is left as it was


def test_a_local_build_starts_its_own_ray_beside_another_cluster():
    """Ray's ray.init() joins the cluster named in $RAY_TMPDIR/ray/ray_current_cluster (written by `ray start` and
    by a test's two-node cluster) and then refuses num_cpus: a local build must start its own instance instead."""
    temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths must fit 107 characters
    (temp / "ray").mkdir()
    (temp / "ray" / "ray_current_cluster").write_text("127.0.0.1:9")  # another cluster's address
    script = ("from lake.ray_runtime import init_ray; init_ray(num_cpus=1); import ray; "
              "print(ray.cluster_resources()['CPU']); ray.shutdown()")
    try:
        done = subprocess.run([sys.executable, "-c", script], env={**os.environ, "RAY_TMPDIR": str(temp)},
                              capture_output=True, text=True, timeout=180)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "1.0"


def test_two_builds_at_once_leave_each_pair_built_or_rejected_once(tmp_path):
    """Two `refvie build` processes started together on one lake (the plain loop: the write path is the same as
    Ray's) race over the same pending pairs; the keys declared as Lance's primary key turn their duplicate inserts
    into conflicts and retries, so every pair ends exactly once in `quadruplets` or `rejects`."""
    db = lake.open(tmp_path / "lake")
    ingest(SyntheticSource(40, SMALL), db, QUIET)
    env = {**os.environ, "KIWI_LAKE": str(tmp_path / "lake")}
    command = [sys.executable, "-m", "refvie.cli", "build", "--no-ray", "--quiet", "--batch-size", "4"]
    processes = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    errors = [p.communicate(timeout=600)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], errors
    done, _ = final_state(lake.open(tmp_path / "lake"))  # asserts no duplicate, none both built and rejected
    assert len(done) == 40


def test_a_second_writer_that_listed_pairs_before_the_first_wrote_them_leaves_them_alone(tmp_path, monkeypatch):
    """The race the two-process test hits by chance, made deterministic: a build lists its pending pairs, another
    build writes them meanwhile, then the first one gets to writing. It used to find the other's quadruplets in its
    near-duplicate bank and reject every pair as a duplicate of itself (a pair both built and rejected)."""
    import refvie.pipeline as pipeline

    db = lake.open(tmp_path / "lake")
    ingest(SyntheticSource(12, SMALL), db, QUIET)
    versions_early, listed_early = pipeline.written_versions(db), pending_pairs(db)
    first = build_local(db, PipelineConfig(write_batch=4))
    monkeypatch.setattr(pipeline, "written_versions", lambda *_args: dict(versions_early))
    monkeypatch.setattr(pipeline, "pending_pairs", lambda *_args, **_kw: list(listed_early))
    second = build_local(db, PipelineConfig(write_batch=4))
    done, _ = final_state(db)
    assert len(done) == 12 and first.accepted + first.rejected_total == 12
    assert (second.accepted, second.rejected_total, second.taken) == (0, 0, 12)
    assert "12 done by another build on this lake" in str(second)


def test_a_pair_a_concurrent_writer_rejected_while_this_one_built_it_ends_built_only(tmp_path, monkeypatch):
    """The narrower race left after the pre-write check: another writer commits a reject for a pair between this
    writer's check and its own upsert of that pair's quadruplet. The writer sees the tables move under it and
    settles the pair as built (a near-duplicate kept is no loss; a pair in both tables breaks the count)."""
    from refvie.stages.write import Write

    db = lake.open(tmp_path / "lake")
    ingest(SyntheticSource(8, SMALL), db, QUIET)
    stages = pipeline_stages(db)
    batch = {"pair_id": np.array(pending_pairs(db), dtype=object)}
    for stage in stages:
        batch = stage(batch)
    writer = Write(db)
    writer.setup()
    upsert = db.upsert

    def racing_upsert(table, rows):
        if table == "quadruplets":  # the other writer lands its verdict first
            db.reject_many([dict(stage="dedup", input_ref=r["pair_id"], reason="duplicate", dataset=r["dataset"])
                            for r in rows])
        return upsert(table, rows)

    monkeypatch.setattr(db, "upsert", racing_upsert)
    written = writer(batch)
    monkeypatch.setattr(db, "upsert", upsert)
    done, reasons = final_state(db)
    assert written["accepted"] > 0 and len(done) == 8 and "duplicate" not in reasons
    assert sum(written.values()) == 8  # every pair of the batch counted once: accepted, rejected or taken


def pipeline_stages(db):
    from refvie.pipeline import cpu_stages
    from refvie.stages import Embed

    embed = Embed(None)
    embed.setup()
    return [*cpu_stages(db.uri, db.storage_options, PipelineConfig()), embed]
