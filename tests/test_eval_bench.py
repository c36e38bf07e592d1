"""Benches (frozen from the lake, imported from published layouts) and resumable evaluation into the lake."""

import csv
import json

import numpy as np
import pytest
import yaml

import lake
from kiwi.eval import metrics
from kiwi.eval.aggregate import category_table
from kiwi.eval.bench import freeze_lake_bench, item_media, load_bench
from kiwi.eval.importers import import_openve_bench, import_refvie_bench
from kiwi.eval.judge import JudgeClient, JudgeConfig
from kiwi.eval.runner import EvalConfig, conform, copy_source, evaluate, excluded_categories, heldout_loss, results
from kiwi.eval.scorers import AutomaticScorer, JudgeScorer
from kiwi.model.kiwi_edit import tiny
from lake import media
from lake.taxonomy import EDIT_TYPES
from refvie.ingest import IngestConfig, ingest
from refvie.pipeline import build_local
from refvie.sources import SyntheticSource
from refvie.synthetic import SyntheticConfig, SyntheticWorld
from tests.fake_judge import FakeJudge

CONFIG = EvalConfig(frames=5, size=64, steps=2)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    db = lake.open(tmp_path_factory.mktemp("eval") / "lake")
    mix = {e: 1.0 for e in EDIT_TYPES if e != "other"}
    ingest(SyntheticSource(20, SyntheticConfig(frames=9, height=64, width=64, seed=21, mix=mix)), db,
           IngestConfig(progress=False))
    build_local(db)
    freeze_lake_bench(db, "b", per_category=2, where="split IN ('train', 'val', 'bench')")
    return db


def test_a_frozen_bench_is_stratified_copied_and_never_changes(db):
    items = load_bench(db, "b")
    counts = {}
    for item in items:
        counts[item.category] = counts.get(item.category, 0) + 1
    assert set(counts) == {e for e in EDIT_TYPES if e != "other"} and max(counts.values()) == 2
    first = items[0]
    original = db.read_video("quadruplets", first.item_id, "source_video")
    assert np.array_equal(item_media(db, first).source, original)
    with pytest.raises(ValueError, match="already exists; benches are frozen"):
        freeze_lake_bench(db, "b")
    with pytest.raises(ValueError, match="no bench named 'nope'.*benches: b"):
        load_bench(db, "nope")
    tagged = db.tag("quadruplets", "eval-test")
    again = freeze_lake_bench(db, "b-tagged", per_category=2, version="eval-test",
                              where="split IN ('train', 'val', 'bench')")
    assert [i.item_id for i in again] == [i.item_id for i in items] and tagged >= 1


def test_evaluation_resumes_and_a_rerun_costs_nothing(db):
    model = tiny(seed=0)
    partial = evaluate(db, model, "b", "tiny-0", CONFIG, limit=3)
    assert partial.inferred == 3 and partial.scored == {}
    rest = evaluate(db, model, "b", "tiny-0", CONFIG)
    total = len(load_bench(db, "b"))
    assert rest.inferred == total - 3 and rest.scored == {"auto": total} and rest.run_id == partial.run_id
    again = evaluate(db, model, "b", "tiny-0", CONFIG)
    assert again.inferred == 0 and again.scored == {"auto": 0}
    outputs = db.read("eval_outputs", columns=["item_id", "output_hash"],
                      where=f"run_id = '{rest.run_id}'").to_pylist()
    assert len(outputs) == total
    stored = db.read_blobs("eval_outputs", "video", [f"{rest.run_id}/{outputs[0]['item_id']}"])[0]
    frames = media.decode_video(stored)
    assert frames.shape == (5, 64, 64, 3) and media.probe_video(stored).codec == "ffv1"
    assert outputs[0]["output_hash"] == __import__("hashlib").sha256(frames.tobytes()).hexdigest()
    frame = results(db, rest.run_id)
    assert len(frame) == total * len(AutomaticScorer.metrics)
    assert set(frame["category"]) == set(frame["edit_type"])


def test_the_copy_baseline_scores_exactly_what_the_metrics_say(db):
    run = evaluate(db, copy_source, "b", "copy-source", CONFIG)
    frame = results(db, run.run_id)
    for item in load_bench(db, "b")[:4]:
        pixels = conform(item_media(db, item), CONFIG)
        stored = frame[(frame["item_id"] == item.item_id)].set_index("metric")["value"]
        assert stored["psnr"] == pytest.approx(metrics.psnr(pixels.source, pixels.target))  # outputs are lossless
        if pixels.edit_mask is not None and (~pixels.edit_mask).any():
            assert stored["masked_psnr"] == metrics.PSNR_CAP  # copying the source preserves what lies outside
    table = category_table(frame, ["psnr"])
    assert table.loc["overall", "score"] == pytest.approx(table.drop("overall")["score"].mean())


