"""`kiwi bench` and `kiwi eval`: benches (frozen from the lake or imported as published), evaluations under the
quick or the published protocol, the paper's table beside ours, and the rebalancing experiment."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import click

from kiwi.cli_options import device_options, resolve_device
from lake.cli_common import lake_option, on_terminal, open_lake


@click.group()
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
@click.argument("layout", type=click.Choice(["openve-bench", "refvie-bench"]))
@click.argument("listing", type=click.Path(exists=True, path_type=Path))
@click.option("--name", default=None, help="Bench name (default: the layout's name).")
@click.option("--root", default=None, type=click.Path(path_type=Path), help="The bench folder the listing's "
              "paths stay inside (default: the folder given, or the listing's folder).")
@lake_option
def bench_import(layout, listing, name, root, lake_uri) -> None:
    """Import a published bench from its folder (OpenVE-Bench/ with benchmark_videos.csv, RefVIE-Bench/ with
    refvie_bench.yaml) or from the listing file itself."""
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


def _judge(kind, url, model, media, concurrency, cache, protocol, suite):
    """The judge client the options ask for, or None."""
    if kind is None and url:
        kind = "openai"
    if kind is None:
        return None
    cap = protocol == "quick"  # the published protocol, like upstream, never caps after the fact
    if kind == "gemini":
        from kiwi.eval.gemini import DEFAULT_MODELS, GeminiConfig, GeminiJudge

        name = model or DEFAULT_MODELS.get(suite or "", "gemini-2.5-pro")
        if not os.environ.get(GeminiConfig.api_key_env):
            raise click.ClickException(f"--judge gemini needs an API key in ${GeminiConfig.api_key_env}")
        return GeminiJudge(GeminiConfig(name, base_url=url, concurrency=concurrency, cache_dir=str(cache),
                                        enforce_cap=cap))
    from kiwi.eval.judge import JudgeClient, JudgeConfig

    if not url or not model:
        raise click.ClickException("--judge openai needs --judge-url (e.g. http://127.0.0.1:8000/v1) and "
                                   "--judge-model (the name the endpoint serves)")
    media = media or ("video" if protocol == "published" else "frames")
    return JudgeClient(JudgeConfig(url, model, concurrency=concurrency, cache_dir=str(cache), media=media,
                                   enforce_cap=cap))


def _rubric_set(paths):
    from kiwi.eval.official import RubricScriptError, load_official_rubrics
    from kiwi.eval.rubrics import PROJECT_RUBRICS

    if not paths:
        return PROJECT_RUBRICS
    try:
        return load_official_rubrics(paths)
    except RubricScriptError as e:
        raise click.ClickException(str(e)) from None


def _load_model(db, model_dir, bench_name, allow_overlap, device, dtype):
    import torch

    from kiwi.eval.contamination import bench_overlap
    from kiwi.model.io import fingerprint, from_pretrained

    if not Path(model_dir).is_dir():
        raise click.ClickException(f"--model {model_dir}: no such model folder")
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
    return model, name


@click.group("eval", invoke_without_command=True)
@click.option("--model", "model_dir", default=None, type=click.Path(path_type=Path),
              help="Model folder (kiwi init / convert / train), or `copy-source` for the do-nothing baseline.")
@click.option("--outputs", "outputs_dir", default=None, type=click.Path(path_type=Path, file_okay=False),
              help="Score a folder of already edited videos (named as upstream's scripts name them) instead.")
@click.option("--name", "outputs_name", default=None, help="With --outputs: the name the scores are kept under.")
@click.option("--bench", "bench_name", default=None, help="The bench to evaluate on (kiwi bench list).")
@click.option("--protocol", type=click.Choice(["quick", "published"]), default="quick", show_default=True,
              help="quick: a few frames, a small crop (CPU work); published: the benchmark's own inference "
                   "(first 81 frames, 720p budget, 50 steps, seed 0, 15 fps MP4s) and no after-the-fact cap.")
@click.option("--steps", type=int, default=None, help="Sampler steps (default: 50 published; quick: the model's).")
@click.option("--frames", type=int, default=5, show_default=True, help="quick: frames (4k+1) per item.")
@click.option("--size", type=int, default=64, show_default=True, help="quick: square side, a multiple of 32.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--instruct-only", is_flag=True, help="Ignore reference images (a model without stage 3).")
@click.option("--clip", "clip_path", default=None, type=click.Path(path_type=Path),
              help="CLIP/SigLIP folder: adds the text-video score.")
@click.option("--judge", "judge_kind", type=click.Choice(["openai", "gemini"]), default=None,
              help="gemini: Google's API (key in $GEMINI_API_KEY); openai: an OpenAI-compatible endpoint such as "
                   "vLLM serving Qwen3-VL (key, if any, in $KIWI_JUDGE_API_KEY). Default: openai with --judge-url.")
@click.option("--judge-url", default=None, envvar="KIWI_JUDGE_URL",
              help="The endpoint (e.g. http://127.0.0.1:8000/v1); with --judge gemini, another API base URL.")
@click.option("--judge-model", default=None, envvar="KIWI_JUDGE_MODEL",
              help="The judge model (gemini default: gemini-2.5-pro for OpenVE-Bench, gemini-3-flash-preview for "
                   "RefVIE-Bench, as published).")
@click.option("--judge-media", type=click.Choice(["video", "frames"]), default=None,
              help="openai: whole videos as video_url parts, or a few JPEG frames (default: video published, "
                   "frames quick).")
@click.option("--rubrics", "rubric_paths", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Your copy of upstream's eval_openve_gemini.py / eval_refvie_gemini.py (repeat for both): the "
                   "official rubrics are read from it. Without it the project's own rubrics judge, not comparable.")
@click.option("--judge-concurrency", type=int, default=4, show_default=True)
@click.option("--judge-cache", default=".cache/judge", show_default=True, type=click.Path(path_type=Path))
@click.option("--report", "report_dir", default=None, type=click.Path(path_type=Path),
              help="Write report.md and a per-category chart here.")
@click.option("--allow-overlap", is_flag=True,
              help="Score a model whose training slices hold rows of this bench (refused otherwise).")
@device_options
@lake_option
@click.pass_context
def eval_group(ctx, model_dir, outputs_dir, outputs_name, bench_name, protocol, steps, frames, size, seed,
               instruct_only, clip_path, judge_kind, judge_url, judge_model, judge_media, rubric_paths,
               judge_concurrency, judge_cache, report_dir, allow_overlap, device, dtype, lake_uri) -> None:
    """Run a model on every bench item (or take its outputs from a folder), keep the outputs in the lake and score
    them per category; resumable. `kiwi eval report` sets the scores beside the paper's."""
    if ctx.invoked_subcommand is not None:
        return
    from kiwi.eval.bench import bench_suite, load_bench
    from kiwi.eval.runner import EvalConfig, copy_source, evaluate
    from kiwi.eval.scorers import AutomaticScorer, ClipScorer, JudgeScorer

    if not bench_name or (model_dir is None) == (outputs_dir is None):
        raise click.UsageError("give --bench and one of --model or --outputs (or a subcommand: report, export)")
    if outputs_dir is not None and not outputs_name:
        raise click.UsageError("--outputs needs --name: the model the outputs came from")
    db = open_lake(lake_uri)
    try:
        if protocol == "published":
            config = EvalConfig.published(steps=steps or 50, seed=seed, instruct_only=instruct_only)
        else:
            config = EvalConfig(frames=frames, size=size, steps=steps or EvalConfig.steps, seed=seed,
                                instruct_only=instruct_only)
        items = load_bench(db, bench_name)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    suite = bench_suite(items)
    rubrics = _rubric_set(rubric_paths)
    scorers = [AutomaticScorer()]
    if clip_path:
        scorers.append(ClipScorer(str(clip_path)))
    client = _judge(judge_kind, judge_url, judge_model, judge_media, judge_concurrency, judge_cache, protocol,
                    suite)
    if client is not None:
        scorers.append(JudgeScorer(client, rubrics))
    if outputs_dir is not None:
        from kiwi.eval.outputs import folder_editor, missing_outputs

        try:
            model, name = folder_editor(outputs_dir), outputs_name
        except ValueError as e:
            raise click.ClickException(str(e)) from None
        missing = missing_outputs(outputs_dir, items)
        if missing:
            click.echo(f"warning: {outputs_dir} lacks {len(missing)} of {len(items)} outputs (e.g. {missing[0]}); "
                       "those items go to rejects")
    elif str(model_dir) == "copy-source":
        model, name = copy_source, "copy-source"
    else:
        model, name = _load_model(db, model_dir, bench_name, allow_overlap, device, dtype)
        if steps is None and protocol == "quick":
            config = replace(config, steps=model.sampler_steps)
    try:
        run = evaluate(db, model, bench_name, name, config, scorers, progress=on_terminal())
    finally:
        if client is not None:
            client.close()
    _print_run(db, run, name, bench_name, suite, report_dir)


