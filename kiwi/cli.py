"""`kiwi`: create, run, train and evaluate the Kiwi-Edit model."""

from __future__ import annotations

import json
from pathlib import Path

import click

from kiwi.cli_options import IMAGE_SUFFIXES, device_options, resolve_device
from lake.cli_common import FriendlyGroup, group_lake_option, lake_option, open_lake
from lake.errors import MediaError


@click.group(cls=FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@group_lake_option
def cli() -> None:
    """Kiwi-Edit: instruction- and reference-guided video editing."""


@cli.command()
@click.option("--config", type=click.Choice(["tiny", "tiny-edit"]), default="tiny", show_default=True,
              help="Model size: tiny (every part of the real architecture at toy width), tiny-edit (the CPU model "
                   "that learns edits). The full one needs the released weights: KiwiConfig.full_config(paths).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder to write the model to.")
@click.option("--seed", type=int, default=0, show_default=True)
def init(config: str, out: Path, seed: int) -> None:
    """Write a randomly initialised model (what tests, the demo and notebooks use)."""
    from kiwi.model.io import save_pretrained
    from kiwi.model.kiwi_edit import KiwiConfig

    model = KiwiConfig(size=config, seed=seed).build()
    click.echo(f"wrote {config} Kiwi-Edit to {save_pretrained(model, out)}")


@cli.command()
@click.option("--from", "layout", type=click.Choice(["diffusers", "diffsynth"]), default="diffusers",
              show_default=True, help="diffusers: a release folder (showlab's KiwiEditPipeline); diffsynth: a raw "
                                      "training checkpoint (.safetensors) as upstream's train.py saves a stage.")
@click.argument("src", type=click.Path(path_type=Path, exists=True))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Model folder to write.")
@click.option("--vae", default=None, type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="diffusers: a diffusers AutoencoderKLWan folder (the release keeps the original Wan VAE names), "
                   "e.g. the vae/ of Wan-AI/Wan2.2-TI2V-5B-Diffusers.")
@click.option("--wan", default=None, type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="diffsynth: the diffusers Wan2.2-TI2V-5B folder the stage started from (transformer/, vae/).")
@click.option("--qwen", default=None, type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="diffsynth: the Qwen2.5-VL-3B-Instruct folder the stage started from.")
@click.option("--base", default=None, metavar="DIR|fresh",
              help="diffsynth: fill what a stage checkpoint lacks (stage 1 trains no reference parts) from DIR, a "
                   "converted earlier stage (its DiT, Qwen and VAE are the base too), or `fresh`: initialised as "
                   "kiwi init does, over --wan / --qwen.")
@click.option("--ref-pad-first", is_flag=True, default=None,
              help="diffsynth: the stage was trained with the reference first (default: as --base, else last).")
@click.option("--overwrite", is_flag=True, help="Replace what OUT holds.")
def convert(layout: str, src: Path, out: Path, vae: Path | None, wan: Path | None, qwen: Path | None,
            base: str | None, ref_pad_first: bool | None, overwrite: bool) -> None:
    """Turn released Kiwi-Edit weights into a model folder (`kiwi edit --model OUT`, `kiwi eval --model OUT`)."""
    from kiwi.model.convert import ConversionError, convert_diffusers_release
    from kiwi.model.convert_diffsynth import convert_diffsynth_checkpoint

    try:
        if layout == "diffsynth":
            if (wan is None or qwen is None) and (base is None or base == "fresh"):
                raise click.UsageError("--from diffsynth needs --wan and --qwen (the base models the stage "
                                       "started from), or --base DIR (a converted earlier stage)")
            conversion = convert_diffsynth_checkpoint(src, out, wan, qwen, ref_pad_first=ref_pad_first,
                                                      overwrite=overwrite, base=base)
        else:
            if src.is_file():
                raise click.UsageError(f"{src} is a file: --from diffusers takes a release folder "
                                       "(a raw checkpoint is --from diffsynth)")
            if base is not None:
                raise click.UsageError("--base fills a diffsynth stage checkpoint; a diffusers release is whole")
            conversion = convert_diffusers_release(src, out, vae=vae, overwrite=overwrite)
        click.echo(str(conversion))
    except ConversionError as e:
        raise click.ClickException(str(e)) from None


@cli.command("edit")
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path))
@click.option("--video", required=True, type=click.Path(path_type=Path),
              help="Source video, or an image (edited through the image path; --out then a .png or .jpg).")