def test_the_heldout_loss_is_deterministic_and_per_category(db):
    model = tiny(seed=0)
    heldout_loss(db, model, "b", "tiny-heldout", CONFIG, run_id="heldout-1")
    heldout_loss(db, model, "b", "tiny-heldout", CONFIG, run_id="heldout-2")
    one, two = results(db, "heldout-1"), results(db, "heldout-2")
    assert len(one) == len(load_bench(db, "b")) and (one["value"] > 0).all()
    assert one.sort_values("item_id")["value"].tolist() == two.sort_values("item_id")["value"].tolist()
    assert heldout_loss(db, model, "b", "tiny-heldout", CONFIG, run_id="heldout-1") == 0  # resumed: nothing to do


def test_judge_scores_land_in_eval_results_and_failures_in_rejects(db, tmp_path):
    server = FakeJudge()
    try:
        server.default = ("rubric", 4)  # a well-formed answer to whichever rubric is asked
        server.script = [("answer", "nonsense")] * 2  # the first item's two attempts fail
        config = JudgeConfig(server.url, "fake-vl", max_retries=1, backoff_s=0.01, concurrency=1,
                             cache_dir=str(tmp_path / "cache"))
        with JudgeClient(config) as client:
            scorer = JudgeScorer(client)
            run = evaluate(db, copy_source, "b", "copy-judged", CONFIG, scorers=[scorer])
        total = len(load_bench(db, "b"))
        assert scorer.name.startswith("judge:fake-vl:")  # another judge or rubric set is scored anew
        assert run.scored == {scorer.name: total - 1} and len(run.failures) == 1
        rejects = db.read("rejects", where="stage = 'eval_judge'").to_pylist()
        assert rejects[0]["reason"] == "judge_failed" and run.failures[0][0] in rejects[0]["input_ref"]
        with JudgeClient(config) as client:  # the rerun judges just the failed item; the rest are done
            again = evaluate(db, copy_source, "b", "copy-judged", CONFIG, scorers=[JudgeScorer(client)])
            assert again.scored == {scorer.name: 1} and client.calls == 1
    finally:
        server.close()
    frame = results(db, run.run_id)
    assert set(frame["metric"]) >= {"Instruction Compliance", "judge_mean"}
    table = category_table(frame, ["Instruction Compliance", "Consistency & Detail Fidelity",
                                   "Visual Quality & Stability"], excluded_categories(frame))
    rubric_of = frame.groupby("task")["metric"].agg(set)
    assert {"Identity Consistency & Compliance", "Physical Integration & Tracking"} <= rubric_of["ref_subject"]
    assert {"Reference Fidelity & Preservation", "Matting Quality & Temporal Stability"} <= \
        rubric_of["ref_background"]
    assert "Instruction Compliance" in rubric_of["instruct"]
    assert table.loc["overall", "score"] == 4.0


def _bench_files(folder):
    world = SyntheticWorld(SyntheticConfig(seed=5, frames=5, height=64, width=64))
    (folder / "videos").mkdir(parents=True)
    samples = list(world.samples(3))
    for i, sample in enumerate(samples):
        (folder / f"videos/{i}.mp4").write_bytes(media.encode_video(sample.source))
        (folder / f"ref{i}.png").write_bytes(media.encode_image(sample.target[0]))
    (folder / "videos/broken.mp4").write_bytes((folder / "videos/0.mp4").read_bytes()[:200])
    long = bytearray(media.encode_video(SyntheticWorld(SyntheticConfig(seed=5, frames=9, height=64, width=64))
                                        .sample(0).source))
    middle = len(long) // 2  # garbage mid-file: the first frame still decodes, the later ones do not
    long[middle:middle + 800] = b"\xff" * 800
    (folder / "videos/damaged.mp4").write_bytes(bytes(long))
    return samples


