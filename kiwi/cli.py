"""`kiwi`: create, run, train and evaluate the Kiwi-Edit model."""

from __future__ import annotations

from pathlib import Path

import click

from kiwi.cli_options import IMAGE_SUFFIXES, device_options, resolve_device
from lake.cli_common import FriendlyGroup, group_lake_option, on_terminal
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
        result = edit(model, frames, instruction, ref, task=task, steps=steps, seed=seed, progress=on_terminal(),
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


def _register() -> None:
    from kiwi.cli_eval import bench, eval_group, experiment_command
    from kiwi.cli_runs import runs_group
    from kiwi.cli_train import plan, train

    cli.add_command(train)
    cli.add_command(plan)
    cli.add_command(bench)
    cli.add_command(eval_group, "eval")
    cli.add_command(experiment_command, "experiment")
    cli.add_command(runs_group)


_register()


def main() -> None:
    cli(prog_name="kiwi")


if __name__ == "__main__":
    main()
