"""Fault injection: each writing command SIGKILLed (with its whole process group, Ray's daemons included) at a
random moment, then run again to completion, must end exactly where one uninterrupted run ends — no row lost,
none duplicated, training weights and losses bit-identical, evaluation scores identical.

Kill moments are drawn from `KIWI_FAULT_SEED` (default 0), uniformly over 10–90 % of the command's uninterrupted
duration measured in the same session (halved until the kill lands before the command ends by itself);
`KIWI_FAULT_KILLS` kills per command (`make faults`: 6 per command, 30 in all); without it, `make test` runs one
kill each of ingest, balance and train (the Ray build and evaluation kills take minutes each). Each
test prints its tally, e.g. "refvie build: 6 kills, 0 lost, 0 duplicated, 0 diverged"."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import lake

KILLS = int(os.environ.get("KIWI_FAULT_KILLS", "1"))
FULL = "KIWI_FAULT_KILLS" in os.environ  # `make faults`; `make test` runs the cheaper commands' kills only
full_suite_only = pytest.mark.skipif(not FULL, reason="minutes per kill (Ray start-up, inference): make faults")
pytestmark = pytest.mark.timeout(600 + 900 * KILLS)  # each kill: a partial run and a full rerun
SEED = int(os.environ.get("KIWI_FAULT_SEED", "0"))
BIN = Path(sys.executable).parent
SMALL = ["--size", "32", "--frames", "5"]


@dataclass
class Outcome:
    state: dict
    seconds: float


def _env(uri: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return {**env, "KIWI_LAKE": str(uri), "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"}


def run(command: list[str], uri: Path, cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=_env(uri), cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"$ {' '.join(command)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return time.perf_counter() - started


def run_killed(command: list[str], uri: Path, cwd: Path, after: float) -> bool:
    """Start the command in its own process group and SIGKILL the group after `after` seconds. True when the kill
    landed before the command finished by itself."""
    process = subprocess.Popen(command, env=_env(uri), cwd=cwd, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        process.wait(timeout=after)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return True


def digest(path: Path) -> str:
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


def kill_and_compare(name: str, template: Path, tmp_path: Path, command: list[str], state, prepare=None):
    """The uninterrupted outcome first, then KILLS fresh copies of `template` each killed once and rerun."""
    rng = np.random.default_rng([SEED, sum(name.encode())])
    reference_dir = tmp_path / "reference"
    shutil.copytree(template, reference_dir)
    seconds = run(command, reference_dir / "lake", reference_dir)
    expected = state(reference_dir)
    tally = dict(kills=0, mid_run=0, lost=0, duplicated=0, diverged=0)
    for kill in range(KILLS):
        after = float(rng.uniform(0.1, 0.9)) * seconds
        for attempt in range(4):  # a command that finished before its kill tested nothing: kill it earlier
            folder = tmp_path / f"kill{kill}-{attempt}"
            shutil.copytree(template, folder)
            if run_killed(command, folder / "lake", folder, after):
                tally["mid_run"] += 1
                break
            after /= 2
        tally["kills"] += 1
        run(command, folder / "lake", folder)
        got = state(folder)
        for key, value in expected.items():
            if got.get(key) != value:
                kind = "duplicated" if key.startswith("unique") else "lost" if key.startswith("rows") else "diverged"
                tally[kind] += 1
                print(f"\n{name}: kill {kill}: {key} differs: {got.get(key)!r} vs {value!r}")
    print(f"\n{name}: {tally['kills']} kills, {tally['lost']} lost, "
          f"{tally['duplicated']} duplicated, {tally['diverged']} diverged")
    assert tally["lost"] == tally["duplicated"] == tally["diverged"] == 0, tally
    assert tally["mid_run"] == tally["kills"], f"{name}: a kill never landed before the command finished"


def _ids(db, table: str, column: str, where: str | None = None) -> list:
    return sorted(db.read(table, columns=[column], where=where)[column].to_pylist())


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    """A lake with 48 synthetic pairs, not yet built."""
    folder = tmp_path_factory.mktemp("faults-ingested")
    run([str(BIN / "refvie"), "ingest", "--format", "synthetic", "--n", "48", "--seed", "3", *SMALL],
        folder / "lake", folder)
    return folder


@pytest.fixture(scope="module")
def built(ingested, tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults-built") / "template"
    shutil.copytree(ingested, folder)
    run([str(BIN / "refvie"), "build", "--no-ray"], folder / "lake", folder)  # the plain loop: no Ray start-up
    return folder


def test_ingest_killed_anywhere_ends_with_every_pair_once(tmp_path):
    template = tmp_path / "empty"
    template.mkdir()
    lake.open(template / "lake")

    def state(folder):
        db = lake.open(folder / "lake", create=False)
        ids = _ids(db, "pairs", "pair_id")
        return {"rows: pairs": len(set(ids)), "unique: pairs": len(ids) == len(set(ids)), "ids": ids}

    kill_and_compare("refvie ingest", template, tmp_path / "runs",
                     [str(BIN / "refvie"), "ingest", "--format", "synthetic", "--n", "60", "--seed", "1", *SMALL],
                     state)


@full_suite_only
def test_build_on_ray_killed_anywhere_ends_with_each_pair_built_or_rejected_once(ingested, tmp_path):
    def state(folder):
        db = lake.open(folder / "lake", create=False)
        quads = _ids(db, "quadruplets", "pair_id")
        rejected = _ids(db, "rejects", "input_ref", where="stage <> 'ingest'")
        return {"rows: accounted": len(set(quads) | set(rejected)),
                "unique: quadruplets": len(quads) == len(set(quads)),
                "unique: rejects": len(rejected) == len(set(rejected)),
                "unique: built xor rejected": not set(quads) & set(rejected),
                "quadruplets": quads, "rejects": rejected}

    kill_and_compare("refvie build", ingested, tmp_path, [str(BIN / "refvie"), "build"], state)


def test_balance_killed_anywhere_saves_the_slice_once(built, tmp_path):
    def state(folder):
        db = lake.open(folder / "lake", create=False)
        slices = db.read("slices", columns=["slice_id", "name"]).to_pylist()
        ids = [s["slice_id"] for s in slices if s["name"] == "t03"]
        rows = _ids(db, "slice_rows", "id", where=f"slice_id = '{ids[0]}'") if ids else []
        return {"unique: slice": len(ids), "rows: slice rows": len(rows), "unique: slice rows": len(set(rows)),
                "slice rows": rows}

    kill_and_compare("lake balance", built, tmp_path, [str(BIN / "lake"), "balance", "--strategy", "temperature",
                                                       "--alpha", "0.3", "--name", "t03"], state)


def test_train_killed_anywhere_ends_with_the_same_weights_and_losses(built, tmp_path):
    def state(folder):
        import json

        history = [json.loads(line) for line in (folder / "run" / "metrics.jsonl").read_text().splitlines()]
        by_step = {h["global_step"]: h["loss"] for h in history}  # a resumed run rewrites no step twice
        return {"diverged: weights": digest(folder / "run" / "model" / "transformer" /
                                            "diffusion_pytorch_model.safetensors"),
                "diverged: losses": [by_step[s] for s in sorted(by_step)],
                "rows: steps": sorted(by_step)}

    kill_and_compare("kiwi train", built, tmp_path, [str(BIN / "kiwi"), "train", "--config", "tiny", "--steps",
                                                     "2,3,3", "--out", "run"], state)


@full_suite_only
def test_eval_killed_anywhere_ends_with_the_same_scores(built, tmp_path_factory, tmp_path):
    template = tmp_path_factory.mktemp("faults-eval") / "template"
    shutil.copytree(built, template)
    run([str(BIN / "kiwi"), "init", "--config", "tiny", "--out", "model"], template / "lake", template)
    run([str(BIN / "kiwi"), "bench", "freeze", "fb", "--per-category", "2", "--where",
         "split IN ('train', 'val', 'bench')"], template / "lake", template)

    def state(folder):
        db = lake.open(folder / "lake", create=False)
        rows = db.read("eval_results", columns=["item_id", "metric", "value"]).to_pylist()
        keys = [(r["item_id"], r["metric"]) for r in rows]
        return {"rows: results": len(set(keys)), "unique: results": len(keys) == len(set(keys)),
                "scores": sorted((r["item_id"], r["metric"], round(r["value"], 9) if r["value"] is not None
                                  else None) for r in rows)}

    kill_and_compare("kiwi eval", template, tmp_path, [str(BIN / "kiwi"), "eval", "--model", "model", "--bench",
                                                       "fb", "--steps", "2", "--size", "32"], state)


@full_suite_only
def test_latents_killed_anywhere_end_with_every_row_cached_once_and_the_same_bits(built, tmp_path_factory, tmp_path):
    template = tmp_path_factory.mktemp("faults-latents") / "template"
    shutil.copytree(built, template)
    run([str(BIN / "kiwi"), "init", "--config", "tiny", "--out", "model"], template / "lake", template)

    def state(folder):
        db = lake.open(folder / "lake", create=False)
        keys = _ids(db, "latents", "latent_id")
        quads = _ids(db, "quadruplets", "id")
        payloads = db.read_blobs("latents", "target_latents", keys) + db.read_blobs("latents", "source_latents", keys)
        return {"rows: cached": len(set(keys)), "unique: latents": len(keys) == len(set(keys)),
                "rows: every quadruplet": len(quads),
                "diverged: latents": hashlib.blake2b(b"".join(payloads), digest_size=16).hexdigest()}

    kill_and_compare("refvie latents", template, tmp_path,
                     [str(BIN / "refvie"), "latents", "--vae", "model/vae", "--frames", "5", "--sampling", "spread",
                      "--size", "32", "--quiet"], state)