def test_refvie_bench_yaml_imports_with_bad_entries_rejected(db, tmp_path):
    _bench_files(tmp_path)
    def entry(item_id, video, ref, instruction, edit_type="subject"):  # the published keys
        return dict(id=item_id, src_video=video, ref_img=ref, instruction=instruction, edit_type=edit_type)

    listing = [entry("s1", "videos/0.mp4", "ref0.png", "Add the cat"),
               entry("b1", "videos/1.mp4", "ref1.png", "New sky", "background"),
               entry("x1", "videos/broken.mp4", "ref0.png", "Add"),
               entry("x2", "videos/2.mp4", "missing.png", "Add"),
               entry("x3", "../outside.mp4", "ref0.png", "Add"),
               entry("x4", "videos/damaged.mp4", "ref0.png", "Add")]
    (tmp_path / "refvie_bench.yaml").write_text(yaml.safe_dump({"items": listing}))
    report = import_refvie_bench(db, tmp_path / "refvie_bench.yaml", "refvie-test")
    assert (report.entries, report.imported, report.rejected) == (6, 2, 4)
    items = {i.item_id: i for i in load_bench(db, "refvie-test")}
    assert items["s1"].category == "ref_subject" and items["b1"].task == "ref_background"
    reasons = {r["input_ref"]: r["reason"] for r in db.read("rejects", where="stage = 'bench_import'").to_pylist()}
    assert reasons["refvie-test/x2"] == "missing_file" and reasons["refvie-test/x3"] == "path_outside_root"
    assert reasons["refvie-test/x1"] in {"truncated", "not_a_video", "corrupt"}
    assert reasons["refvie-test/x4"] == "truncated"  # checked to the last frame, not only the first
    assert item_media(db, items["s1"]).reference is not None


def test_openve_manifest_counts_only_the_aligned_categories_toward_overall(db, tmp_path):
    _bench_files(tmp_path)
    rows = [dict(id="a", video="videos/0.mp4", instruction="Make it a watercolour", category="Global Style"),
            dict(id="b", video="videos/1.mp4", instruction="Replace the background", category="Background Change"),
            dict(id="c", video="videos/2.mp4", instruction="Add subtitles", category="Subtitles Edit"),
            dict(id="d", video="videos/2.mp4", instruction="Zoom out", category="Camera Multi-Shot Edit"),
            dict(id="e", video="videos/0.mp4", instruction="", category="Local Add"),
            dict(id="f", video="videos/0.mp4", instruction="Dance", category="Interpretive Dance")]
    with (tmp_path / "openve.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (tmp_path / "openve.json").write_text(json.dumps(rows))
    for name, path in (("openve-csv", "openve.csv"), ("openve-json", "openve.json")):
        report = import_openve_bench(db, tmp_path / path, name)
        assert (report.imported, report.rejected) == (4, 2)
    items = {i.item_id: i for i in load_bench(db, "openve-csv")}
    assert items["a"].edit_type == "global_style" and items["a"].counts_to_overall
    assert items["c"].category == "subtitle_edit" and items["c"].edit_type == "other"
    assert not items["c"].counts_to_overall and not items["d"].counts_to_overall
    run = evaluate(db, copy_source, "openve-csv", "copy", CONFIG)
    frame = results(db, run.run_id)
    assert excluded_categories(frame) == {"subtitle_edit", "camera_edit"}
    assert frame[frame["metric"] == "psnr"]["value"].isna().all()  # no ground truth in a published bench


def test_a_clip_model_by_local_path_adds_a_text_video_score(db, tmp_path):
    from kiwi.eval.scorers import ClipScorer
    from tests.tiny_models import tiny_clip

    scorer = ClipScorer(str(tiny_clip(tmp_path, with_tokenizer=True)))
    run = evaluate(db, copy_source, "b", "copy-clip", CONFIG, scorers=[scorer])
    frame = results(db, run.run_id)
    values = frame[frame["metric"] == "clip_text_video"]["value"]
    assert len(values) == len(load_bench(db, "b")) and values.between(-1, 1).all() and values.nunique() > 1
    item = load_bench(db, "b")[0]
    pixels = conform(item_media(db, item), CONFIG)
    from kiwi.eval.scorers import Case

    again = scorer.score([Case(item, pixels, pixels.source, "h")])[0][0].value
    assert again == pytest.approx(float(values[frame.loc[values.index, "item_id"] == item.item_id].iloc[0]))


def test_the_outputs_gallery_shows_each_items_reference_beside_its_clips(db):
    """A background change reads as an edit only next to the plate it was asked for: the gallery shows the
    reference where the item has one, and says 'none' where it has not."""
    from kiwi.eval.report import outputs_gallery

    run = evaluate(db, copy_source, "b", "copy-source", CONFIG)
    items = load_bench(db, "b")
    with_ref = next(i for i in items if i.category == "background_change")
    without = next(i for i in items if i.category == "local_remove")
    page = outputs_gallery(db, "b", {"copy-source": run.run_id}, [with_ref.item_id, without.item_id], CONFIG,
                           size=32, still=True)
    header, first, second = page.split("<tr>")[1:4]
    assert [h.split("</th>")[0] for h in header.split("<th>")[1:]] == ["item", "source", "reference", "copy-source",
                                                                     "target"]
    assert first.count("<img") == 4 and "<i>none</i>" not in first  # source, reference, output, target
    assert second.count("<img") == 3 and "<i>none</i>" in second
