"""Edit-type labels: the offline text classifier on held-out real-style instructions, given labels and label maps,
provenance in the pipeline, relabelling as a new version, the endpoint classifier, `refvie classify`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import lake
from lake.taxonomy import EditType
from refvie.cli import cli
from refvie.labels import RuleClassifier, read_labelled
from refvie.labels.endpoint import EndpointClassifier, EndpointConfig, parse_answer
from refvie.labels.maps import LabelMap, parse_label_map
from refvie.labels.report import score
from refvie.labels.text_model import TextClassifier, TextModelConfig
from refvie.sources.base import RowProblem
from refvie.stages.classify import Classify
from refvie.synthetic import SyntheticConfig, SyntheticWorld
from tests.conftest import quadruplet_rows
from tests.fake_judge import FakeJudge
from tests.refvie_fixtures import BALANCED

# Written by hand before the grammar and the classifier existed, and never used to train or tune them (the grammar
# was written after it, by the same person: see the file's header). Only this test reads it.
HELD_OUT = Path(__file__).parent / "data" / "label_eval_heldout.tsv"


@pytest.fixture(scope="module")
def text_model() -> TextClassifier:
    return TextClassifier.load()


def test_text_classifier_on_held_out_real_style_instructions(text_model):
    texts, truth = read_labelled(HELD_OUT)
    assert len(texts) >= 150 and len(set(truth)) == 6
    report = score(truth, text_model.classify(texts))
    rules = score(truth, RuleClassifier().classify(texts))
    print(f"\nheld-out, text classifier:\n{report}\nheld-out, rules: accuracy {rules.accuracy:.3f}, "
          f"background recall {rules.recall['background_change']:.2f}")
    assert report.accuracy >= 0.92  # measured 0.967 (rules: 0.478)
    assert report.recall["background_change"] >= 0.90  # measured 0.97 (rules: 0.27)


LONG = {name: Path(__file__).parent / "data" / f"label_eval_long{name}.tsv"
        for name in ("", "_fresh", "_dev3", "_dev4", "_holdout")}


def test_text_classifier_on_long_scene_describing_instructions(text_model):
    """OpenVE-3M-style instructions (~40 words: the clip described, one edit asked, what must stay named). The
    holdout file was written after the classifier was frozen and scored once; the four others were each held out
    once, then used to develop the clause extraction, the grammar's long forms and the rules (see their headers)."""
    for name, path in LONG.items():
        texts, truth = read_labelled(path)
        assert len(texts) >= 60 and len(set(truth)) == 6
        assert sum(len(t.split()) for t in texts) / len(texts) >= 20  # words on average (24-37 a set)
        report = score(truth, text_model.classify(texts))
        print(f"\nlong instructions ({path.name}):\n{report}")
        if name == "_holdout":  # measured 0.983, background precision 1.00 (the whole text, unextracted: 0.750)
            assert report.accuracy >= 0.92 and report.precision["background_change"] >= 0.9
        else:  # measured 0.972 / 0.917 / 0.950 / 0.933 on the four development sets
            assert report.accuracy >= 0.9


def test_the_edit_clause_of_a_long_instruction():
    from refvie.labels.clauses import edit_clause

    assert edit_clause("In a sunny park where children play on the swings and dogs chase balls across the grass, "
                       "remove the red kite from the sky, keeping the park and the children unchanged.") \
        == "remove the red kite from the sky"
    assert edit_clause("The video shows a man walking his dog along a beach at sunset with waves rolling in. "
                       "I want the dog to be a white horse instead.") == "the dog to be a white horse instead"
    assert edit_clause("A chef cooks in a busy kitchen full of steam and copper pans hanging above the stove. The "
                       "whole video should look like a watercolour painting.") \
        == "The whole video should look like a watercolour painting"
    assert edit_clause("Add a hat to the man") == "Add a hat to the man"  # short: one request already
    described = "A woman walks along a river past old stone houses while boats drift by in the morning light"
    assert edit_clause(described) == described  # nothing asked: the text as it is