def _print_run(db, run, name, bench_name, suite, report_dir) -> None:
    from kiwi.eval.aggregate import POOLED_SUITES, category_table, metric_table
    from kiwi.eval.paper import comparability, score_details
    from kiwi.eval.report import bar_chart, markdown_table
    from kiwi.eval.runner import excluded_categories, results
    from kiwi.eval.scorers import AutomaticScorer

    frame = results(db, run.run_id)
    excluded = excluded_categories(frame)
    click.echo(f"eval run {run.run_id}: {run.inferred} items run now, scored {run.scored}"
               + (f"; {len(run.failures)} failed (in rejects)" if run.failures else ""))
    automatic = [m for m in AutomaticScorer.metrics if frame["value"][frame["metric"] == m].notna().any()]
    if automatic:
        click.echo("\nautomatic metrics, mean per category (dB for the PSNRs; overall = unweighted mean of the "
                   "categories" + (", * reported apart" if excluded else "") + "):")
        click.echo(metric_table(frame, automatic, excluded).to_string(float_format=lambda v: f"{v:.3f}",
                                                                     na_rep=""))
    tables = {"psnr": category_table(frame, ["psnr"], excluded)} if "psnr" in automatic else {}
    if suite and not any(str(s).startswith("judge") for s in set(frame["scorer"])):
        click.echo(f"{suite} has no ground truth: give a judge (--judge gemini, or --judge-url) to score it; "
                   "the outputs are kept, so scoring later runs no inference")
    pooled = suite in POOLED_SUITES
    for scorer in sorted(s for s in set(frame["scorer"]) if str(s).startswith("judge")):
        part = frame[(frame["scorer"] == scorer) & (frame["metric"] != "judge_mean")]
        tables[scorer] = category_table(part, None, excluded, pooled=pooled)
        items = part.loc[~part["category"].isin(excluded), "item_id"].nunique()
        expected = frame.loc[~frame["category"].isin(excluded), "item_id"].nunique()
        comparable, fingerprint = comparability(score_details(part), suite or "", items, expected)
        click.echo(f"\n{scorer} per category (overall = " + ("pooled over every score" if pooled else
                   "unweighted mean of the categories that count") + f"); rubrics {fingerprint}")
        click.echo(tables[scorer].to_string(float_format=lambda v: f"{v:.3f}", na_rep=""))
        click.echo(f"comparable with the paper: {comparable}")
    if report_dir and tables:
        report_dir.mkdir(parents=True, exist_ok=True)
        lines = [f"# Evaluation {run.run_id}", "", f"Model `{name}` on bench `{bench_name}`.", ""]
        for title, table in tables.items():
            slug = title.replace(":", "_")
            bar_chart(table[["score"]].rename(columns={"score": title}), report_dir / f"{slug}.png", title=title)
            lines += [f"## {title}", "", markdown_table(table), "", f"![{title}]({slug}.png)", ""]
        (report_dir / "report.md").write_text("\n".join(lines))
        click.echo(f"\nreport written to {report_dir / 'report.md'}")


