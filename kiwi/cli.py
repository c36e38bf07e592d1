"""`kiwi`: create, run and (later) train the Kiwi-Edit model."""

from __future__ import annotations

from pathlib import Path

import click

from lake.cli_common import FriendlyGroup, lake_option, open_lake
from lake.errors import MediaError


@click.group(cls=FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Kiwi-Edit: instruction- and reference-guided video editing."""


@cli.command()
@click.option("--config", type=click.Choice(["tiny"]), default="tiny", show_default=True,
              help="Model size. The full one needs the released weights: KiwiConfig.full_config(paths).build().")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder to write the model to.")
@click.option("--seed", type=int, default=0, show_default=True)
def init(config: str, out: Path, seed: int) -> None:
    """Write a randomly initialised model (what tests, the demo and notebooks use)."""
    from kiwi.model.io import save_pretrained
    from kiwi.model.kiwi_edit import tiny

    click.echo(f"wrote {config} Kiwi-Edit to {save_pretrained(tiny(seed=seed), out)}")


@cli.command("edit")
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path))
@click.option("--video", required=True, type=click.Path(path_type=Path), help="Source video.")
@click.option("--instruction", required=True)
@click.option("--reference", default=None, type=click.Path(path_type=Path), help="Reference image (PNG/JPEG).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="MP4 to write.")
@click.option("--steps", type=int, default=8, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--task", type=click.Choice(["instruct", "ref_subject", "ref_background"]), default=None,
              help="Default: ref_subject with --reference, else instruct.")
def edit_command(model_dir, video, instruction, reference, out, steps, seed, task) -> None:
    """Edit a video by an instruction (and a reference image); writes an MP4."""
    from lake import media

    for path, what in ((video, "video"), (reference, "reference")):
        if path is not None and not Path(path).is_file():
            raise click.ClickException(f"{what} {path}: no such file")
    if task and task.startswith("ref") and reference is None:
        raise click.ClickException(f"--task {task} needs --reference")
    try:
        info = media.probe_video(video, name=str(video))
        if info.is_image:
            raise click.ClickException(f"{video} is an image ({info.codec}); pass a video, or use it as --reference")
        frames = media.decode_video(video, name=str(video))
        ref = media.decode_image(reference, name=str(reference)) if reference else None
    except MediaError as e:
        raise click.ClickException(str(e)) from None
    from kiwi.inference import edit
    from kiwi.model.io import from_pretrained

    model = from_pretrained(model_dir)
    result = edit(model, frames, instruction, ref, task=task, steps=steps, seed=seed, progress=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(media.encode_video(result, fps=info.fps or 8.0))
    click.echo(f"wrote {out}: {len(result)} frames of {result.shape[2]}x{result.shape[1]}")


@cli.command()
@click.option("--config", "recipe", type=click.Choice(["tiny"]), default="tiny", show_default=True,
              help="Curriculum recipe (kiwi-paper needs the full model and a GPU cluster).")
@click.option("--video-slice", default=None, help="Saved slice for the image/instruct stages (default: built "
              "now, temperature 0.3 over edit_type).")
@click.option("--reference-slice", default=None, help="Saved slice for the reference stage (default: built now "
              "over ref_subject rows).")
@click.option("--model", "model_dir", default=None, type=click.Path(path_type=Path),
              help="Start from this model folder (default: a fresh tiny model).")
@click.option("--out", default="runs/tiny", show_default=True, type=click.Path(path_type=Path))
@click.option("--steps", default="4,8,8", show_default=True, help="Steps of the three stages.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-resume", is_flag=True, help="Start over even if OUT holds a checkpoint.")
@click.option("--workers", type=int, default=1, show_default=True, help="Ray Train workers (1: this process).")
@click.option("--gpu", is_flag=True, help="One GPU per Ray Train worker.")
@click.option("--ray-address", default=None, envvar="RAY_ADDRESS", help="Ray cluster for --workers > 1.")
@lake_option
def train(recipe, video_slice, reference_slice, model_dir, out, steps, seed, no_resume, workers, gpu, ray_address,
          lake_uri) -> None:
    """Train through a staged curriculum, streaming slices from the lake; resumes from OUT's checkpoint."""
    from kiwi import curriculum
    from kiwi.model.io import from_pretrained, save_pretrained
    from kiwi.model.kiwi_edit import tiny
    from kiwi.train import Trainer
    from lake.balance import Strategy
    from lake.slices import build_slice, save_slice

    db = open_lake(lake_uri)
    if video_slice is None:
        video_slice = save_slice(db, build_slice(db, strategy=Strategy("temperature", alpha=0.3), seed=seed,
                                                 name="train-video-t03"))
    if reference_slice is None:
        reference_slice = save_slice(db, build_slice(db, where="task = 'ref_subject'", seed=seed,
                                                     name="train-reference"))
    run = curriculum.tiny(video_slice, reference_slice, tuple(int(s) for s in steps.split(",")), seed=seed)
    if workers > 1:
        from kiwi.distributed import train_distributed
        from lake.ray_runtime import init_ray

        init_ray(ray_address)
        result = train_distributed(db.uri, run, out, num_workers=workers, use_gpu=gpu,
                                   storage_options=db.storage_options, model_dir=str(model_dir) if model_dir else None,
                                   resume=not no_resume)
        click.echo(f"{workers} workers: {result.metrics}; checkpoint in {Path(out) / 'checkpoint'}")
        return
    model = from_pretrained(model_dir) if model_dir else tiny(seed=seed)
    summary = Trainer(model, db, run, out).train(resume=not no_resume)
    first, last = summary.history[0]["loss"] if summary.history else None, summary.history[-1]["loss"] \
        if summary.history else None
    save_pretrained(model, Path(out) / "model")
    click.echo(f"run {summary.run_id}: {summary.steps} steps, loss {first} -> {last}; model in {Path(out) / 'model'}; "
               f"TensorBoard logs in {Path(out) / 'tensorboard'}")


def main() -> None:
    cli(prog_name="kiwi")


if __name__ == "__main__":
    main()
