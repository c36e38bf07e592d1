"""`kiwi runs list | logs | stop`: training runs submitted to a Ray cluster with `kiwi train … --submit`."""

from __future__ import annotations

import time

import click

address_option = click.option("--address", envvar="RAY_ADDRESS", required=True, metavar="ADDRESS",
                              help="The cluster: http://HEAD:8265 (its dashboard) or ray://HEAD:10001 "
                                   "[env: RAY_ADDRESS].")


def _call(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except (LookupError, ConnectionError, TimeoutError, RuntimeError) as e:
        raise click.ClickException(str(e).strip("'\"")) from None


@click.group("runs")
def runs_group() -> None:
    """Follow and stop runs submitted to a Ray cluster (kiwi train … --submit ADDRESS)."""


@runs_group.command("list")
@address_option
def list_command(address: str) -> None:
    """Every submitted run: job id, status, steps so far (when its folder is visible here), run folder."""
    from kiwi.jobs import list_jobs

    jobs = _call(list_jobs, address)
    if not jobs:
        click.echo(f"no runs submitted to {address}")
        return
    click.echo(f"{'job':44s} {'status':10s} {'steps':>6s}  {'started':19s}  run folder")
    for job in jobs:
        steps = job.steps()
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.started)) if job.started else "-"
        click.echo(f"{job.job_id:44s} {job.status:10s} {'-' if steps is None else steps:>6}  {started:19s}  "
                   f"{job.out}")


@runs_group.command("logs")
@click.argument("run")
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the job ends.")
@address_option
def logs_command(run: str, follow: bool, address: str) -> None:
    """The log of RUN (a run folder's name, for its latest job, or a job id)."""
    from kiwi import jobs

    if follow:
        _call(lambda: [click.echo(chunk, nl=False) for chunk in jobs.follow(address, run)])
        return
    click.echo(_call(jobs.logs, address, run), nl=False)


@runs_group.command("stop")
@click.argument("run")
@click.option("--wait", "wait_s", type=float, default=120, show_default=True,
              help="Seconds to wait for the job to checkpoint and end.")
@address_option
def stop_command(run: str, wait_s: float, address: str) -> None:
    """Stop RUN: it checkpoints and ends; `kiwi train` with the same options (and --submit) resumes it."""
    from kiwi.jobs import TERMINAL, find, stop

    ended = _call(find, address, run).status in TERMINAL
    job = _call(stop, address, run, wait_s)
    steps = job.steps()
    click.echo(f"{job.job_id}: {'had already ended, ' if ended else ''}{job.status}"
               + (f" at step {steps}" if steps is not None else "") + f"; run folder {job.out}")
