"""Runs submitted to a Ray cluster: `kiwi train … --submit` against a local head (dashboard on 127.0.0.1, started
by the test and shut down by itself), followed with `kiwi runs list | logs`, stopped with `kiwi runs stop` and
resubmitted — ending on the weights an uninterrupted run ends on."""

import json
import socket
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import lake
from kiwi import jobs
from kiwi.cli import cli
from lake.balance import Strategy
from lake.slices import build_slice, save_slice
from tests.ray_head import ray_head

STEPS = "4,40,40"
WEIGHTS = Path("model") / "transformer" / "diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def slices(tmp_path_factory):
    from refvie.ingest import IngestConfig, ingest
    from refvie.pipeline import build_local
    from refvie.sources import SyntheticSource
    from refvie.synthetic import SyntheticConfig

    db = lake.open(tmp_path_factory.mktemp("jobs") / "lake")
    ingest(SyntheticSource(24, SyntheticConfig(frames=9, height=64, width=64, seed=6)), db,
           IngestConfig(progress=False))
    build_local(db)
    video = save_slice(db, build_slice(db, where="split = 'train'", name="jobs-video",
                                       strategy=Strategy("temperature", alpha=0.3)))
    reference = save_slice(db, build_slice(db, where="split = 'train' AND task = 'ref_subject'", name="jobs-ref"))
    return db, video, reference


def kiwi(*args):
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def metrics_lines(folder: Path) -> int:
    path = folder / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_submitted_runs_finish_are_listed_and_a_stopped_one_resumes_exactly(slices, tmp_path):
    db, video, reference = slices
    train = ["train", "--config", "tiny", "--steps", STEPS, "--video-slice", video, "--reference-slice", reference,
             "--lake", db.uri]
    with ray_head() as address:
        said = kiwi(*train, "--out", str(tmp_path / "whole"), "--submit", address)
        assert said.startswith("submitted kiwi-whole-") and "kiwi runs logs whole" in said
        assert jobs.wait(address, "whole", timeout_s=300).status == "SUCCEEDED", jobs.logs(address, "whole")

        kiwi(*train, "--out", str(tmp_path / "halted"), "--submit", address)
        deadline = time.monotonic() + 300
        while metrics_lines(tmp_path / "halted") < 6:  # well into stage 2 of 84 steps
            assert time.monotonic() < deadline and jobs.status(address, "halted") in ("PENDING", "RUNNING"), \
                jobs.logs(address, "halted")
            time.sleep(0.05)
        stopped = kiwi("runs", "stop", "halted", "--address", address)
        assert ": STOPPED at step" in stopped
        state = json.loads((tmp_path / "halted" / "checkpoint" / "state.json").read_text())
        assert 6 <= state["global_step"] < 84  # it checkpointed on the way out, mid-run
        assert "stopped at step" in jobs.logs(address, "halted")  # SIGTERM reached the trainer: a graceful stop
        assert not (tmp_path / "halted" / WEIGHTS).exists()  # a stopped run exports no model

        listed = kiwi("runs", "list", "--address", address)
        rows = {line.split()[0].rsplit("-", 3)[0]: line.split() for line in listed.splitlines()[1:]}
        assert rows["kiwi-whole"][1] == "SUCCEEDED" and rows["kiwi-whole"][2] == "84"
        assert rows["kiwi-halted"][1] == "STOPPED" and int(rows["kiwi-halted"][2]) == state["global_step"]

        kiwi(*train, "--out", str(tmp_path / "halted"), "--submit", address)  # the same command again
        assert jobs.wait(address, "halted", timeout_s=300).status == "SUCCEEDED", jobs.logs(address, "halted")
        assert metrics_lines(tmp_path / "halted") >= 84
        assert len(jobs.list_jobs(address)) == 3 and jobs.find(address, "halted").status == "SUCCEEDED"
        bad = CliRunner().invoke(cli, ["runs", "logs", "nonesuch", "--address", address])
        assert bad.exit_code == 1 and "no submitted run or job 'nonesuch'" in bad.output and "halted" in bad.output
    whole = (tmp_path / "whole" / WEIGHTS).read_bytes()
    assert (tmp_path / "halted" / WEIGHTS).read_bytes() == whole  # stopped + resubmitted == uninterrupted