@click.option("--instruction", required=True)
@click.option("--reference", default=None, type=click.Path(path_type=Path), help="Reference image (PNG/JPEG).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="MP4 to write (PNG/JPEG for an image).")
@click.option("--steps", type=int, default=None, help="Sampler steps (default: the model's, 50 for a release).")
@click.option("--frames", "max_frames", type=int, default=81, show_default=True,
              help="At most this many frames from the start (cut to 4k+1).")
@click.option("--max-pixels", type=int, default=720 * 1280, show_default=True,
              help="Frames scaled down to at most this many pixels (aspect kept), sides floored to 32.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--task", type=click.Choice(["instruct", "ref_subject", "ref_background"]), default=None,
              help="Default: ref_subject with --reference, else instruct.")
@device_options
def edit_command(model_dir, video, instruction, reference, out, steps, max_frames, max_pixels, seed, task, device,
                 dtype) -> None:
    """Edit a video (or an image) by an instruction and, for videos, a reference image."""
    from lake import media

    for path, what in ((video, "video"), (reference, "reference")):
        if path is not None and not Path(path).is_file():
            raise click.ClickException(f"{what} {path}: no such file")
    if task and task.startswith("ref") and reference is None:
        raise click.ClickException(f"--task {task} needs --reference")
    try:
        info = media.probe_video(video, name=str(video))
        if info.is_image:
            if reference is not None:
                raise click.ClickException(f"{video} is an image: an image edit takes no --reference "
                                           "(upstream's image path has none)")
            if out.suffix.lower() not in IMAGE_SUFFIXES:
                raise click.ClickException(f"{video} is an image: give --out a .png or .jpg, not {out.name}")
            frames = media.decode_image(video, name=str(video))[None]
        else:
            frames = media.decode_video(video, name=str(video))
        ref = media.decode_image(reference, name=str(reference)) if reference else None
    except MediaError as e:
        raise click.ClickException(str(e)) from None
    from kiwi.inference import edit
    from kiwi.model.io import from_pretrained

    device, dtype = resolve_device(device, dtype)
    model = from_pretrained(model_dir, device=str(device), dtype=dtype)
    try:
        result = edit(model, frames, instruction, ref, task=task, steps=steps, seed=seed, progress=True,
                      max_frames=max_frames, max_pixels=max_pixels)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    if info.is_image:
        out.write_bytes(media.encode_image(result[0], format="jpeg" if out.suffix.lower() in (".jpg", ".jpeg")
                                           else "png"))
        click.echo(f"wrote {out}: an image of {result.shape[2]}x{result.shape[1]}")
        return
    out.write_bytes(media.encode_video(result, fps=info.fps or 8.0))
    click.echo(f"wrote {out}: {len(result)} frames of {result.shape[2]}x{result.shape[1]}")


@cli.command()
@click.option("--config", "recipe", type=click.Choice(["tiny", "tiny-edit"]), default="tiny", show_default=True,
              help="Model and curriculum: tiny (three stages, the full architecture at toy width), tiny-edit (the "
                   "CPU model that learns edits; two stages at 32x32). kiwi-paper needs the full model and GPUs.")
@click.option("--video-slice", default=None, help="Saved slice for the image/instruct stages (default: built "
              "now from the train split, temperature 0.3 over edit_type).")
@click.option("--reference-slice", default=None, help="Saved slice for the reference stage (default: built now "
              "over the train split's ref_subject rows).")
@click.option("--model", "model_dir", default=None, type=click.Path(path_type=Path),
              help="Start from this model folder (default: a fresh tiny model).")
@click.option("--out", default="runs/tiny", show_default=True, type=click.Path(path_type=Path))
@click.option("--steps", default=None, help="Steps per stage, comma-separated (tiny: 4,8,8; tiny-edit: 1500,300).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-resume", is_flag=True, help="Start over even if OUT holds a checkpoint.")
@click.option("--adaptive-every", type=int, default=0, show_default=True, metavar="SAMPLES",
              help="Adaptive rebalancing of the instruct stage: move the category mix every SAMPLES samples from the "
                   "held-out loss of validation rows (0: the slice's static mix). Weights land in mix_weights.")
@click.option("--workers", type=int, default=1, show_default=True, help="Ray Train workers (1: this process).")
@click.option("--gpu", is_flag=True, help="One GPU per Ray Train worker.")
@click.option("--fsdp", is_flag=True, help="With --workers: shard parameters, gradients and optimizer state over the "
              "workers (FSDP2, sharded checkpoints) instead of a whole model on each (DDP).")
@click.option("--ray-address", default=None, envvar="RAY_ADDRESS", help="Ray cluster for --workers > 1.")
@lake_option
def train(recipe, video_slice, reference_slice, model_dir, out, steps, seed, no_resume, adaptive_every, workers, gpu,
          fsdp, ray_address, lake_uri) -> None:
    """Train through a staged curriculum, streaming slices from the lake; resumes from OUT's checkpoint."""
    from kiwi import curriculum
    from kiwi.model.io import from_pretrained, save_pretrained
    from kiwi.model.kiwi_edit import KiwiConfig
    from kiwi.train import Trainer
    from lake.balance import Strategy
    from lake.slices import build_slice, save_slice

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
    from kiwi.train import RunMismatch

    try:
        summary = Trainer(model, db, run, out).train(resume=not no_resume, progress=True)
    except RunMismatch as e:
        raise click.ClickException(str(e)) from None
    if not summary.history:  # finished before: the trained weights are in the checkpoint, not in this fresh model
        from kiwi.train import load_weights

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


@cli.command()
@click.option("--config", "recipe", type=click.Choice(["kiwi-paper", "kiwi-paper-refvid-only"]), default="kiwi-paper",
              show_default=True, help="The published recipe, or its reference-only stage-3 variant.")
@click.option("--gpus", type=click.IntRange(min=1), default=8, show_default=True,
              help="GPUs the run is sharded over (FSDP2).")
@click.option("--gpu-memory", type=click.FloatRange(min=1), default=80.0, show_default=True, help="GiB per GPU.")
@click.option("--clip", default="720x1280", show_default=True, metavar="HxW",
              help="The training clips' size before the stage's resize.")
def plan(recipe, gpus, gpu_memory, clip) -> None:
    """Memory per GPU for each stage of the full-size recipe, from the model's real shapes (nothing is loaded)."""
    from kiwi.curriculum import kiwi_paper
    from kiwi.plan import OVERHEAD_GIB, published_model
    from kiwi.plan import plan as plan_run

    try:
        height, width = (int(x) for x in clip.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{clip!r} is not HxW, e.g. 720x1280", param_hint="--clip") from None
    variant = "refvid-only" if recipe.endswith("refvid-only") else "img-vid-refvid"
    run = kiwi_paper("images", "videos", "references", variant=variant)
    plans = plan_run(published_model(), run, gpus, gpu_memory, (height, width))
    click.echo(f"{run.name} on {gpus} GPU(s) of {gpu_memory:g} GiB, FSDP2 (parameters, gradients and AdamW state "
               f"sharded), fp32 master weights, activation checkpointing, {height}x{width} clips; GiB per GPU:")
    header = (f"{'stage':24s} {'trained':>8s} {'tokens DiT/LM':>14s} {'weights':>8s} {'grads':>7s} {'adam':>7s} "
              f"{'gather':>7s} {'activ.':>7s} {'total':>7s}  fits")
    click.echo(header)
    for p in plans:
        click.echo(f"{p.stage:24s} {p.trained_params / 1e9:7.2f}B {f'{p.dit_tokens}/{p.mllm_tokens}':>14s} "
                   f"{p.weights_gib:8.1f} {p.gradients_gib:7.1f} {p.optimizer_gib:7.1f} {p.gathered_gib:7.1f} "
                   f"{p.activations_gib:7.1f} {p.total_gib:7.1f}  {'yes' if p.fits else 'NO'}")
    click.echo(f"(total includes {OVERHEAD_GIB:g} GiB for the CUDA context and fragmentation; the VAE is replicated, "
               f"frozen parts are bf16)")


def _register() -> None:
    from kiwi.cli_eval import bench, eval_group, experiment_command

    cli.add_command(bench)
    cli.add_command(eval_group, "eval")
    cli.add_command(experiment_command, "experiment")


_register()


def main() -> None:
    cli(prog_name="kiwi")


if __name__ == "__main__":
    main()