def test_text_classifier_keeps_the_synthetic_world(text_model):
    world = SyntheticWorld(SyntheticConfig(frames=1, height=32, width=32, mix=BALANCED, seed=11))
    samples = list(world.samples(1000))
    report = score([s.edit_type for s in samples], text_model.classify([s.instruction for s in samples]))
    print(f"\nsynthetic (seed 11, not the training seed): accuracy {report.accuracy:.3f}")
    assert report.accuracy >= 0.99


def test_confidence_is_calibrated_and_low_confidence_is_flagged(text_model):
    texts, truth = read_labelled(HELD_OUT)
    labels = text_model.predict(texts)
    confidence = np.array([label.confidence for label in labels])
    correct = np.array([label.edit_type == t for label, t in zip(labels, truth, strict=True)])
    assert np.all((confidence > 0) & (confidence <= 1))
    assert all(label.needs_review == (label.confidence < text_model.config.review_threshold) for label in labels)
    assert confidence[correct].mean() > confidence[~correct].mean()  # wrong answers are less sure


def test_training_is_deterministic(text_model):
    config = TextModelConfig(per_category=40, synthetic=30, epochs=3)
    a = TextClassifier.train(config)
    b = TextClassifier.train(config)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params) and a.temperature == b.temperature



def test_processes_reaching_first_use_together_train_the_head_once(tmp_path, monkeypatch):
    """The pipeline's classify workers all load the classifier as they start: on a machine without the cached head
    the first one trains it and the others wait for its file instead of training the same head again."""
    import threading

    monkeypatch.setenv("KIWI_LAKE_CACHE", str(tmp_path))
    config = TextModelConfig(per_category=40, synthetic=30, epochs=3)
    trained, train = [], TextClassifier.train.__func__

    def counted(cls, *args, **kwargs):
        trained.append(threading.get_ident())
        return train(cls, *args, **kwargs)

    monkeypatch.setattr(TextClassifier, "train", classmethod(counted))
    heads = [None] * 3

    def first_use(i):
        heads[i] = TextClassifier.load(config)

    workers = [threading.Thread(target=first_use, args=(i,)) for i in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(trained) == 1
    assert all(np.array_equal(h.params["w1"], heads[0].params["w1"]) for h in heads)
    assert all(h.temperature == heads[0].temperature for h in heads)


# ---------------------------------------------------------------------------------------------- label maps
def test_openve_categories_map_onto_ours():
    openve = parse_label_map("openve")
    assert openve.apply("Background Change") == "background_change"
    assert openve.apply("camera multi-shot") == "other" and openve.apply("Subtitles") == "other"
    assert openve.apply("creative") == "other" and openve.apply("local_add") == "local_add"
    assert openve.apply(None) is None and openve.apply("  ") is None
    with pytest.raises(RowProblem, match="'teleport' is not a known category") as problem:
        openve.apply("teleport")
    assert problem.value.reason == "unknown_edit_type"


def test_label_maps_from_the_command_line_and_yaml(tmp_path):
    assert parse_label_map("bg=background_change,add=local_add").apply("BG") == "background_change"
    (tmp_path / "map.yaml").write_text("swap: local_change\nerase: local_remove\n")
    assert parse_label_map(str(tmp_path / "map.yaml")).apply("Erase") == "local_remove"
    with pytest.raises(ValueError, match="'x' maps to 'sideways'"):
        parse_label_map("x=sideways")
    with pytest.raises(ValueError, match="is not their=ours"):
        parse_label_map("nonsense")
    assert LabelMap().apply("global_style") == "global_style"


def test_ingest_translates_given_labels_and_rejects_unknown_ones(tmp_path):
    from tests.datasets import make_dataset

    data = make_dataset(tmp_path / "d")
    rows = [dict(before=s, after=t, text=p, category=c) for (s, t, p), c in
            zip(data.good_pairs[:3], ["Local Add", "Camera Multi-Shot", "Levitation"], strict=True)]
    manifest = tmp_path / "openve.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows))
    db = lake.open(tmp_path / "lake")
    result = CliRunner().invoke(cli, ["ingest", str(manifest), "--format", "manifest", "--root", str(data.root),
                                      "--map", "source=before", "--map", "target=after", "--map", "instruction=text",
                                      "--map", "edit_type=category", "--label-map", "openve", "--quiet",
                                      "--lake", str(tmp_path / "lake")])
    assert result.exit_code == 0, result.output
    given = sorted(db.read("pairs", columns=["gt_edit_type"])["gt_edit_type"].to_pylist())
    assert given == ["local_add", "other"]
    reject = db.read("rejects", where="stage = 'ingest'").to_pylist()
    assert [r["reason"] for r in reject] == ["unknown_edit_type"] and "'Levitation'" in reject[0]["detail"]
    meta = [json.loads(m) for m in db.read("pairs", columns=["meta"])["meta"].to_pylist()]
    assert {m.get("given_label") for m in meta} == {"Local Add", "Camera Multi-Shot"}  # the dataset's own word


# ---------------------------------------------------------------------------------------------- the pipeline
def test_a_given_label_wins_and_the_classifier_answer_is_kept(text_model):
    batch = {"instruction": np.array(["Remove the lamp", "Replace the sky with a sunset", "Zoom in"], dtype=object),
             "gt_edit_type": np.array(["local_add", "", None], dtype=object)}
    out = Classify(text_model)(batch)
    assert list(out["edit_type"]) == ["local_add", "background_change", "other"]
    assert list(out["edit_type_source"]) == ["given", "text-model", "text-model"]
    assert list(out["edit_type_predicted"]) == ["local_remove", "background_change", "other"]
    assert list(out["task"]) == ["ref_subject", "ref_background", "instruct"]
    assert not out["needs_review"][0]  # a given label is never flagged


def test_built_quadruplets_carry_provenance_and_disagreements_are_listed(tmp_path):
    from tests.conftest import synthetic_quadruplet_lake

    db = synthetic_quadruplet_lake(tmp_path / "lake", n=16, seed=3, frames=5, size=48)
    rows = db.read("quadruplets", columns=["edit_type", "edit_type_source", "edit_type_predicted",
                                           "edit_type_confidence", "needs_review"]).to_pylist()
    assert rows and all(r["edit_type_source"] == "given" for r in rows)  # the synthetic world knows its edits
    assert all(r["edit_type_predicted"] and 0 < r["edit_type_confidence"] <= 1 for r in rows)
    from lake.cli import cli as lake_cli

    empty = CliRunner().invoke(lake_cli, ["query", "label_disagreements", "--lake", str(tmp_path / "lake")])
    assert empty.exit_code == 0 and empty.output.startswith("(no rows; columns: given, predicted, rows")
    db.update_columns("quadruplets", [dict(id=db.read("quadruplets", columns=["id"])["id"][0].as_py(),
                                           edit_type_predicted="other")], ["edit_type_predicted"])
    disagreements = db.query("label_disagreements").to_pylist()
    assert len(disagreements) == 1 and disagreements[0]["predicted"] == "other" and disagreements[0]["rows"] == 1
    confusion = db.query("label_confusion").to_pylist()
    assert sum(r["rows"] for r in confusion) == len(rows)


def test_relabel_writes_a_tagged_version_and_leaves_saved_slices_alone(tmp_path, text_model):
    from lake.slices import build_slice, load_slice, save_slice

    db = lake.open(tmp_path / "lake")
    rows = quadruplet_rows(10, videos=False)
    texts = ["Remove the lamp", "Add a dog on the sofa", "The couple now walks along a harbour",
             "Give the footage a warm vintage look", "Play it backwards"] * 2
    for row, text in zip(rows, texts, strict=True):
        row.update(instruction=text, edit_type="local_add", edit_type_source="rules")
    rows[1]["edit_type_source"] = "given"
    db.upsert("quadruplets", rows)
    before = db.table("quadruplets").version
    saved = build_slice(db, name="before-relabel")
    save_slice(db, saved)

    result = CliRunner().invoke(cli, ["relabel", "--lake", str(tmp_path / "lake")])
    assert result.exit_code == 0, result.output
    assert "changed category" in result.output and "tagged" in result.output
    after = {r["id"]: r for r in db.read("quadruplets").to_pylist()}
    assert after[rows[0]["id"]]["edit_type"] == "local_remove"
    assert after[rows[2]["id"]]["edit_type"] == "background_change"
    assert after[rows[2]["id"]]["task"] == "ref_background"
    assert after[rows[1]["id"]]["edit_type_source"] == "given"  # given labels stay
    assert after[rows[3]["id"]]["edit_type_source"] == "text-model"
    assert db.tags("quadruplets")[-1][2] == db.table("quadruplets").version > before
    old = db.read("quadruplets", columns=["edit_type"], version=before)["edit_type"].to_pylist()
    assert set(old) == {"local_add"}  # the old version is still there, unchanged
    reloaded = load_slice(db, "before-relabel")
    assert reloaded.table_version == before and list(reloaded.ids) == list(saved.ids)
    assert set(reloaded.categories) == {"local_add"}


# ---------------------------------------------------------------------------------------------- endpoint
def test_the_endpoint_answer_format_is_strict():
    assert parse_answer("category: background_change; confidence: 0.9") == (EditType.BACKGROUND_CHANGE, 0.9)
    assert parse_answer("  Category: OTHER ; Confidence: 1\n") == (EditType.OTHER, 1.0)
    for bad in ("background", "category: sky_change; confidence: 0.5", "category: other; confidence: 7"):
        with pytest.raises(Exception, match="expected|not one of"):
            parse_answer(bad)


def test_endpoint_classifier_against_a_local_server(tmp_path):
    server = FakeJudge()
    try:
        server.script = [("answer", "I think it is a background change"),
                         ("answer", "category: background_change; confidence: 0.8")]
        server.default = ("answer", "category: local_remove; confidence: 0.4")
        config = EndpointConfig(server.url, "tiny-vlm", backoff_s=0.01, concurrency=1, cache_dir=str(tmp_path))
        classifier = EndpointClassifier(config)
        labels = classifier.predict(["Put them on a beach", "Lose the earrings"])
        assert [(lb.edit_type.value, lb.confidence, lb.source) for lb in labels] == [
            ("background_change", 0.8, "endpoint"), ("local_remove", 0.4, "endpoint")]
        assert labels[1].needs_review and not labels[0].needs_review
        assert len(server.requests) == 3  # one malformed answer retried
        prompt = server.requests[0]["body"]["messages"][0]["content"][0]["text"]
        assert "Put them on a beach" in prompt and "category:" in prompt
        again = EndpointClassifier(config).predict(["Put them on a beach"])
        assert again[0].edit_type == EditType.BACKGROUND_CHANGE and len(server.requests) == 3  # from the cache
    finally:
        server.close()


# ---------------------------------------------------------------------------------------------- CLI
def test_refvie_classify_prints_one_line_per_instruction_in_order(text_model):
    text = "Remove the lamp\n\nThe scene takes place in a futuristic city\nGive it a sepia tone\n"
    result = CliRunner().invoke(cli, ["classify", "-"], input=text)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["local_remove", "background_change", "global_style"]
    assert all(line.split("\t")[2] == "text-model" and line.split("\t")[3] for line in lines)
    rules = CliRunner().invoke(cli, ["classify", "--classifier", "rules", "-"], input="Remove the lamp\n")
    assert rules.stdout == "local_remove\t-\trules\tRemove the lamp\n"
    missing = CliRunner().invoke(cli, ["classify", "--classifier", "endpoint", "-"], input="x\n")
    assert missing.exit_code != 0 and "--endpoint-url" in missing.output


def test_classifier_train_command_writes_its_corpus_and_scores_a_labelled_file(tmp_path):
    corpus = tmp_path / "corpus.tsv"
    dev = Path(__file__).parents[1] / "refvie" / "labels" / "dev.tsv"
    result = CliRunner().invoke(cli, ["classifier", "train", "--write-corpus", str(corpus), "--evaluate", str(dev)])
    assert result.exit_code == 0, result.output
    texts, labels = read_labelled(corpus)
    assert len(texts) == 6 * TextModelConfig().per_category + TextModelConfig().synthetic
    assert set(labels) == set(EditType)
    assert "trained in" in result.output and "accuracy" in result.output
