"""Slices as data (lineage, version pinning, idempotent save), the sampler (exact sequences, elasticity,
mid-epoch resume, refusal), and splits that never move."""

from collections import Counter

import numpy as np
import pytest

import lake
from lake.balance import Strategy
from lake.sampler import SliceSampler
from lake.slices import build_slice, diff_slices, list_slices, load_slice, save_slice
from lake.splits import split_for

MIX = {"local_add": 120, "local_change": 50, "local_remove": 30, "background_change": 20, "global_style": 10}


def rows_for(mix: dict[str, int], prefix: str = "q") -> list[dict]:
    out = []
    for edit_type, n in mix.items():
        for i in range(n):
            pid = f"{prefix}-{edit_type}-{i:04d}"
            out.append(dict(id=pid, pair_id=pid, dataset="fixture", task="instruct", edit_type=edit_type,
                            instruction=f"{edit_type} {i}", source_uri="s3://v/a.mp4", target_uri="s3://v/b.mp4",
                            split=split_for(pid), edit_strength=float(i % 10)))
    return out


@pytest.fixture
def db(tmp_path):
    db = lake.open(tmp_path / "lake")
    db.upsert("quadruplets", rows_for(MIX))
    return db


def test_slice_counts_lineage_and_idempotent_save(db):
    s = build_slice(db, strategy=Strategy("temperature", alpha=0.3), seed=7, name="t03")
    assert s.allocation.counts == MIX and s.epoch_size == 230 and s.table_version == 2
    assert save_slice(db, s) == s.slice_id
    assert save_slice(db, build_slice(db, strategy=Strategy("temperature", alpha=0.3), seed=7, name="t03")) == \
        s.slice_id
    assert db.count("slices") == 1 and db.count("slice_rows") == 230
    loaded = load_slice(db, "t03")
    assert loaded.slice_id == s.slice_id and list(loaded.ids) == list(s.ids)
    assert loaded.allocation.shares == pytest.approx(s.allocation.shares)
    assert loaded.strategy == s.strategy and loaded.seed == 7
    listed = list_slices(db).to_pylist()[0]
    assert (listed["name"], listed["table_version"], listed["strategy"]) == ("t03", 2, "temperature")
    assert load_slice(db, s.slice_id[:8]).name == "t03"
    with pytest.raises(lake.LakeError, match="no slice 'nope'"):
        load_slice(db, "nope")


def test_a_save_killed_before_its_slices_row_is_redone_without_doubling_rows(db, monkeypatch):
    s = build_slice(db, strategy=Strategy("natural"), seed=1, name="cut")
    real_upsert = lake.Lake.upsert

    def killed(self, table, rows):
        if table == "slices":
            raise KeyboardInterrupt("killed between slice_rows and slices")
        return real_upsert(self, table, rows)

    monkeypatch.setattr(lake.Lake, "upsert", killed)
    with pytest.raises(KeyboardInterrupt):
        save_slice(db, s)
    monkeypatch.setattr(lake.Lake, "upsert", real_upsert)
    assert db.count("slices") == 0 and db.count("slice_rows") == 230  # the orphan rows of the killed save
    assert save_slice(db, s) == s.slice_id
    assert db.count("slices") == 1 and db.count("slice_rows") == 230
    assert list(load_slice(db, "cut").ids) == list(s.ids)


def test_an_empty_table_or_filter_says_what_is_missing_and_how_to_fix_it(db, tmp_path):
    with pytest.raises(lake.LakeError, match=r"quadruplets@\d+ is empty: build them with `refvie build`"):
        build_slice(lake.open(tmp_path / "fresh"))
    with pytest.raises(lake.LakeError, match="no quadruplets row of the 230 at version 2 matches WHERE "
                                             "edit_strength > 99"):
        build_slice(db, where="edit_strength > 99")


def test_where_filters_and_by_can_be_any_column_or_expression(db):
    s = build_slice(db, by="edit_scope", where="edit_strength >= 5")
    assert s.allocation.counts == {"local": 100, "background": 10, "global": 5}
    split = build_slice(db, by="split")
    assert sum(split.allocation.counts.values()) == 230


def test_a_slice_pins_its_table_version(db):
    s = build_slice(db, strategy=Strategy("uniform"), name="pinned")
    save_slice(db, s)
    db.upsert("quadruplets", rows_for({"background_change": 40}, prefix="new"))
    again = build_slice(db, strategy=Strategy("uniform"), version=s.table_version)
    assert again.slice_id == s.slice_id and list(again.ids) == list(s.ids)
    assert not any(i.startswith("new-") for i in load_slice(db, "pinned").ids)
    latest = build_slice(db, strategy=Strategy("uniform"))
    assert latest.allocation.counts["background_change"] == 60 and latest.slice_id != s.slice_id


