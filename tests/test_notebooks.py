"""Every notebook executes headlessly on a small synthetic lake, and shows what it promises."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import lake
from refvie.ingest import IngestConfig, ingest
from refvie.pipeline import build_local
from refvie.sources import SyntheticSource
from refvie.synthetic import SyntheticConfig

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def small_lake(tmp_path_factory):
    uri = tmp_path_factory.mktemp("nb") / "lake"
    db = lake.open(uri)
    ingest(SyntheticSource(40, SyntheticConfig(frames=9, height=64, width=64, seed=4)), db,
           IngestConfig(progress=False))
    build_local(db)
    return str(uri)


def execute(path: Path, lake_uri: str, monkeypatch) -> nbformat.NotebookNode:
    monkeypatch.setenv("KIWI_LAKE", lake_uri)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}},
                   transport="ipc").execute()
    return notebook


def outputs(notebook, kind: str) -> list:
    return [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
            if kind in o.get("data", {})]


def test_every_notebook_is_listed():
    assert [p.name for p in NOTEBOOKS] == ["01_explore.ipynb", "02_curate.ipynb", "03_train.ipynb",
                                           "04_evaluate.ipynb", "05_mix.ipynb"]


def test_explore_notebook(small_lake, monkeypatch):
    nb = execute(NOTEBOOKS[0], small_lake, monkeypatch)
    assert len(outputs(nb, "image/png")) >= 2  # edit-type and task charts
    html = "".join(o["data"]["text/html"] for o in outputs(nb, "text/html"))
    assert "<video" in html and "data:image/jpeg;base64" in html


def test_curate_notebook_saves_a_slice(small_lake, monkeypatch):
    nb = execute(NOTEBOOKS[1], small_lake, monkeypatch)
    assert len(outputs(nb, "image/png")) >= 1
    saved = lake.open(small_lake).read("slices", columns=["name"])["name"].to_pylist()
    assert "notebook-temperature-0.3" in saved


def test_train_notebook_submits_to_the_cluster_stops_resumes_and_compares(small_lake, monkeypatch, tmp_path):
    """Notebook 03 with $RAY_ADDRESS set: its runs go to a local Ray head (started here, 127.0.0.1) as jobs."""
    import re

    from tests.ray_head import ray_head

    monkeypatch.setenv("KIWI_NB_STEPS", "2,20,20")
    monkeypatch.setenv("KIWI_NB_RUNS", str(tmp_path / "runs"))
    with ray_head() as address:
        monkeypatch.setenv("RAY_ADDRESS", address)
        nb = execute(NOTEBOOKS[2], small_lake, monkeypatch)
        from kiwi.jobs import list_jobs

        submitted = list_jobs(address)
    assert [j.run for j in submitted] == ["rebalanced", "rebalanced", "natural"]
    assert [j.status for j in submitted] == ["STOPPED", "SUCCEEDED", "SUCCEEDED"]
    assert len(outputs(nb, "image/png")) >= 3  # the balance, the live curve and consumption, the comparison
    text = "".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", []))
    assert f"runs go to {address}" in text
    stopped = int(re.search(r"stopped after (\d+) steps", text).group(1))
    assert 21 <= stopped < 42 and "resumed and finished at step 42" in text
    runs = lake.open(small_lake).read("runs", columns=["name", "status"]).to_pylist()
    assert {(r["name"], r["status"]) for r in runs} >= {("nb-rebalanced", "finished"), ("nb-natural", "finished")}
    html = "".join(o["data"]["text/html"] for o in outputs(nb, "text/html"))
    assert "nb-rebalanced" in html and "nb-natural" in html  # the comparison in SQL


def test_evaluate_notebook_scores_a_model_against_the_baseline_and_shows_its_edits(small_lake, monkeypatch,
                                                                                   tmp_path):
    monkeypatch.setenv("KIWI_NB_EVAL_STEPS", "3")
    monkeypatch.setenv("KIWI_NB_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv("KIWI_JUDGE_URL", raising=False)
    nb = execute(NOTEBOOKS[3], small_lake, monkeypatch)
    assert len(outputs(nb, "image/png")) >= 2  # the baseline, the model beside it
    html = "".join(o["data"]["text/html"] for o in outputs(nb, "text/html"))
    assert "tiny-edit - copy-source" in html and html.count("data:image/png;base64") >= 2 * 4
    db = lake.open(small_lake)
    assert db.count("eval_results", "bench = 'nb-bench' AND model <> 'copy-source'") > 0


def test_mix_notebook_runs_the_experiment_and_shows_weights_verdict_and_edits(small_lake, monkeypatch, tmp_path):
    monkeypatch.setenv("KIWI_NB_MIX_STEPS", "3")
    monkeypatch.setenv("KIWI_NB_MIX_ARMS", "natural,adaptive:24")
    monkeypatch.setenv("KIWI_NB_MIX_ITEMS", "2")
    monkeypatch.setenv("KIWI_NB_RUNS", str(tmp_path / "runs"))
    nb = execute(NOTEBOOKS[4], small_lake, monkeypatch)
    markdown = "".join(o["data"]["text/markdown"] for o in outputs(nb, "text/markdown"))
    assert "**Verdict**" in markdown and "adaptive:24 vs natural: background_change" in markdown
    assert len(outputs(nb, "image/png")) >= 3  # per-category bars, adaptive weights, training curves
    html = "".join(o["data"]["text/html"] for o in outputs(nb, "text/html"))
    assert "global_step" in html and "weight" in html  # mix_weights joined with runs in SQL
    assert html.count("data:image/png;base64") >= 3 * 4  # source, two arms, target per item
    assert (tmp_path / "runs" / "mix" / "report.md").exists()
