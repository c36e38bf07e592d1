"""`kiwi train` and `kiwi plan`: the tiny recipes on a CPU, and the published recipe checked, planned and launched."""

from __future__ import annotations

import json
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

import click

from lake.cli_common import lake_option, on_terminal, open_lake


@click.command()
@click.option("--config", "recipe", type=click.Choice(["tiny", "tiny-edit", "kiwi-paper", "kiwi-paper-refvid-only"]),
              default="tiny", show_default=True,
              help="Model and curriculum: tiny (three stages, the full architecture at toy width), tiny-edit (the "
                   "CPU model that learns edits; two stages at 32x32), kiwi-paper (the published recipe: the full "
                   "model, GPUs) or its reference-only stage-3 variant.")
@click.option("--image-slice", default=None, help="kiwi-paper: slice of image pairs (stage 1, and the image task of "
              "stages 2-3). Every slice option takes a saved slice's name or id, or \"STRATEGY WHERE SQL\" to build "
              "and save one now, e.g. \"temperature:0.3 WHERE split = 'train'\".")
@click.option("--video-slice", default=None, help="Slice for the image/instruct stages (default: built now from the "
              "train split, temperature 0.3 over edit_type; kiwi-paper: required).")
@click.option("--reference-slice", default=None, help="Slice for the reference stage (default: built now over the "
              "train split's ref_subject rows; kiwi-paper: required).")
@click.option("--model", "model_dir", default=None, type=click.Path(path_type=Path),
              help="Start from this model folder (default: a fresh tiny model).")
@click.option("--out", default="runs/tiny", show_default=True, type=click.Path(path_type=Path))
@click.option("--steps", default=None, help="Steps per stage, comma-separated (tiny: 4,8,8; tiny-edit: 1500,300).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--name", default=None, help="The run's name in the runs table (default: the recipe's: tiny, tiny-edit).")
@click.option("--no-resume", is_flag=True, help="Start over even if OUT holds a checkpoint.")
@click.option("--adaptive-every", type=int, default=0, show_default=True, metavar="SAMPLES",
              help="Adaptive rebalancing of the instruct stage: move the category mix every SAMPLES samples from the "
                   "held-out loss of validation rows (0: the slice's static mix). Weights land in mix_weights.")
@click.option("--workers", type=int, default=1, show_default=True, help="Ray Train workers (1: this process).")
@click.option("--gpu", is_flag=True, help="One GPU per Ray Train worker.")
@click.option("--fsdp", is_flag=True, help="With --workers: shard parameters, gradients and optimizer state over the "
              "workers (FSDP2, sharded checkpoints) instead of a whole model on each (DDP).")
@click.option("--ray-address", default=None, envvar="RAY_ADDRESS", help="Ray cluster for --workers > 1.")
@click.option("--dry-run", is_flag=True, help="Check every stage's slices (rows, tasks, references, clip geometry) "
              "and print the plan (memory per GPU, steps, samples) without training; exit 1 on a problem.")
@click.option("--gpu-memory", type=click.FloatRange(min=1), default=80.0, show_default=True,
              help="--dry-run: GiB per GPU for the plan.")
@click.option("--submit", "submit_to", default=None, metavar="ADDRESS",
              help="Run it as a Ray job on the cluster at ADDRESS (http://HEAD:8265 or ray://HEAD:10001) with this "
                   "project as its working directory; `kiwi runs list|logs|stop` follow it. OUT and the lake must be "
                   "where the cluster sees them too.")
@click.option("--latents", type=click.Choice(["auto", "require", "off"]), default="auto", show_default=True,
              help="Read target clips as cached VAE latents (`refvie latents`) where the lake holds them for the "
                   "stage's geometry and this model's VAE (auto), refuse to train without them (require), or always "
                   "decode (off).")