def test_diff_between_slices(db):
    natural, uniform = build_slice(db), build_slice(db, strategy=Strategy("uniform"))
    diff = {d["category"]: d for d in diff_slices(natural, uniform)}
    assert diff["global_style"]["share_a"] == pytest.approx(10 / 230, abs=1e-4)
    assert diff["global_style"]["share_b"] == 0.2


def test_sampler_gives_exact_sequences_for_the_same_arguments(db):
    s = build_slice(db, strategy=Strategy("uniform"), seed=3)
    a = list(s.sampler(seed=3, epoch=0))
    assert a == list(s.sampler(seed=3, epoch=0)) and len(a) == 230
    assert a != list(s.sampler(seed=3, epoch=1)) and a != list(s.sampler(seed=4, epoch=0))
    assert a[:5] == list(SliceSampler(s, 3))[:5]


@pytest.mark.parametrize("mode", ["weighted", "stratified"])
def test_sampler_is_elastic(db, mode):
    s = build_slice(db, strategy=Strategy("cap", max_repeats=3), seed=1)
    single = list(s.sampler(seed=1, mode=mode, batch_size=10))
    for world in (2, 4):
        per_rank = [list(s.sampler(seed=1, rank=r, world_size=world, mode=mode, batch_size=10))
                    for r in range(world)]
        interleaved = [per_rank[i % world][i // world] for i in range(len(single))]
        assert interleaved == single


def test_weighted_mode_hits_the_mix_in_expectation_and_stratified_in_every_batch(db):
    s = build_slice(db, strategy=Strategy("uniform"), seed=2, epoch_size=5000)
    category = dict(zip(s.ids, s.categories, strict=True))
    counts = Counter(category[i] for i in s.sampler(seed=2))
    assert all(abs(n / 5000 - 0.2) < 0.02 for n in counts.values())
    stratified = [category[i] for i in s.sampler(seed=2, mode="stratified", batch_size=10)]
    for b in range(0, len(stratified), 10):
        assert Counter(stratified[b : b + 10]) == {c: 2 for c in MIX}


def test_mid_epoch_resume_yields_the_identical_next_items(db):
    s = build_slice(db, strategy=Strategy("temperature", alpha=0.5), seed=5)
    whole = list(s.sampler(seed=5, epoch=2))
    first = s.sampler(seed=5, epoch=2)
    it = iter(first)
    consumed = [next(it) for _ in range(37)]
    state = first.state_dict()
    resumed = s.sampler(seed=5)
    resumed.load_state_dict(state)
    assert consumed + list(resumed) == whole
    elastic = [s.sampler(seed=5, rank=r, world_size=2) for r in range(2)]  # resume on two workers
    for e in elastic:
        e.load_state_dict(state)
    rest = [iter(list(e)) for e in elastic]  # global position g belongs to rank g % 2
    assert [next(rest[g % 2]) for g in range(37, len(whole))] == whole[37:]


def test_resume_is_refused_on_a_different_slice_seed_or_mode(db):
    s = build_slice(db, strategy=Strategy("uniform"), seed=5)
    other = build_slice(db, strategy=Strategy("natural"), seed=5)
    state = s.sampler(seed=5).state_dict()
    with pytest.raises(ValueError, match="slice_id"):
        other.sampler(seed=5).load_state_dict(state)
    with pytest.raises(ValueError, match="seed"):
        s.sampler(seed=6).load_state_dict(state)
    with pytest.raises(ValueError, match="mode"):
        s.sampler(seed=5, mode="stratified").load_state_dict(state)


def test_splits_never_move_when_rows_are_appended(db):
    before = dict(zip(*db.read("quadruplets", columns=["id", "split"]).to_pydict().values(), strict=True))
    db.upsert("quadruplets", rows_for({"global_style": 500}, prefix="later"))
    after = dict(zip(*db.read("quadruplets", columns=["id", "split"]).to_pydict().values(), strict=True))
    assert all(after[k] == v for k, v in before.items())
    shares = Counter(split_for(f"p{i}") for i in range(20000))
    assert abs(shares["train"] / 20000 - 0.9) < 0.01 and abs(shares["bench"] / 20000 - 0.05) < 0.005
    assert np.all([split_for("abc") == split_for("abc") for _ in range(3)])


def test_curation_queries_agree_between_duckdb_and_daft(db):
    s = build_slice(db, strategy=Strategy("temperature", alpha=0.5), name="t05")
    save_slice(db, s)
    for name, params in [("edit_type_distribution", {}), ("balance_preview", {"alpha": 0.5}),
                         ("quality_outliers", {"min_edit_strength": 3, "limit": 20}),
                         ("slice_composition", {"slice_id": s.slice_id})]:
        duck = db.query(name, **params).to_pylist()
        assert duck, name
        assert duck == db.query(name, engine="daft", **params).to_pylist(), name
    preview = {r["category"]: r for r in db.query("balance_preview", alpha=0.5).to_pylist()}
    assert preview["global_style"]["share_after"] == pytest.approx(s.allocation.shares["global_style"], abs=1e-4)
    composition = db.query("slice_composition", slice_id=s.slice_id).to_pylist()
    assert sum(r["rows"] for r in composition) == 230 and sum(r["share"] for r in composition) == pytest.approx(1, 1e-3)
    with pytest.raises(lake.LakeError, match="is not a column"):
        db.query("balance_preview", by="colour; DROP TABLE x")


def test_vector_filters_and_near_duplicates(db):
    rng = np.random.default_rng(0)
    rows = rows_for({"local_add": 6}, prefix="emb")
    base = rng.standard_normal(256).astype(np.float32)
    for i, row in enumerate(rows):
        row["target_emb"] = base + (0.001 if i < 2 else 1.0) * rng.standard_normal(256).astype(np.float32)
    db.upsert("quadruplets", rows)
    assert db.sql("SELECT count(*) AS n FROM quadruplets WHERE target_emb IS NOT NULL")["n"][0].as_py() == 6
    pairs = db.query("near_duplicates", min_similarity=0.99).to_pylist()
    assert [(p["id_a"], p["id_b"]) for p in pairs] == [("emb-local_add-0000", "emb-local_add-0001")]
    assert db.query("near_duplicates", min_similarity=0.99, engine="daft").to_pylist() == pairs


def test_balance_and_slice_commands(db):
    from click.testing import CliRunner

    from lake.cli import cli

    run = lambda *a: CliRunner().invoke(cli, [*a, "--lake", db.uri])  # noqa: E731
    dry = run("balance", "--strategy", "uniform", "--dry-run")
    assert dry.exit_code == 0 and "dry run: nothing saved" in dry.output and "repeat 4.6 times" in dry.output
    assert db.count("slices") == 0
    saved = run("balance", "--strategy", "temperature", "--alpha", "0.3", "--where", "edit_strength >= 2",
                "--name", "t03")
    assert saved.exit_code == 0 and "saved slice" in saved.output, saved.output
    again = run("balance", "--strategy", "temperature", "--alpha", "0.3", "--where", "edit_strength >= 2",
                "--name", "t03-again")  # the same definition under a new name: say where it already is
    assert "already exists with this definition as 't03'; not saved again as 't03-again'" in again.output
    assert "saved slice" not in again.output and db.count("slices") == 1
    run("balance", "--strategy", "cap", "--max-repeats", "2", "--name", "unimax")
    listing = run("slice", "list").output
    assert "t03" in listing and "unimax" in listing
    shown = run("slice", "show", "t03").output
    assert "where edit_strength >= 2" in shown and "temperature" in shown
    diff = run("slice", "diff", "t03", "unimax")
    assert diff.exit_code == 0 and "share_a" in diff.output
    bad = run("balance", "--strategy", "temperature")
    assert bad.exit_code == 2 and "--strategy temperature needs --alpha" in bad.output


def test_bulk_ids_equal_the_iterator(db):
    s = build_slice(db, strategy=Strategy("uniform"), seed=9)
    for world in (1, 3):
        for rank in range(world):
            assert list(s.sampler(seed=9, rank=rank, world_size=world).remaining_ids()) == \
                list(s.sampler(seed=9, rank=rank, world_size=world))
    resumed = s.sampler(seed=9)
    it = iter(resumed)
    head = [next(it) for _ in range(11)]
    assert head + list(resumed.remaining_ids()) == list(s.sampler(seed=9))


def test_stratified_batches_smaller_than_the_category_count_take_turns(db):
    s = build_slice(db, strategy=Strategy("uniform"), seed=4, epoch_size=200)
    category = dict(zip(s.ids, s.categories, strict=True))
    order = [category[i] for i in s.sampler(seed=4, mode="stratified", batch_size=3)]
    counts = Counter(order)
    assert len(order) == 198 and max(counts.values()) - min(counts.values()) <= 1  # each category its fair turn
    for b in range(0, len(order), 3):
        assert len(set(order[b : b + 3])) == 3  # three slots, three different categories
