"""`kiwi`: create, run, train and evaluate the Kiwi-Edit model."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import click

from lake.cli_common import FriendlyGroup, group_lake_option, lake_option, open_lake
from lake.errors import MediaError

DTYPES = ("auto", "float32", "bfloat16", "float16")


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def device_options(command):
    """--device and --dtype: where and in what precision the model runs (bf16 on a GPU unless told otherwise)."""
    command = click.option("--dtype", type=click.Choice(DTYPES), default="auto", show_default=True,
                           help="Weights' precision: auto = bfloat16 on a GPU, float32 on the CPU.")(command)
    return click.option("--device", default="auto", show_default=True,
                        help="auto (cuda when there is one, else cpu), cpu, cuda, cuda:1 …")(command)


def resolve_device(device: str, dtype: str):
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError as e:
        raise click.BadParameter(str(e), param_hint="--device") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter(f"{device}: this machine has no CUDA device", param_hint="--device")
    if dtype == "auto":
        dtype = "bfloat16" if resolved.type == "cuda" else "float32"
    return resolved, getattr(torch, dtype)


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
@click.option("--ref-pad-first", is_flag=True, help="diffsynth: the stage was trained with the reference first.")
@click.option("--overwrite", is_flag=True, help="Replace what OUT holds.")
def convert(layout: str, src: Path, out: Path, vae: Path | None, wan: Path | None, qwen: Path | None,
            ref_pad_first: bool, overwrite: bool) -> None:
    """Turn released Kiwi-Edit weights into a model folder (`kiwi edit --model OUT`, `kiwi eval --model OUT`)."""
    from kiwi.model.convert import ConversionError, convert_diffusers_release
    from kiwi.model.convert_diffsynth import convert_diffsynth_checkpoint

    try:
        if layout == "diffsynth":
            if wan is None or qwen is None:
                raise click.UsageError("--from diffsynth needs --wan and --qwen (the base models the stage "
                                       "started from)")
            conversion = convert_diffsynth_checkpoint(src, out, wan, qwen, ref_pad_first=ref_pad_first,
                                                      overwrite=overwrite)
        else:
            if src.is_file():
                raise click.UsageError(f"{src} is a file: --from diffusers takes a release folder "
                                       "(a raw checkpoint is --from diffsynth)")
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


@cli.group()
def bench() -> None:
    """Benches: freeze one from the lake's bench split, import a published one, list them."""


@bench.command("freeze")
@click.argument("name")
@click.option("--per-category", type=int, default=8, show_default=True, help="Items per edit type (at most).")
@click.option("--version", default=None, help="quadruplets version number or tag (default: latest).")
@click.option("--where", default="split = 'bench'", show_default=True, help="Which rows are eligible.")
@click.option("--seed", type=int, default=0, show_default=True)
@lake_option
def bench_freeze(name, per_category, version, where, seed, lake_uri) -> None:
    """Copy a stratified sample of the bench split into a frozen bench NAME."""
    from kiwi.eval.bench import freeze_lake_bench

    db = open_lake(lake_uri)
    version = int(version) if version is not None and version.isdigit() else version
    try:
        items = freeze_lake_bench(db, name, per_category, version=version, where=where, seed=seed)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    counts: dict[str, int] = {}
    for item in items:
        counts[item.category] = counts.get(item.category, 0) + 1
    click.echo(f"bench {name}: {len(items)} items ({', '.join(f'{c} {n}' for c, n in sorted(counts.items()))})")


@bench.command("import")
@click.argument("layout", type=click.Choice(["refvie-bench", "openve-bench"]))
@click.argument("listing", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", default=None, help="Bench name (default: the layout's name).")
@click.option("--root", default=None, type=click.Path(path_type=Path), help="Folder the listing's paths are "
              "relative to (default: the listing's folder).")
@lake_option
def bench_import(layout, listing, name, root, lake_uri) -> None:
    """Import a published bench: RefVIE-Bench's YAML listing or OpenVE-Bench's manifest."""
    from kiwi.eval.importers import import_openve_bench, import_refvie_bench

    importer = import_refvie_bench if layout == "refvie-bench" else import_openve_bench
    try:
        report = importer(open_lake(lake_uri, create=True), listing, name or layout, root=root)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    click.echo(str(report) + ("; see `lake query rejects_by_reason`" if report.rejected else ""))


@bench.command("list")
@lake_option
def bench_list(lake_uri) -> None:
    """Benches in the lake with their item counts per category."""
    db = open_lake(lake_uri)
    table = db.sql("SELECT bench, category, count(*) AS items, bool_and(coalesce(counts_to_overall, true)) "
                   "AS counts_to_overall FROM bench_items GROUP BY ALL ORDER BY ALL")
    click.echo(table.to_pandas().to_string(index=False) if table.num_rows else "no benches yet")


@cli.command("eval")
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path),
              help="Model folder (kiwi init / save_pretrained), or `copy-source` for the do-nothing baseline.")