@lake_option
@click.pass_context
def train(ctx, recipe, image_slice, video_slice, reference_slice, model_dir, out, steps, seed, name, no_resume,
          adaptive_every, workers, gpu, fsdp, ray_address, dry_run, gpu_memory, submit_to, latents, lake_uri) -> None:
    """Train through a staged curriculum, streaming slices from the lake; resumes from OUT's checkpoint."""
    if submit_to:
        _submit(ctx, submit_to, out, lake_uri)
        return
    from kiwi import curriculum
    from kiwi.model.io import from_pretrained, save_pretrained
    from kiwi.model.kiwi_edit import KiwiConfig
    from kiwi.train import Trainer
    from lake.balance import Strategy
    from lake.slices import build_slice, save_slice

    if recipe.startswith("kiwi-paper"):
        _train_paper(recipe, image_slice, video_slice, reference_slice, model_dir, out, steps, seed, no_resume,
                     workers, gpu, fsdp, ray_address, dry_run, gpu_memory, lake_uri, latents)
        return
    if dry_run:
        raise click.UsageError("--dry-run checks the published recipe (--config kiwi-paper); the tiny recipes "
                               "start in seconds")
    steps = steps or {"tiny": "4,8,8", "tiny-edit": "1500,300"}[recipe]
    recipe_fn = {"tiny": curriculum.tiny, "tiny-edit": curriculum.tiny_edit}[recipe]
    try:
        counts = tuple(int(s) for s in steps.split(","))
    except ValueError:
        raise click.BadParameter(f"{steps!r} is not comma-separated step counts, e.g. 1500,300",
                                 param_hint="--steps") from None
    try:
        recipe_fn("video", "reference", counts, seed=seed)  # the step counts are checked before the lake is touched
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--steps") from None
    db = open_lake(lake_uri)
    video_slice = video_slice and _slice_option(db, video_slice, "--video-slice", f"{recipe}-video", seed)
    reference_slice = reference_slice and _slice_option(db, reference_slice, "--reference-slice",
                                                        f"{recipe}-reference", seed)
    if video_slice is None:
        video_slice = save_slice(db, build_slice(db, where="split = 'train'", seed=seed, name="train-video-t03",
                                                 strategy=Strategy("temperature", alpha=0.3)))
    if reference_slice is None and counts[-1] == 0:  # no reference stage to run: no reference rows needed
        reference_slice = video_slice
    if reference_slice is None:  # tiny-edit learns background plates too (the task label only names the queries)
        tasks = "('ref_subject', 'ref_background')" if recipe == "tiny-edit" else "('ref_subject')"
        reference_slice = save_slice(db, build_slice(db, where=f"split = 'train' AND task IN {tasks}",
                                                     seed=seed, name=f"train-reference-{recipe}"))
    run = recipe_fn(video_slice, reference_slice, counts, seed=seed)
    if latents != "auto":
        from dataclasses import replace

        run = replace(run, latents=latents)
    if name:
        from dataclasses import replace

        run = replace(run, name=name)
    if model_dir is not None:  # the run's origin, in its lineage (the model is built from the folder below)
        from dataclasses import replace

        run = replace(run, init_from=str(Path(model_dir).resolve()))
    if adaptive_every:
        from dataclasses import replace

        from lake.adaptive import AdaptiveConfig

        run = replace(run, stages=tuple(replace(s, adaptive=AdaptiveConfig(update_every=adaptive_every))
                                        if s.task == "instruct" else s for s in run.stages))
    if workers > 1:
        from kiwi.distributed import train_distributed
        from lake.ray_runtime import init_ray

        if model_dir is None and recipe != "tiny":  # workers build the tiny model themselves; others start from disk
            model_dir = save_pretrained(KiwiConfig(size=recipe, seed=seed).build(), Path(out) / "init")
        init_ray(ray_address)
        result = train_distributed(db.uri, run, out, num_workers=workers, use_gpu=gpu,
                                   storage_options=db.storage_options, model_dir=str(model_dir) if model_dir else None,
                                   resume=not no_resume, parallel="fsdp" if fsdp else "ddp")
        if result.error is not None:
            raise click.ClickException(f"training failed on a worker: {result.error}")
        state = Path(out) / "checkpoint" / "state.json"
        steps = json.loads(state.read_text())["global_step"] if state.exists() else 0
        click.echo(f"{workers} workers: {steps} steps; checkpoint in {Path(out) / 'checkpoint'}; per-rank metrics in "
                   f"{Path(out)}/metrics*.jsonl")
        return
    model = from_pretrained(model_dir) if model_dir else KiwiConfig(size=recipe, seed=seed).build()
    from kiwi.checkpoints import RunMismatch

    try:
        with stop_on_sigterm() as asked:
            summary = Trainer(model, db, run, out).train(resume=not no_resume, progress=on_terminal(),
                                                         should_stop=asked, say=_log_lines())
    except RunMismatch as e:
        raise click.ClickException(str(e)) from None
    if not summary.finished and summary.history:
        click.echo(f"run {summary.run_id}: stopped at step {summary.steps} with a checkpoint in "
                   f"{Path(out) / 'checkpoint'}; the same command resumes it")
        return
    if not summary.history:  # finished before: the trained weights are in the checkpoint, not in this fresh model
        from kiwi.checkpoints import load_weights

        load_weights(model, Path(out) / "checkpoint")
    first, last = summary.history[0]["loss"] if summary.history else None, summary.history[-1]["loss"] \
        if summary.history else None
    save_pretrained(model, Path(out) / "model")
    from kiwi.eval.contamination import write_lineage
    from lake.slices import load_slice

    write_lineage(Path(out) / "model", summary.run_id,
                  sorted({load_slice(db, source.slice).slice_id for s in run.stages for source in s.mixture}))
    losses = f"loss {first:.4f} -> {last:.4f}" if summary.history else "nothing left to train"
    click.echo(f"run {summary.run_id}: {summary.steps} steps, {losses}; model in {Path(out) / 'model'}; "
               f"TensorBoard logs in {Path(out) / 'tensorboard'}")


