"""Training runs as Ray jobs: `kiwi train … --submit ADDRESS` (or `submit_train` from Python) hands the run to a
cluster through Ray's Jobs API, with this project as the job's working directory; `kiwi runs list | logs | stop`
follow and stop it by run name or job id. A run is its `--out` folder: a stopped job checkpoints on the way out
(Ray sends SIGTERM and waits `stop_grace_s` before SIGKILL), and resubmitting the same command resumes it exactly,
as a local run does. The folder and the lake must be at the same place for the cluster as for you (shared storage
or object storage)."""

from __future__ import annotations

import json
import logging
import shlex
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import kiwi

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
# what a job's working directory leaves out: environments, data, outputs and version control
UPLOAD_EXCLUDES = [".venv/", ".git/", "data/", "runs/", "build/", "**/__pycache__/", "*.egg-info/"]


@contextmanager
def quiet(*loggers: str):
    """Ray's advice lines while submitting (token auth enabled, directories left out of the upload) are noise in
    a command's output; errors still show."""
    saved = [(logging.getLogger(name), logging.getLogger(name).level) for name in loggers]
    for log, _ in saved:
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for log, level in saved:
            log.setLevel(level)


def project_root() -> Path | None:
    """The source checkout kiwi runs from (it holds pyproject.toml), or None for an installed package."""
    root = Path(kiwi.__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").exists() else None


def client(address: str):
    """A Jobs API client for `address`: the dashboard (http://HEAD:8265) or a Ray Client address (ray://HEAD:10001),
    which Ray resolves to the dashboard. A cluster with token authentication (Ray's default for the clusters it
    starts) gets the token this machine holds ($RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token), as
    `ray.init` does when it connects; RAY_AUTH_MODE set explicitly wins."""
    from ray.job_submission import JobSubmissionClient

    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )

        with quiet("ray._private.authentication.authentication_token_setup"):  # "enabled for this cluster"
            maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    except ImportError:  # a Ray without token authentication
        pass

    try:
        return JobSubmissionClient(address)
    except ImportError as e:
        raise RuntimeError(f"submitting runs needs Ray's job client: {e}") from None
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ConnectionError(f"no Ray cluster answers at {address}: {e}") from None


@dataclass(frozen=True)
class Job:
    """One submitted run as the cluster reports it."""

    job_id: str
    run: str  # the run folder's name: what `kiwi runs logs|stop` accept besides the job id
    status: str
    out: str
    lake: str
    started: float | None  # seconds since the epoch
    ended: float | None
    message: str

    def steps(self) -> int | None:
        """Steps done so far, from the run folder (None when this machine cannot see it)."""
        state = Path(self.out) / "checkpoint" / "state.json"
        metrics = Path(self.out) / "metrics.jsonl"
        if metrics.exists():
            lines = metrics.read_text().splitlines()
            return json.loads(lines[-1])["global_step"] if lines else 0
        if state.exists():
            return json.loads(state.read_text())["global_step"]
        return None


def _job(details) -> Job:
    meta = details.metadata or {}
    return Job(details.submission_id or details.job_id, meta.get("run", "?"), str(details.status.value),
               meta.get("out", ""), meta.get("lake", ""),
               details.start_time / 1000 if details.start_time else None,
               details.end_time / 1000 if details.end_time else None, details.message or "")


def train_entrypoint(train_args: list[str], out: str | Path, lake_uri: str) -> str:
    """The shell command the job runs: `kiwi train` with the run folder and lake spelled out."""
    argv = ["python", "-m", "kiwi.cli", "train", *train_args, "--out", str(out), "--lake", lake_uri]
    return shlex.join(argv)