@eval_group.command("report")
@click.option("--bench", "bench_name", required=True, help="An imported published bench (openve-bench, ...).")
@click.option("--out", default=None, type=click.Path(path_type=Path), help="Also write report.md and a chart.")
@lake_option
def eval_report(bench_name, out, lake_uri) -> None:
    """Every scored model on a published bench beside the paper's figures, per category and overall, each row
    marked comparable or not (protocol, rubric fingerprint, judge model, items judged)."""
    from kiwi.eval.bench import bench_suite, load_bench
    from kiwi.eval.paper import paper_table
    from kiwi.eval.report import markdown_table
    from kiwi.eval.runner import excluded_categories, results

    db = open_lake(lake_uri)
    try:
        items = load_bench(db, bench_name)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    suite = bench_suite(items)
    if suite is None:
        raise click.ClickException(f"bench {bench_name!r} was not imported from a published bench; the paper's "
                                   "table needs openve-bench or refvie-bench (kiwi bench import)")
    frame = results(db, bench=bench_name)
    excluded = excluded_categories(frame) if not frame.empty else set()
    expected = sum(1 for i in items if i.counts_to_overall)
    table = paper_table(frame, suite, expected, excluded).set_index("model")
    click.echo(f"{suite} (bench {bench_name}, {expected} items that count; "
               + ("overall pooled over every score" if suite == "refvie-bench" else
                  "overall = mean of the five category means") + "):")
    click.echo(table.drop(columns=["run"]).to_string(float_format=lambda v: f"{v:.2f}", na_rep=""))
    if not (table["comparable"] != "paper").any():
        click.echo(f"(no model has been judged on {bench_name} yet: kiwi eval --bench {bench_name} --judge …)")
    if out:
        from kiwi.eval.paper import chart

        out.mkdir(parents=True, exist_ok=True)
        chart(table, suite, out / "paper_table.png")
        (out / "report.md").write_text(f"# {suite}: this project beside the paper\n\n"
                                       f"{markdown_table(table.drop(columns=['run']), digits=2)}\n\n"
                                       "![per category](paper_table.png)\n")
        click.echo(f"\nreport written to {out / 'report.md'}")