def _train_paper(recipe, image_slice, video_slice, reference_slice, model_dir, out, steps, seed, no_resume, workers,
                 gpu, fsdp, ray_address, dry_run, gpu_memory, lake_uri, latents="auto") -> None:
    """`kiwi train --config kiwi-paper…`: the published recipe over three saved slices, checked first."""
    from dataclasses import replace

    from kiwi.curriculum import kiwi_paper
    from kiwi.preflight import check_run

    missing = [flag for flag, value in (("--image-slice", image_slice), ("--video-slice", video_slice),
                                        ("--reference-slice", reference_slice)) if not value]
    if missing:
        raise click.UsageError(f"--config {recipe} trains on three saved slices: give {', '.join(missing)} "
                               "(lake balance --name NAME … saves one)")
    if model_dir is None and not dry_run:
        raise click.UsageError(f"--config {recipe} trains the full model: give --model DIR (a folder from kiwi "
                               "convert, to fine-tune a release, or the published parts for a fresh start)")
    variant = "refvid-only" if recipe.endswith("refvid-only") else "img-vid-refvid"
    db = open_lake(lake_uri)
    image_slice, video_slice, reference_slice = (
        _slice_option(db, value, flag, f"{recipe}-{role}", seed) for value, flag, role in
        ((image_slice, "--image-slice", "image"), (video_slice, "--video-slice", "video"),
         (reference_slice, "--reference-slice", "reference")))
    run = kiwi_paper(image_slice, video_slice, reference_slice, variant=variant,
                     init_from=str(Path(model_dir).resolve()) if model_dir else None)
    run = replace(run, seed=seed, latents=latents)
    if steps:
        try:
            counts = [int(x) for x in steps.split(",")]
        except ValueError:
            raise click.BadParameter(f"{steps!r} is not comma-separated step counts", param_hint="--steps") from None
        if len(counts) != len(run.stages):
            raise click.BadParameter(f"{recipe} has {len(run.stages)} stages; got {len(counts)} step counts",
                                     param_hint="--steps")
        run = replace(run, stages=tuple(replace(s, steps=n) for s, n in zip(run.stages, counts, strict=True)))
    checks = check_run(db, run)
    click.echo(f"{run.name}: slices checked against the stages that read them")
    click.echo(f"{'stage':24s} {'task':14s} {'slice':28s} {'rows':>8s}  checks")
    for check in checks:
        click.echo(check.line())
    print_plan(run, max(workers, 1), gpu_memory, (720, 1280))
    problems = sum(len(c.problems) for c in checks)
    if problems:
        raise click.ClickException(f"{problems} problem(s) above: the run would fail on them")
    if dry_run:
        click.echo("dry run: nothing trained")
        return
    from kiwi.model.io import from_pretrained
    from kiwi.train import Trainer

    if workers > 1:
        from kiwi.distributed import train_distributed
        from lake.ray_runtime import init_ray

        init_ray(ray_address)
        result = train_distributed(db.uri, run, out, num_workers=workers, use_gpu=gpu,
                                   storage_options=db.storage_options, model_dir=str(model_dir), resume=not no_resume,
                                   parallel="fsdp" if fsdp else "ddp")
        if result.error is not None:
            raise click.ClickException(f"training failed on a worker: {result.error}")
        return
    with stop_on_sigterm() as asked:
        summary = Trainer(from_pretrained(model_dir), db, run, out).train(resume=not no_resume,
                                                                         progress=on_terminal(), should_stop=asked,
                                                                         say=_log_lines())
    state = "finished" if summary.finished else "stopped (the same command resumes it)"
    click.echo(f"run {summary.run_id}: {summary.steps} steps, {state}; checkpoint in {Path(out) / 'checkpoint'}")