def submit_train(address: str, train_args: list[str], out: str | Path, lake_uri: str, *,
                 env: dict[str, str] | None = None, num_cpus: float | None = None, num_gpus: float | None = None,
                 stop_grace_s: int = 60, working_dir: str | Path | None = None, agent_wait_s: float = 60) -> str:
    """Submit `kiwi train TRAIN_ARGS --out OUT --lake LAKE` as a Ray job; returns its job id. `out` is made
    absolute; the job's working directory is this checkout (or `working_dir`), uploaded by Ray. A cluster whose
    job agent is not up yet (a head that has just started) is asked again for up to `agent_wait_s`."""
    out = Path(out).expanduser().resolve()
    root = Path(working_dir) if working_dir is not None else project_root()
    runtime_env: dict = {"env_vars": {"RAY_JOB_STOP_WAIT_TIME_S": str(stop_grace_s), **(env or {})}}
    if root is not None:
        runtime_env |= {"working_dir": str(root), "excludes": UPLOAD_EXCLUDES}
    job_id = f"kiwi-{out.name}-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 1_000_000:06d}"
    jobs = client(address)
    deadline = time.monotonic() + agent_wait_s
    while True:
        try:
            with quiet("ray._private.runtime_env.working_dir", "ray._private.runtime_env.packaging",
                       "ray.dashboard.modules.dashboard_sdk"):
                return jobs.submit_job(
                    entrypoint=train_entrypoint(train_args, out, lake_uri), submission_id=job_id,
                    runtime_env=runtime_env, metadata={"kiwi": "train", "run": out.name, "out": str(out),
                                                       "lake": lake_uri},
                    entrypoint_num_cpus=num_cpus, entrypoint_num_gpus=num_gpus)
        except RuntimeError as e:  # a head that has just started has no job agent yet: Ray says to try again
            if "No available agent" not in str(e):
                raise
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the Ray head at {address} has had no job agent for {agent_wait_s:.0f} s, so it takes no jobs: "
                    "its dashboard agent did not start (on the head machine, another Ray node may hold the agent's "
                    "port, 52365 unless `ray start --dashboard-agent-listen-port` names another; see the head's "
                    "dashboard_agent.log)") from e
            time.sleep(1.0)


def list_jobs(address: str) -> list[Job]:
    """Runs submitted from kiwi, oldest first."""
    jobs = [_job(d) for d in client(address).list_jobs() if (d.metadata or {}).get("kiwi") == "train"]
    return sorted(jobs, key=lambda j: j.started or 0)


def find(address: str, name: str) -> Job:
    """The job named `name` (a job id), or the latest job of the run folder named `name`."""
    jobs = list_jobs(address)
    for job in jobs:
        if job.job_id == name:
            return job
    of_run = [j for j in jobs if j.run == name]
    if not of_run:
        known = sorted({j.run for j in jobs})
        raise LookupError(f"no submitted run or job {name!r} at {address}"
                          + (f"; runs there: {', '.join(known)}" if known else "; nothing was submitted there"))
    return of_run[-1]


def logs(address: str, name: str) -> str:
    return client(address).get_job_logs(find(address, name).job_id)


def follow(address: str, name: str):
    """The job's log as it is written, chunk by chunk, until the job ends."""
    import asyncio

    loop = asyncio.new_event_loop()
    chunks = client(address).tail_job_logs(find(address, name).job_id)
    try:
        while True:
            try:
                yield loop.run_until_complete(chunks.__anext__())
            except StopAsyncIteration:
                return
    finally:
        loop.run_until_complete(chunks.aclose())
        loop.close()


def status(address: str, name: str) -> str:
    return find(address, name).status


def wait(address: str, name: str, timeout_s: float = 3600, poll_s: float = 1.0) -> Job:
    """Block until the job ends; the ended job."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = find(address, name)
        if job.status in TERMINAL:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job.job_id} still {job.status} after {timeout_s:g} s")
        time.sleep(poll_s)


def stop(address: str, name: str, wait_s: float = 120) -> Job:
    """Ask the job to stop (it checkpoints first) and wait until it has; the stopped job."""
    job = find(address, name)
    if job.status in TERMINAL:
        return job
    client(address).stop_job(job.job_id)
    return wait(address, job.job_id, timeout_s=wait_s, poll_s=0.5)


class SubmittedRun:
    """A submitted run with the handle a notebook's local `kiwi.runs.BackgroundRun` has: `running`, `stop()`,
    `wait()`, `history()`."""

    def __init__(self, address: str, train_args: list[str], out: str | Path, lake_uri: str, **submit_options):
        self.address, self.train_args, self.lake_uri = address, list(train_args), lake_uri
        self.out = Path(out).expanduser().resolve()
        self.options = submit_options
        self.job_id: str | None = None

    def start(self) -> SubmittedRun:
        self.job_id = submit_train(self.address, self.train_args, self.out, self.lake_uri, **self.options)
        return self

    @property
    def job(self) -> Job:
        return find(self.address, self.job_id)

    @property
    def running(self) -> bool:
        return self.job.status not in TERMINAL

    def stop(self) -> Job:
        return stop(self.address, self.job_id)

    def wait(self, timeout_s: float = 3600) -> Job:
        job = wait(self.address, self.job_id, timeout_s)
        if job.status == "FAILED":
            raise RuntimeError(f"run {job.run} failed on the cluster ({job.message}); its log:\n"
                               + logs(self.address, self.job_id)[-4000:])
        return job

    def history(self) -> list[dict]:
        from kiwi.runs import read_history

        return read_history(self.out)