@click.option("--bench", "bench_name", required=True)
@click.option("--steps", type=int, default=None, help="Sampler steps (default: the model's, 50 for a release).")
@click.option("--frames", type=int, default=5, show_default=True, help="Frames (4k+1) per item.")
@click.option("--size", type=int, default=64, show_default=True, help="Square side, a multiple of 32.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--instruct-only", is_flag=True, help="Ignore reference images (a model without stage 3).")
@click.option("--clip", "clip_path", default=None, type=click.Path(path_type=Path),
              help="CLIP/SigLIP folder: adds the text-video score.")
@click.option("--judge-url", default=None, envvar="KIWI_JUDGE_URL",
              help="OpenAI-compatible endpoint (e.g. http://127.0.0.1:8000/v1): adds the VLM judge. The key is "
              "read from $KIWI_JUDGE_API_KEY.")
@click.option("--judge-model", default=None, envvar="KIWI_JUDGE_MODEL", help="Model name the endpoint serves.")
@click.option("--judge-concurrency", type=int, default=4, show_default=True)
@click.option("--judge-cache", default=".cache/judge", show_default=True, type=click.Path(path_type=Path))
@click.option("--report", "report_dir", default=None, type=click.Path(path_type=Path),
              help="Write report.md and a per-category chart here.")
@click.option("--allow-overlap", is_flag=True,
              help="Score a model whose training slices hold rows of this bench (refused otherwise).")
@device_options
@lake_option
def eval_command(model_dir, bench_name, steps, frames, size, seed, instruct_only, clip_path, judge_url, judge_model,
                 judge_concurrency, judge_cache, report_dir, allow_overlap, device, dtype, lake_uri) -> None:
    """Run a model on every bench item (resumable; outputs kept in the lake) and score it per category."""
    import torch

    from kiwi.eval.aggregate import category_table, metric_table
    from kiwi.eval.bench import load_bench
    from kiwi.eval.report import bar_chart, markdown_table
    from kiwi.eval.runner import EvalConfig, copy_source, evaluate, excluded_categories, results
    from kiwi.eval.scorers import AutomaticScorer, ClipScorer, JudgeScorer

    db = open_lake(lake_uri)
    try:
        config = EvalConfig(frames=frames, size=size, steps=steps or EvalConfig.steps, seed=seed,
                            instruct_only=instruct_only)
        load_bench(db, bench_name)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    scorers = [AutomaticScorer()]
    if clip_path:
        scorers.append(ClipScorer(str(clip_path)))
    client = None
    if judge_url:
        from kiwi.eval.judge import JudgeClient, JudgeConfig

        if not judge_model:
            raise click.ClickException("--judge-url needs --judge-model (the name the endpoint serves)")
        client = JudgeClient(JudgeConfig(judge_url, judge_model, concurrency=judge_concurrency,
                                         cache_dir=str(judge_cache)))
        scorers.append(JudgeScorer(client))
    if str(model_dir) == "copy-source":
        model, name = copy_source, "copy-source"
    else:
        if not Path(model_dir).is_dir():
            raise click.ClickException(f"--model {model_dir}: no such model folder")
        from kiwi.eval.contamination import bench_overlap
        from kiwi.model.io import fingerprint, from_pretrained

        overlap = bench_overlap(db, model_dir, bench_name)
        if overlap and not allow_overlap:
            raise click.ClickException(overlap.message(str(model_dir), bench_name))
        if overlap:
            click.echo(f"warning: {overlap.message(str(model_dir), bench_name).split(':')[0]} (--allow-overlap)")
        # keyed by the weights too: retraining into the same folder is a new model, scored anew
        device, dtype = resolve_device(device, dtype)
        model = from_pretrained(model_dir, device=str(device), dtype=dtype)
        name = f"{Path(model_dir).resolve()}@{fingerprint(model_dir)}"
        if dtype != torch.float32:  # another precision answers differently: its own results
            name += f"[{str(dtype).removeprefix('torch.')}]"
        if steps is None:
            config = replace(config, steps=model.sampler_steps)
    try:
        run = evaluate(db, model, bench_name, name, config, scorers, progress=True)
    finally:
        if client:
            client.close()
    frame = results(db, run.run_id)
    excluded = excluded_categories(frame)
    click.echo(f"eval run {run.run_id}: {run.inferred} items run now, scored {run.scored}"
               + (f"; judge failed on {len(run.failures)} (in rejects)" if run.failures else ""))
    automatic = [m for m in AutomaticScorer.metrics if frame["value"][frame["metric"] == m].notna().any()]
    if automatic:
        click.echo("\nautomatic metrics, mean per category (dB for the PSNRs; overall = unweighted mean of the "
                   "categories" + (", * reported apart" if excluded else "") + "):")
        click.echo(metric_table(frame, automatic, excluded).to_string(float_format=lambda v: f"{v:.3f}",
                                                                     na_rep=""))
    tables = {"psnr": category_table(frame, ["psnr"], excluded)} if "psnr" in automatic else {}
    if "judge" in set(frame["scorer"]):
        dims = [m for m in frame.loc[frame["scorer"] == "judge", "metric"].unique() if m != "judge_mean"]
        tables["judge"] = category_table(frame, dims, excluded)
    if "judge" in tables:
        click.echo("\njudge per category (overall = unweighted mean of the categories that count):")
        click.echo(tables["judge"].to_string(float_format=lambda v: f"{v:.3f}", na_rep=""))
    if report_dir and tables:
        report_dir.mkdir(parents=True, exist_ok=True)
        lines = [f"# Evaluation {run.run_id}", "", f"Model `{name}` on bench `{bench_name}`.", ""]
        for title, table in tables.items():
            bar_chart(table[["score"]].rename(columns={"score": title}), report_dir / f"{title}.png", title=title)
            lines += [f"## {title}", "", markdown_table(table), "", f"![{title}]({title}.png)", ""]
        (report_dir / "report.md").write_text("\n".join(lines))
        click.echo(f"\nreport written to {report_dir / 'report.md'}")