def _log_lines():
    """Off a terminal (a log file, a Ray job's log), a line per tenth of a stage on stderr instead of a bar."""
    return None if on_terminal() else (lambda line: click.echo(line, err=True))


def _slice_option(db, value: str, flag: str, name: str, seed: int) -> str:
    """A slice option's slice id: a saved slice, or one built and saved now from "STRATEGY WHERE SQL"."""
    from kiwi.slice_specs import resolve_slice

    try:
        return resolve_slice(db, value, name, seed)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint=flag) from None


@contextmanager
def stop_on_sigterm():
    """SIGTERM (a scheduler's preemption, `kiwi runs stop`, Ray's stop_job) asks the run to checkpoint and end after
    the current step, as a notebook's stop button does; yields the question the trainer polls."""
    asked = threading.Event()
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield asked.is_set
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: asked.set())
    try:
        yield asked.is_set
    finally:
        signal.signal(signal.SIGTERM, previous)


def _submit(ctx: click.Context, address: str, out: Path, lake_uri: str | None) -> None:
    """`--submit`: the same `kiwi train` command, run as a Ray job; paths are made absolute for the cluster."""
    from kiwi.jobs import submit_train

    db = open_lake(lake_uri)  # a typo in the lake fails here, not on the cluster
    try:
        job_id = submit_train(address, forwarded_options(ctx, skip=("submit_to", "out", "lake_uri")), out, db.uri)
    except (ConnectionError, RuntimeError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"submitted {job_id} to {address}: run folder {Path(out).resolve()}")
    click.echo(f"follow it: kiwi runs logs {Path(out).name} --follow --address {address}; stop it: kiwi runs stop "
               f"{Path(out).name} --address {address}")


def forwarded_options(ctx: click.Context, skip: tuple[str, ...]) -> list[str]:
    """The command line that gives the options set on this one (not defaults, not read from the environment: the
    cluster has its own), paths absolute."""
    from click.core import ParameterSource

    args: list[str] = []
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or param.name in skip:
            continue
        value = ctx.params[param.name]
        if ctx.get_parameter_source(param.name) in (ParameterSource.DEFAULT, ParameterSource.ENVIRONMENT) \
                or value is None or (param.is_flag and not value):
            continue
        flag = max(param.opts, key=len)
        if param.is_flag:
            args.append(flag)
            continue
        if isinstance(value, Path):
            value = value.expanduser().resolve()
        args += [flag, str(value)]
    return args


def print_flops(run, gpus: int, clip: tuple[int, int], mfu: float, peak_tflops: float) -> None:
    """FLOPs per sample per component, counted on the meta device, and the GPU time they take at `mfu`."""
    from kiwi.flops import run_flops
    from kiwi.plan import published_model

    flops = run_flops(published_model(), run, clip)
    click.echo(f"FLOPs per sample (TFLOP, counted with FlopCounterMode at {clip[0]}x{clip[1]}; forward / backward), "
               f"GPU time at {mfu:.0%} MFU of {peak_tflops:g} TFLOP/s:")
    click.echo(f"{'stage':24s} {'MLLM':>13s} {'VAE':>7s} {'DiT':>15s} {'total':>8s} {'VAE share':>9s} "
               f"{'GPU-s/sample':>12s} {'GPU-hours':>10s}")
    for stage, f in zip(run.stages, flops, strict=True):
        c = {k: (v.forward / 1e12, v.backward / 1e12) for k, v in f.components.items()}
        seconds = f.gpu_seconds(mfu, peak_tflops)
        hours = seconds * stage.samples_per_rank * gpus / 3600
        click.echo(f"{stage.name:24s} {c['mllm'][0]:6.1f}/{c['mllm'][1]:<6.1f} {c['vae'][0]:7.1f} "
                   f"{c['dit'][0]:7.1f}/{c['dit'][1]:<7.1f} {f.total / 1e12:8.1f} {f.share('vae'):9.0%} "
                   f"{seconds:12.2f} {hours:10,.0f}")
    click.echo("(the VAE encodes target, source and reference in every step; cached latents, `refvie latents`, "
               "take the source and target encodes off the GPU)")