def test_submit_refuses_an_address_with_no_cluster(slices, tmp_path):
    db, video, reference = slices
    result = CliRunner().invoke(cli, ["train", "--steps", "1,1,1", "--video-slice", video, "--reference-slice",
                                      reference, "--lake", db.uri, "--out", str(tmp_path / "r"), "--submit",
                                      "http://127.0.0.1:9"])
    assert result.exit_code == 1 and "no Ray cluster answers at http://127.0.0.1:9" in result.output
    assert "Traceback" not in result.output


def test_forwarded_options_name_what_was_set_with_absolute_paths(tmp_path, monkeypatch):
    import click

    from kiwi.cli_train import forwarded_options, train

    monkeypatch.setenv("RAY_ADDRESS", "http://elsewhere:8265")  # read from the environment: the cluster has its own
    monkeypatch.chdir(tmp_path)
    ctx = train.make_context("train", ["--config", "tiny-edit", "--steps", "3,1", "--model", "m", "--no-resume",
                                       "--out", "o", "--submit", "http://h:8265"])
    with ctx:
        assert isinstance(ctx, click.Context)
        args = forwarded_options(ctx, skip=("submit_to", "out", "lake_uri"))
    assert args == ["--config", "tiny-edit", "--model", str(tmp_path / "m"), "--steps", "3,1", "--no-resume"]


def test_a_head_without_its_job_agent_yet_is_asked_again(monkeypatch, tmp_path):
    calls = []

    class Starting:  # what a head that has just started answers first
        def submit_job(self, **kwargs):
            calls.append(kwargs)
            if len(calls) < 3:
                raise RuntimeError("Request failed with status code 500: No available agent to submit job, "
                                   "please try again later.")
            return kwargs["submission_id"]

    monkeypatch.setattr(jobs, "client", lambda address: Starting())
    monkeypatch.setattr(jobs.time, "sleep", lambda s: None)
    job_id = jobs.submit_train("http://head:8265", ["--steps", "1,1,1"], tmp_path / "r", "/lake")
    assert job_id.startswith("kiwi-r-") and len(calls) == 3
    assert calls[0]["entrypoint"].endswith(f"--out {tmp_path / 'r'} --lake /lake")
    assert calls[0]["metadata"] == {"kiwi": "train", "run": "r", "out": str(tmp_path / "r"), "lake": "/lake"}

    class WithoutAgent:  # a head whose agent never comes up
        def submit_job(self, **kwargs):
            raise RuntimeError("Request failed with status code 500: No available agent to submit job, "
                               "please try again later.")

    monkeypatch.setattr(jobs, "client", lambda address: WithoutAgent())
    monkeypatch.setattr(jobs.time, "monotonic", iter(range(0, 10_000, 30)).__next__)
    with pytest.raises(RuntimeError, match="has had no job agent for 60 s.*52365"):
        jobs.submit_train("http://head:8265", [], tmp_path / "r", "/lake")

    class Refusing:
        def submit_job(self, **kwargs):
            raise RuntimeError("Request failed with status code 400: bad runtime_env")

    monkeypatch.setattr(jobs, "client", lambda address: Refusing())
    with pytest.raises(RuntimeError, match="bad runtime_env"):  # any other refusal is not retried
        jobs.submit_train("http://head:8265", [], tmp_path / "r", "/lake")


def test_a_local_head_takes_jobs_beside_another_nodes_job_agent(tmp_path):
    """Every Ray node's job agent listens on 52365 unless told otherwise: a test head started while another cluster
    runs on the machine (the suite's lanes side by side) must give its agent another port, or it takes no job."""
    taken = socket.socket()
    taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        taken.bind(("0.0.0.0", 52365))
        taken.listen()
    except OSError:
        pass  # another node's agent holds it already: the same situation
    with taken, ray_head() as address:
        job_id = jobs.client(address).submit_job(entrypoint="true")
        assert job_id