@cli.command("experiment")
@click.option("--bench", "bench_name", required=True, help="A frozen bench of held-out pairs (kiwi bench freeze).")
@click.option("--arms", default="local-heavy,natural,temperature:0.3,adaptive", show_default=True,
              help="Comma-separated category mixes: natural | uniform | temperature:ALPHA | local-heavy | "
                   "target:cat=share;... | adaptive[:EVERY].")
@click.option("--baseline", default="natural", show_default=True, help="The arm the others are compared with.")
@click.option("--seeds", default=5, type=int, show_default=True, help="Replicates (seeds 0..N-1), each trains "
              "every arm.")
@click.option("--steps", type=int, default=400, show_default=True, help="Training steps per arm and seed.")
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--lr-schedule", type=click.Choice(["cosine", "constant"]), default="cosine", show_default=True,
              help="After the peak: cosine down to a tenth, or constant.")
@click.option("--config", "model", type=click.Choice(["tiny-edit", "tiny"]), default="tiny-edit", show_default=True)
@click.option("--size", type=int, default=32, show_default=True, help="Square side for training and evaluation.")
@click.option("--sampler-steps", type=int, default=8, show_default=True,
              help="Sampler steps when scoring (1: the x0 model's conditional mean, what PSNR rewards).")
@click.option("--where", "train_where", default="split = 'train'", show_default=True,
              help="SQL filter of the training rows (keep the bench's pairs out).")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Runs trained at once, each in its own process with an equal share of the cores (a small model "
                   "trains faster as two one-thread runs than as one two-thread run).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder for runs, report.md and charts.")
@lake_option
def experiment_command(bench_name, arms, baseline, seeds, steps, batch_size, lr, lr_schedule, model, size,
                       sampler_steps, train_where, jobs, out, lake_uri) -> None:
    """Train every arm with the same budget and seeds, evaluate each per category on a frozen bench, and say
    with intervals over seeds whether rebalancing changed what the model learnt (resumable: reruns skip what
    is done)."""
    from kiwi.eval.bench import load_bench
    from kiwi.eval.experiment import ExperimentConfig, run_experiment
    from kiwi.eval.runner import EvalConfig

    arm_list = tuple(a.strip() for a in arms.split(",") if a.strip())  # target shares are ';'-separated
    try:
        config = ExperimentConfig(bench_name, arm_list, baseline, train_where, model, steps, lr, batch_size,
                                  lr_schedule=lr_schedule, size=size, seeds=tuple(range(seeds)),
                                  evaluation=EvalConfig(frames=5, size=size, steps=sampler_steps), jobs=jobs)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--arms") from None
    db = open_lake(lake_uri)
    try:
        load_bench(db, bench_name)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    result = run_experiment(db, config, out, progress=True, log=click.echo)
    click.echo("\npsnr per category, mean over seeds (dB), and copying the source:")
    click.echo(result.summary("psnr").to_string(float_format=lambda v: f"{v:.2f}"))
    click.echo("\nverdict:\n" + result.verdict)
    click.echo(f"\nreport: {result.report}")


def main() -> None:
    cli(prog_name="kiwi")


if __name__ == "__main__":
    main()