def print_plan(run, gpus: int, gpu_memory: float, clip: tuple[int, int]) -> None:
    """Memory per GPU, optimizer steps and samples per stage of a full-size run (the model on the meta device)."""
    from kiwi.plan import OVERHEAD_GIB, published_model
    from kiwi.plan import plan as plan_run

    height, width = clip
    plans = plan_run(published_model(), run, gpus, gpu_memory, clip)
    click.echo(f"{run.name} on {gpus} GPU(s) of {gpu_memory:g} GiB, FSDP2 (parameters, gradients and AdamW state "
               f"sharded), fp32 master weights, activation checkpointing, {height}x{width} clips; GiB per GPU:")
    header = (f"{'stage':24s} {'opt. steps':>10s} {'samples/GPU':>11s} {'trained':>8s} {'tokens DiT/LM':>14s} "
              f"{'weights':>8s} {'grads':>7s} {'adam':>7s} {'gather':>7s} {'activ.':>7s} {'total':>7s}  fits")
    click.echo(header)
    for p, stage in zip(plans, run.stages, strict=True):
        click.echo(f"{p.stage:24s} {stage.steps:>10,d} {stage.samples_per_rank:>11,d} {p.trained_params / 1e9:7.2f}B "
                   f"{f'{p.dit_tokens}/{p.mllm_tokens}':>14s} {p.weights_gib:8.1f} {p.gradients_gib:7.1f} "
                   f"{p.optimizer_gib:7.1f} {p.gathered_gib:7.1f} {p.activations_gib:7.1f} {p.total_gib:7.1f}  "
                   f"{'yes' if p.fits else 'NO'}")
    samples = sum(stage.samples_per_rank for stage in run.stages)
    click.echo(f"samples: {samples:,d} per GPU, {samples * gpus:,d} over {gpus} GPU(s) (upstream's trainer counts a "
               f"step per sample: its published steps are the samples per GPU)")
    click.echo(f"(total includes {OVERHEAD_GIB:g} GiB for the CUDA context and fragmentation; the VAE is replicated, "
               f"frozen parts are bf16)")


@click.command()
@click.option("--config", "recipe", type=click.Choice(["kiwi-paper", "kiwi-paper-refvid-only"]), default="kiwi-paper",
              show_default=True, help="The published recipe, or its reference-only stage-3 variant.")
@click.option("--gpus", type=click.IntRange(min=1), default=8, show_default=True,
              help="GPUs the run is sharded over (FSDP2).")
@click.option("--gpu-memory", type=click.FloatRange(min=1), default=80.0, show_default=True, help="GiB per GPU.")
@click.option("--clip", default="720x1280", show_default=True, metavar="HxW",
              help="The training clips' size before the stage's resize.")
@click.option("--flops", is_flag=True, help="Also count FLOPs per sample per component (MLLM, VAE, DiT) on the meta "
              "device and the GPU time they take (a few minutes on a CPU).")
@click.option("--mfu", type=click.FloatRange(0.01, 1.0), default=0.40, show_default=True,
              help="--flops: model FLOPs utilisation assumed for GPU time.")
@click.option("--peak-tflops", type=click.FloatRange(min=1), default=989.0, show_default=True,
              help="--flops: the GPU's dense bf16 peak (an H100's).")
def plan(recipe, gpus, gpu_memory, clip, flops, mfu, peak_tflops) -> None:
    """Memory per GPU for each stage of the full-size recipe, from the model's real shapes (nothing is loaded)."""
    from kiwi.curriculum import kiwi_paper

    try:
        height, width = (int(x) for x in clip.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{clip!r} is not HxW, e.g. 720x1280", param_hint="--clip") from None
    variant = "refvid-only" if recipe.endswith("refvid-only") else "img-vid-refvid"
    run = kiwi_paper("images", "videos", "references", variant=variant)
    print_plan(run, gpus, gpu_memory, (height, width))
    if flops:
        print_flops(run, gpus, (height, width), mfu, peak_tflops)