@eval_group.command("export")
@click.option("--run", "run_id", required=True, help="An evaluation run id (printed by kiwi eval).")
@click.option("--bench", "bench_name", required=True)
@click.option("--out", required=True, type=click.Path(path_type=Path, file_okay=False))
@lake_option
def eval_export(run_id, bench_name, out, lake_uri) -> None:
    """Write a run's outputs under upstream's file names, for upstream's own scripts or `kiwi eval --outputs`."""
    from kiwi.eval.bench import load_bench
    from kiwi.eval.outputs import export_outputs

    db = open_lake(lake_uri)
    try:
        count = export_outputs(db, run_id, out, load_bench(db, bench_name))
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{count} outputs of {run_id} written to {out}")

@click.command("experiment")
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
@click.option("--config", "model", type=click.Choice(["tiny-edit", "tiny-edit-context", "tiny"]), default="tiny-edit",
              show_default=True, help="tiny-edit-context: the refiner modulated by the pooled context (the model of "
              "the results in docs/experiment.md).")
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
    result = run_experiment(db, config, out, progress=on_terminal(), log=click.echo)
    click.echo("\npsnr per category, mean over seeds (dB), and copying the source:")
    click.echo(result.summary("psnr").to_string(float_format=lambda v: f"{v:.2f}"))
    click.echo("\nverdict:\n" + result.verdict)
    click.echo(f"\nreport: {result.report}")


