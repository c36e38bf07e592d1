"""The latent cache: `refvie latents` encodes each quadruplet's clips once (exactly once across a cut and a rerun,
again when a row's clips change), and training on the cached latents gives the losses and weights of encoding
on the fly, resumes exactly, and refuses a set that does not match its VAE and geometry by name."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from kiwi.curriculum import STAGE2, STAGE3, RunConfig, StageConfig
from kiwi.model.kiwi_edit import tiny, tiny_edit
from kiwi.train import Trainer
from lake.balance import Strategy
from lake.latents import encode_clips, read_latents, uncovered
from lake.slices import build_slice, load_slice, save_slice
from refvie.latents import LatentsConfig, encode_latents
from tests.conftest import synthetic_quadruplet_lake

N = 14


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    db = synthetic_quadruplet_lake(tmp_path_factory.mktemp("latents") / "lake", N, seed=21, size=64)
    save_slice(db, build_slice(db, strategy=Strategy("temperature", alpha=0.3), seed=0, name="video"))
    save_slice(db, build_slice(db, where="task = 'ref_subject'", seed=0, name="reference"))
    return db


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vae")
    tiny(seed=0).vae.save_pretrained(folder)
    return folder


def encode(db, vae_dir, **overrides):
    config = LatentsConfig(vae=str(vae_dir), frames=5, sampling="spread", size=64, max_pixels=None, dtype="float32",
                           device="cpu", write_batch=4, rows_per_task=2)
    return encode_latents(db, replace(config, **overrides))


def run_config(latents: str) -> RunConfig:
    stages = (StageConfig("instruct", "video", "instruct", STAGE2, 3, 2e-3),
              StageConfig("reference", "reference", "ref_subject", STAGE3, 3, 2e-3))
    return RunConfig("latents", stages, seed=5, checkpoint_every=2, latents=latents)


@pytest.fixture(scope="module")
def cached(db, vae_dir, ray_local):
    """The whole lake encoded: first cut after one write (a kill between commits), then rerun to the end."""
    first = encode(db, vae_dir, stop_after_writes=1)
    second = encode(db, vae_dir)
    return first, second


def test_refvie_latents_encodes_every_row_once_across_a_cut_and_again_when_its_clips_change(db, vae_dir, cached):
    first, second = cached
    n = db.count("quadruplets")  # the pairs the build accepted
    assert n >= 10 and second.selected == n
    assert first.stopped_early and first.encoded == 4 and first.cached_before == 0
    assert second.cached_before == 4 and second.encoded == n - 4 and second.rejected == 0
    assert db.count("latents") == n  # each row once: cached + rejected = selected
    assert len(set(db.read("latents", columns=["latent_id"])["latent_id"].to_pylist())) == n
    assert encode(db, vae_dir).encoded == 0  # nothing left to do

    # the cached bits are the trainer's encode of the same clip, cut the same way
    row = db.read("quadruplets", columns=["id"], limit=1)["id"][0].as_py()
    latent_set = db.read("latents", columns=["latent_set"], limit=1)["latent_set"][0].as_py()
    (source, target), = read_latents(db, latent_set, [row])
    model = tiny(seed=0)
    clip = model.latent_set(5, "spread", 64, None).cut(db.read_video("quadruplets", row, "target_video"))
    assert model.latent_set(5, "spread", 64, None).key == latent_set
    assert torch.equal(target, encode_clips(model.vae, clip[None])[0])
    assert source.shape == target.shape and source.dtype == torch.float32

    # a rebuilt row (new creation time) is stale: training would not take it, a rerun encodes it alone
    created = db.read("quadruplets", columns=["created_at"], where=f"id = '{row}'")["created_at"][0].as_py()
    db.update_columns("quadruplets", [{"id": row, "created_at": created.replace(year=created.year + 1)}],
                      ["created_at"])
    version = db.table("quadruplets").version
    assert uncovered(db, latent_set, "quadruplets", version, [row]) == [row]
    again = encode(db, vae_dir)
    assert again.encoded == 1 and again.cached_before == n - 1 and db.count("latents") == n
    assert uncovered(db, latent_set, "quadruplets", db.table("quadruplets").version, [row]) == []
    db.update_columns("quadruplets", [{"id": row, "created_at": created}], ["created_at"])  # as the slices saw it
    assert encode(db, vae_dir).encoded == 1
    assert uncovered(db, latent_set, "quadruplets", load_slice(db, "video").table_version, [row]) == []


def test_training_on_cached_latents_equals_encoding_on_the_fly_and_resumes_exactly(db, cached, tmp_path,
                                                                                     monkeypatch):
    from lake.access import RandomAccess

    read_columns, real = [], RandomAccess.read_blobs

    def spy(self, table, column, keys, *args, **kwargs):
        read_columns.append(column)
        return real(self, table, column, keys, *args, **kwargs)

    monkeypatch.setattr(RandomAccess, "read_blobs", spy)
    decoded = Trainer(tiny(seed=0), db, run_config("off"), tmp_path / "decoded").train()
    assert "target_video" in read_columns
    read_columns.clear()
    on_latents = Trainer(tiny(seed=0), db, run_config("require"), tmp_path / "cached").train()
    assert "target_video" not in read_columns and "target_latents" in read_columns  # the cache was read
    assert [h["ids"] for h in on_latents.history] == [h["ids"] for h in decoded.history]
    # to float rounding: the cache encodes each clip alone, the step a batch of two (a convolution's sums then run in
    # another order): ~1e-6 relative after six steps
    assert [h["loss"] for h in on_latents.history] == pytest.approx([h["loss"] for h in decoded.history], rel=1e-5)
    cut = Trainer(tiny(seed=0), db, run_config("require"), tmp_path / "cut").train(stop_after=2)
    rest = Trainer(tiny(seed=0), db, run_config("require"), tmp_path / "cut").train(resume=True)
    assert [h["ids"] for h in cut.history + rest.history] == [h["ids"] for h in on_latents.history]
    assert [h["loss"] for h in cut.history + rest.history] == pytest.approx(
        [h["loss"] for h in on_latents.history], abs=1e-6)


def test_a_latent_set_of_another_geometry_or_model_is_refused_by_name_or_decoded_around(db, cached, tmp_path):
    other = RunConfig("latents", tuple(replace(s, size=32) for s in run_config("require").stages), seed=5,
                      latents="require")
    with pytest.raises(ValueError, match=r"have no fresh latents in lat-\w+ \(VAE \w+, 5 frames spread, 32x32\); "
                                         r"latent sets in the lake: lat-\w+ \(VAE \w+, 5 frames spread, 64x64\): "
                                         r"\d+ rows"):
        Trainer(tiny(seed=0), db, other, tmp_path / "other").train()
    assert Trainer(tiny(seed=0), db, replace(other, latents="auto"), tmp_path / "auto").train().finished
    with pytest.raises(ValueError, match="no VAE to cache"):
        Trainer(tiny_edit(seed=0), db, replace(run_config("require"), stages=tuple(
            replace(s, size=32) for s in run_config("require").stages)), tmp_path / "codec").train()


def test_on_cached_latents_only_the_source_frames_the_mllm_reads_are_converted_and_the_losses_hold(
        db, cached, tmp_path, monkeypatch):
    """The source reaches the DiT as latents too, so the loader converts to RGB only the frames the MLLM reads
    (its max_frames spread over the clip; conversion is about a quarter of a 720p frame's decode), and the model
    sees the frames it would have picked from the whole clip."""
    from kiwi.data import DataConfig, SliceLoader
    from lake import media

    def short_sighted():
        model = tiny(seed=0)
        model.mllm.max_frames = 2  # of the 5 frames the stages take: frames 0 and 4
        return model

    decoded = Trainer(short_sighted(), db, run_config("off"), tmp_path / "decoded").train()
    converted = []
    real = media._reformatter

    class Counting:
        def reformat(self, frame, **kwargs):
            converted.append(frame.pts)
            return real().reformat(frame, **kwargs)

    monkeypatch.setattr(media, "_reformatter", Counting)
    on_latents = Trainer(short_sighted(), db, run_config("require"), tmp_path / "cached").train()
    steps = len(on_latents.history)
    batch_rows = sum(len(h["ids"]) for h in on_latents.history)
    # only the first and last of each 9-frame source clip are converted, never a target frame (batches the loader
    # prefetched past a stage's end may add a few conversions, of the same two frames)
    assert len(set(converted)) == 2 and 0 in converted and len(converted) >= 2 * batch_rows and steps == 6
    assert [h["ids"] for h in on_latents.history] == [h["ids"] for h in decoded.history]
    assert [h["loss"] for h in on_latents.history] == pytest.approx([h["loss"] for h in decoded.history], rel=1e-5)

    # what the loader hands over: the first and last of the 5 frames, as the whole clip's frames 0 and 4
    video = load_slice(db, "video")
    latent_set = db.read("latents", columns=["latent_set"], limit=1)["latent_set"][0].as_py()
    config = DataConfig(frames=5, size=64, sampling="spread", latent_set=latent_set, source_frames=2,
                        decoded_cache_mb=0)
    batch = next(iter(SliceLoader(db, video, config, 1, seed=0, task="instruct"))).batch
    whole = next(iter(SliceLoader(db, video, replace(config, latent_set=None, source_frames=None), 1, seed=0,
                                  task="instruct"))).batch
    assert batch.source.shape[1] == 2 and torch.equal(batch.source, whole.source[:, [0, 4]])
    with pytest.raises(ValueError, match="only with a latent set"):
        DataConfig(frames=5, source_frames=2)


@pytest.fixture(scope="module")
def short_clip_lake(tmp_path_factory, vae_dir, ray_local):
    """Pairs of 9-frame clips, one of whose targets has 6: trained at 13 frames under "prefix_cut" (upstream's
    reader, the published recipe's), each pair is cut to its longest 4k+1 prefix — 9 frames, that one 5."""
    from lake import media

    db = synthetic_quadruplet_lake(tmp_path_factory.mktemp("prefix-cut") / "lake", 6, seed=8, size=64)
    save_slice(db, build_slice(db, where="task = 'ref_subject'", seed=0, name="reference"))
    short = db.read("quadruplets", columns=["id"], limit=1)["id"][0].as_py()
    clip = db.read_video("quadruplets", short, "target_video")
    db.update_columns("quadruplets", [{"id": short, "target_video": media.encode_video(clip[:6])}], ["target_video"])
    save_slice(db, build_slice(db, where="true", seed=0, name="video"))
    summary = encode(db, vae_dir, frames=13, sampling="prefix_cut")
    return db, short, summary


def prefix_cut_run(latents: str, batch_size: int = 1) -> RunConfig:
    stage = StageConfig("instruct", "video", "instruct", STAGE2, 6, 2e-3, batch_size=batch_size, frames=13,
                        frame_sampling="prefix_cut")
    return RunConfig("prefix-cut", (stage,), seed=3, checkpoint_every=2, latents=latents)


def test_prefix_cut_latents_are_of_each_pairs_own_cut_and_train_as_decoding_does(short_clip_lake, tmp_path):
    from lake.latents import clip_lengths

    db, short, summary = short_clip_lake
    n = db.count("quadruplets")
    assert summary.encoded == n and summary.rejected == 0
    latent_set = tiny(seed=0).latent_set(13, "prefix_cut", 64, None).key
    ids = db.read("quadruplets", columns=["id"])["id"].to_pylist()
    lengths = dict(zip(ids, clip_lengths(db, latent_set, ids), strict=True))
    assert lengths.pop(short) == 5 and set(lengths.values()) == {9}  # the pair cut to its shorter clip's prefix
    for source, target in read_latents(db, latent_set, ids):
        assert source.shape == target.shape
    (listed,) = [r for r in db.query("latent_sets").to_pylist() if r["latent_set"] == latent_set]
    assert (listed["rows"], listed["cut_shorter"], listed["shortest"], listed["frames"]) == (n, n, 5, 13)

    decoded = Trainer(tiny(seed=0), db, prefix_cut_run("off"), tmp_path / "decoded").train()
    said = []
    on_latents = Trainer(tiny(seed=0), db, prefix_cut_run("require"), tmp_path / "cached").train(say=said.append)
    assert any(f"as cached latents ({latent_set})" in line for line in said)
    assert [h["ids"] for h in on_latents.history] == [h["ids"] for h in decoded.history]
    assert any(short in h["ids"] for h in decoded.history)
    assert [h["loss"] for h in on_latents.history] == pytest.approx([h["loss"] for h in decoded.history], rel=1e-5)

    # two a batch would put a 5-frame pair beside 9-frame ones: decoded (auto), refused by name (require)
    with pytest.raises(ValueError, match=r"the rows of slice video were cut to 2 lengths \(prefix_cut: 5, 9 frames\)"):
        Trainer(tiny(seed=0), db, prefix_cut_run("require", 2), tmp_path / "pairs").train()
    said.clear()
    assert Trainer(tiny(seed=0), db, prefix_cut_run("auto", 2), tmp_path / "auto").train(say=said.append).finished
    assert any("clips decoded, not read as latents" in line for line in said)


def test_the_published_recipe_trains_on_the_latent_sets_its_docs_make(short_clip_lake, vae_dir, tmp_path):
    """docs/train.md's three `refvie latents` commands (81 and 1 frames at 921,600 pixels, 1 frame at 1,048,576)
    cover every source of every kiwi-paper stage: with `--latents require`, no clip but the MLLM's source frames is
    decoded (the recipe's steps cut to two a stage, the tiny model)."""
    from kiwi.curriculum import kiwi_paper

    db, _, _ = short_clip_lake
    paper = kiwi_paper("video", "video", "reference")
    run = replace(paper, stages=tuple(replace(s, steps=2) for s in paper.stages), latents="require")
    with pytest.raises(ValueError, match=r"`refvie latents --vae DIR --frames 1 --sampling prefix_cut --max-pixels "
                                         r"1048576`"):
        Trainer(tiny(seed=0), db, run, tmp_path / "missing").train()
    for frames, pixels in ((81, 921_600), (1, 921_600), (1, 1_048_576)):
        assert encode(db, vae_dir, frames=frames, sampling="prefix_cut", size=None, max_pixels=pixels).rejected == 0
    said = []
    summary = Trainer(tiny(seed=0), db, run, tmp_path / "paper").train(say=said.append)
    assert summary.finished and len(summary.history) == 6
    assert sum("as cached latents" in line for line in said) == 6  # image, then image + video, then all three
