"""`refvie`: ingest pair sources into the lake, and preview what they look like."""

from __future__ import annotations

from pathlib import Path

import click

from lake.cli_common import FriendlyGroup, group_lake_option, lake_option, open_lake

FORMATS = ("kiwi-csv", "refvie-parquet", "kiwi-release", "ditto-1m", "openve-3m", "reco", "nhr-edit", "gpt-image-edit",
           "manifest", "synthetic")
VIDEO_DATASETS = {"ditto-1m": "DittoSource", "openve-3m": "OpenVeSource", "reco": "ReCoSource"}


@click.group(cls=FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@group_lake_option
def cli() -> None:
    """RefVIE data engine: pair sources in, quadruplets out."""


def parse_mix(text: str | None) -> dict[str, float] | None:
    """`local_add=0.5,background_change=0.5` -> {"local_add": 0.5, "background_change": 0.5}."""
    if not text:
        return None
    mix = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        try:
            mix[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise click.BadParameter(f"{item!r} is not edit_type=proportion", param_hint="--mix")
    return mix


def parse_mapping(items: tuple[str, ...]) -> dict[str, str]:
    mapping = {}
    for item in items:
        field, sep, column = item.partition("=")
        if not sep or not field or not column:
            raise click.BadParameter(f"{item!r} is not field=column", param_hint="--map")
        mapping[field] = column
    return mapping


def classifier_options(command):
    """--classifier and the endpoint it may need, shared by build, classify and relabel."""
    from refvie.labels import CLASSIFIERS, DEFAULT_CLASSIFIER

    command = click.option("--endpoint-model", default=None, help="Endpoint classifier: the served model's name.")(
        command)
    command = click.option("--endpoint-url", default=None, envvar="KIWI_LABEL_URL",
                           help="Endpoint classifier: an OpenAI-compatible base URL (key in $KIWI_LABEL_API_KEY).")(
        command)
    return click.option("--classifier", type=click.Choice(CLASSIFIERS), default=DEFAULT_CLASSIFIER,
                        show_default=True, help="Edit-type classifier (a label the dataset gives wins).")(command)


def load_classifier(classifier: str, endpoint_url: str | None, endpoint_model: str | None, quiet: bool = False):
    from refvie.labels import make_classifier

    def say(message: str) -> None:
        if not quiet:
            click.echo(f"text classifier: {message} (first use only)", err=True)

    try:
        return make_classifier(classifier, endpoint_url, endpoint_model, progress=say)
    except ValueError as e:
        raise click.UsageError(str(e)) from None


@cli.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True,
              help="Layout of PATH: a Kiwi-Edit CSV, RefVIE parquet chunks, the whole Kiwi-Edit training release "
                   "(its folder), the Ditto-1M, OpenVE-3M or ReCo-Data folder, NHR-Edit's train/metadata.jsonl, "
                   "GPT-Image-Edit-1.5M's training_json/, a manifest of your own, or the synthetic world. See "
                   "docs/ingest.md.")
@click.option("--root", "roots", type=click.Path(path_type=Path), multiple=True,
              help="Folder the paths in PATH are relative to (default: PATH's folder; ditto-1m, openve-3m, reco: "
                   "the dataset's folder or its videos/, as it lays them out; kiwi-release: the folder holding the "
                   "source datasets). Repeat it to allow absolute paths in more folders.")
@click.option("--dataset", default="", help="Dataset name recorded on every pair (default: the file's stem, or a "
              "name telling it apart when another source holds that one).")
@click.option("--licence", default=None, help="The dataset's licence, recorded in the lake's `datasets` table.")
@click.option("--map", "mappings", multiple=True, metavar="FIELD=COLUMN", help="Manifest column mapping (repeatable).")
@click.option("--n", type=int, default=500, show_default=True, help="Synthetic: number of pairs.")
@click.option("--seed", type=int, default=0, show_default=True, help="Synthetic: world seed.")
@click.option("--start", type=int, default=0, show_default=True, help="Synthetic: first sample index.")
@click.option("--mix", default=None, help="Synthetic: edit-type proportions, e.g. local_add=0.5,global_style=0.5.")
@click.option("--frames", type=int, default=17, show_default=True, help="Synthetic: frames per clip.")
@click.option("--size", type=int, default=128, show_default=True, help="Synthetic: frame height and width.")
@click.option("--min-frames", type=int, default=2, show_default=True, help="Reject clips shorter than this.")
@click.option("--no-bytes", is_flag=True, help="Keep only paths (*_uri), do not copy video bytes into the lake.")
@click.option("--label-map", default=None, metavar="MAP",
              help="The dataset's own edit categories onto ours: a shipped map (openve, reco, ditto-1m), a YAML "
                   "file, or their=ours,… (given labels win over any classifier; laid over the map a format "
                   "ships with).")
@click.option("--strict", is_flag=True, help="kiwi-csv: reject rows whose prompt holds unquoted commas instead of "
              "repairing them (a repair needs every path column to end in a media extension).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@lake_option
def ingest(path, fmt, roots, dataset, licence, mappings, n, seed, start, mix, frames, size, min_frames, no_bytes,
           label_map, strict, quiet, lake_uri) -> None:
    """Ingest pairs into the lake's `pairs` table; bad rows go to `rejects` with a reason. Each source is one
    dataset in the lake's `datasets` table: two files never share a name, and so never each other's rows."""
    from refvie.ingest import IngestConfig
    from refvie.ingest import ingest as run_ingest
    from refvie.labels.maps import parse_label_map

    try:
        labels = parse_label_map(label_map)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--label-map") from None
    config = IngestConfig(min_frames=min_frames, store_bytes=not no_bytes, progress=not quiet, label_map=labels)
    if fmt == "kiwi-release":
        from refvie.release import ingest_release

        if path is None or not roots:
            raise click.UsageError("--format kiwi-release needs the release folder (PATH) and --root, the folder "
                                   "holding the source datasets its paths are relative to")
        summary = ingest_release(path, open_lake(lake_uri, create=True), roots[0], tuple(roots[1:]), config,
                                 say=lambda line: None if quiet else click.echo(line, err=True))
        click.echo(str(summary))
        return
    source = build_source(fmt, path, roots, dataset, parse_mapping(mappings), n, seed, start, parse_mix(mix), frames,
                          size, strict, licence)
    summary = run_ingest(source, open_lake(lake_uri, create=True), config)
    click.echo(str(summary))


def build_source(fmt, path, roots, dataset, mapping, n, seed, start, mix, frames, size, strict=False, licence=None):
    from refvie import sources
    from refvie.synthetic import SyntheticConfig

    if fmt == "synthetic":
        config = SyntheticConfig(seed=seed, frames=frames, height=size, width=size, dataset=dataset or "synthetic",
                                 **({"mix": mix} if mix else {}))
        return sources.SyntheticSource(n=n, config=config, start=start)
    if path is None:
        raise click.UsageError(f"--format {fmt} needs a PATH")
    roots_given = bool(roots)
    roots = tuple(roots) if roots else (Path(path).parent,)
    common = dict(dataset=dataset, allowed_roots=roots[1:], about={"licence": licence} if licence else None)
    if fmt == "kiwi-csv":
        return sources.KiwiCsvSource(path, roots[0], strict=strict, **common)
    if fmt == "refvie-parquet":
        return sources.RefvieParquetSource(path, roots[0], **common)
    if fmt in VIDEO_DATASETS:
        return getattr(sources, VIDEO_DATASETS[fmt])(path, roots[0] if roots_given else None, **common)
    if fmt == "nhr-edit":
        return sources.NhrEditSource(path, roots[0] if roots_given else None, **common)
    if fmt == "gpt-image-edit":
        if not roots_given:
            raise click.UsageError("--format gpt-image-edit reads PATH = training_json/ and needs --root, the "
                                   "gpt-edit/ folder its images were extracted into")
        return sources.GptImageEditSource(path, roots[0], **common)
    return sources.ManifestSource(path, roots[0], mapping=mapping, **common)


@cli.command()
@click.option("--ray-address", default=None, envvar="RAY_ADDRESS", help="Ray cluster to run on (default: local).")
@click.option("--limit", type=int, default=None, help="Build at most this many pending pairs.")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Pairs per CPU task.")
@click.option("--embed-actors", type=int, default=1, show_default=True, help="Embedding actors.")
@click.option("--embed-gpus", type=float, default=0.0, show_default=True, help="GPUs per embedding actor.")
@click.option("--image-model", default=None, help="Local path of a CLIP/SigLIP model for image embeddings.")
@click.option("--scaffold-model", default=None, help="Local path of a diffusers image-editing pipeline for references.")
@click.option("--scaffold-gpus", type=float, default=0.0, show_default=True, help="GPUs per scaffold actor.")
@click.option("--localise-model", default=None, help="Local path of a CLIPSeg model for text-grounded masks.")
@click.option("--resynthesise", is_flag=True,
              help="Synthesise a reference even where the dataset gave one (given references win otherwise).")
@click.option("--no-ray", is_flag=True, help="Run the stages in a plain loop in this process.")
@click.option("--parallel-writes", is_flag=True,
              help="Workers write the quadruplets' bytes (on every node); the driver only checks and commits.")
@classifier_options
@click.option("--quiet", is_flag=True, help="No progress bar.")
@lake_option
def build(ray_address, limit, batch_size, embed_actors, embed_gpus, image_model, scaffold_model, scaffold_gpus,
          localise_model, resynthesise, no_ray, parallel_writes, classifier, endpoint_url, endpoint_model, quiet,
          lake_uri) -> None:
    """Turn every ingested pair not yet built or rejected into a scored, embedded quadruplet."""
    from refvie.pipeline import PipelineConfig, build_local
    from refvie.pipeline import build as run_build

    config = PipelineConfig(batch_size=batch_size, embed_actors=embed_actors, embed_gpus=embed_gpus,
                            image_model_path=image_model, scaffold_model_path=scaffold_model,
                            scaffold_gpus=scaffold_gpus, localise_model_path=localise_model, classifier=classifier,
                            resynthesise=resynthesise,
                            endpoint_url=endpoint_url, endpoint_model=endpoint_model, parallel_writes=parallel_writes)
    if parallel_writes and no_ray:
        raise click.UsageError("--parallel-writes needs Ray workers; --no-ray writes from this process")
    db = open_lake(lake_uri)
    summary = build_local(db, config, limit) if no_ray else run_build(db, config, ray_address, limit,
                                                                        progress=not quiet)
    click.echo(str(summary))


@cli.command()
@click.option("--vae", required=True, type=click.Path(exists=True, file_okay=False),
              help="The frozen VAE's diffusers folder (AutoencoderKLWan), the one training will run.")
@click.option("--where", default=None, help="Which quadruplets (SQL filter; default: all).")
@click.option("--frames", type=int, default=81, show_default=True,
              help="Frames per clip (4k+1), as training takes them.")
@click.option("--sampling", type=click.Choice(["prefix_cut", "prefix", "spread"]), default="prefix_cut",
              show_default=True,
              help="As the stages to be trained sample frames: the first ones, a shorter clip cut to its longest "
                   "4k+1 prefix (prefix_cut: upstream's reader, the kiwi-paper recipe's); the first ones, a shorter "
                   "clip's last repeated (prefix); or spread over the clip.")
@click.option("--size", type=int, default=None, help="Short side, centre-cropped square (instead of a pixel budget).")
@click.option("--max-pixels", type=int, default=720 * 1280, show_default=True,
              help="Pixel budget per frame, aspect kept (upstream's --max_pixels).")
@click.option("--dtype", type=click.Choice(["auto", "bfloat16", "float32"]), default="auto", show_default=True,
              help="The VAE's dtype (auto: bfloat16 on a GPU, float32 on a CPU); training must run it in the same.")
@click.option("--actors", type=int, default=1, show_default=True, help="VAE actors (one model each).")
@click.option("--gpus-per-actor", type=float, default=1.0, show_default=True, help="With GPUs: a fraction shares one.")
@click.option("--ray-address", default=None, envvar="RAY_ADDRESS", help="Ray cluster to run on (default: local).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@lake_option
def latents(vae, where, frames, sampling, size, max_pixels, dtype, actors, gpus_per_actor, ray_address, quiet,
            lake_uri) -> None:
    """Encode each quadruplet's source and target clips once into the `latents` table, so training reads them
    instead of running the VAE every step (when its VAE and clip geometry are these)."""
    from refvie.latents import LatentsConfig, encode_latents

    config = LatentsConfig(vae=vae, frames=frames, sampling=sampling, size=size, max_pixels=max_pixels, where=where,
                           dtype=dtype, actors=actors, gpus_per_actor=gpus_per_actor)
    click.echo(str(encode_latents(open_lake(lake_uri), config, ray_address, progress=not quiet)))


@cli.command()
@click.argument("source", type=click.File("r"), default="-")
@classifier_options
def classify(source, classifier, endpoint_url, endpoint_model) -> None:
    """Label instructions, one per line, from SOURCE (a file, or - for stdin). Prints, in input order:
    edit_type<TAB>confidence<TAB>source<TAB>instruction (confidence '-' for the rules). How many fall under the
    review threshold is said on stderr."""
    texts = [line.rstrip("\n") for line in source]
    texts = [t for t in texts if t.strip()]
    model = load_classifier(classifier, endpoint_url, endpoint_model)
    labels = model.predict(texts)
    for text, label in zip(texts, labels, strict=True):
        confidence = "-" if label.confidence is None else f"{label.confidence:.3f}"
        click.echo(f"{label.edit_type.value}\t{confidence}\t{label.source}\t{text}")
    review = sum(label.needs_review for label in labels)
    if review:
        click.echo(f"{review} of {len(labels)} under the review threshold (needs_review)", err=True)


@cli.group(name="classifier")
def classifier_group() -> None:
    """The offline text classifier: train (deterministic, seconds) and score it."""


@classifier_group.command(name="train")
@click.option("--evaluate", "evaluate_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A label<TAB>instruction file to score the trained classifier on.")
@click.option("--write-corpus", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the training corpus (grammar + synthetic instructions) as label<TAB>instruction.")
def classifier_train(evaluate_path, write_corpus) -> None:
    """Train the text classifier on the instruction grammar and cache it (what first use does)."""
    from refvie.labels.text_model import TextClassifier, TextModelConfig, cache_dir, training_corpus

    if write_corpus:
        rows = training_corpus(TextModelConfig())
        write_corpus.write_text("".join(f"{label.value}\t{text}\n" for text, label in rows))
        click.echo(f"wrote {len(rows)} labelled instructions to {write_corpus}")

    model = TextClassifier.load(retrain=True, progress=lambda m: click.echo(m, err=True))
    click.echo(f"trained in {model.train_seconds:.1f}s, temperature {model.temperature:.2f}, cached in "
               f"{cache_dir() / ('text-' + TextModelConfig().key() + '.npz')}")
    if evaluate_path:
        from refvie.labels import read_labelled
        from refvie.labels.report import score

        texts, labels = read_labelled(evaluate_path)
        click.echo(str(score(labels, model.classify(texts))))


@cli.command()
@click.option("--where", default=None, help="Relabel only quadruplets matching this filter.")
@click.option("--tag", default=None, help="Tag for the relabelled version (default: relabel-<classifier>-<n>).")
@classifier_options
@lake_option
def relabel(where, tag, classifier, endpoint_url, endpoint_model, lake_uri) -> None:
    """Rewrite edit_type / task / provenance of existing quadruplets as a new, tagged table version (given labels
    stay); slices keep the version they pinned."""
    from refvie.relabel import relabel as run_relabel

    db = open_lake(lake_uri)
    model = load_classifier(classifier, endpoint_url, endpoint_model)
    click.echo(str(run_relabel(db, model, where=where, tag=tag)))


@cli.command()
@click.option("--synthetic", is_flag=True, help="Preview the synthetic world instead of the lake's pairs.")
@click.option("--n", type=int, default=12, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--where", default=None, help="Lake: a filter on pairs, e.g. \"gt_edit_type = 'local_add'\".")
@click.option("--out", default="preview.png", show_default=True, help="PNG file to write.")
@lake_option
def preview(synthetic: bool, n: int, seed: int, where: str | None, out: str, lake_uri: str) -> None:
    """Write a grid of source | reference | target keyframes, labelled with edit type and instruction."""
    from refvie.preview import lake_rows, save_grid, synthetic_rows

    rows = synthetic_rows(n, seed=seed) if synthetic else lake_rows(open_lake(lake_uri), n, where)
    click.echo(f"wrote {save_grid(rows, out)} ({len(rows)} rows)")


def main() -> None:
    from lake.memory import limit_arenas

    limit_arenas()  # before any lake I/O thread exists: a long build's memory stays bounded (lake/memory.py)
    cli(prog_name="refvie")


if __name__ == "__main__":
    main()
