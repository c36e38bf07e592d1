"""`lake`: look inside a lake from the shell — tables, SQL, named queries, versions and tags."""

from __future__ import annotations

import click

from lake.cli_common import FriendlyGroup, format_table, group_lake_option, lake_option, open_lake, write_table
from lake.queries import list_queries, load_query, parse_value


@click.group(cls=FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@group_lake_option
def cli() -> None:
    """Kiwi Lake: the RefVIE multimodal lake (LanceDB tables, DuckDB SQL, versions and tags)."""


@cli.command()
@lake_option
def info(lake_uri: str) -> None:
    """Tables with their row counts, current version, number of versions and tags."""
    import pyarrow as pa

    db = open_lake(lake_uri)
    rows = [
        dict(table=t.name, rows=t.rows, version=t.version, versions=t.versions, size_mb=round(t.bytes / 2**20, 2),
             tags=", ".join(f"{k}@{v}" for k, v in sorted(t.tags.items())))
        for t in db.info()
    ]
    click.echo(f"lake {db.uri}")
    click.echo(format_table(pa.Table.from_pylist(rows)))


@cli.command()
@click.argument("query")
@click.option("--version", "version", default=None, help="Read the table at this version number or tag.")
@click.option("--out", default=None, help="Write the full result to FILE.csv, .json or .parquet.")
@click.option("--max-rows", default=50, show_default=True, help="Rows to print.")
@lake_option
def sql(query: str, version: str | None, out: str | None, max_rows: int, lake_uri: str) -> None:
    """Run DuckDB SQL over the lake, e.g. lake sql "SELECT edit_type, count(*) FROM quadruplets GROUP BY 1"."""
    result = open_lake(lake_uri).sql(query, version=version)
    _emit(result, out, max_rows)


@cli.command()
@click.argument("name", required=False)
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE", help="A query parameter (repeatable).")
@click.option("--version", "version", default=None, help="Read the table at this version number or tag.")
@click.option("--engine", type=click.Choice(["duckdb", "daft"]), default="duckdb", show_default=True)
@click.option("--out", default=None, help="Write the full result to FILE.csv, .json or .parquet.")
@click.option("--max-rows", default=50, show_default=True)
@lake_option
def query(name: str | None, params: tuple[str, ...], version: str | None, engine: str, out: str | None,
          max_rows: int, lake_uri: str) -> None:
    """Run a named query from queries/*.sql; without NAME, list them."""
    if name is None:
        for q in list_queries().values():
            args = " ".join(f"{p}={q.defaults.get(p, '?')}" for p in q.identifiers + q.values)
            click.echo(f"{q.name:28} {q.description}" + (f"  [{args}]" if args else ""))
        return
    load_query(name)  # fail on an unknown name before opening the lake
    values = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--param")
        values[key] = parse_value(value)
    _emit(open_lake(lake_uri).query(name, version=version, engine=engine, **values), out, max_rows)


@cli.command()
@click.argument("query_id")
@click.option("-k", default=5, show_default=True, help="How many neighbours.")
@click.option("--column", default="target_emb", show_default=True,
              help="Vector column: target_emb, reference_emb or instruction_emb.")
@click.option("--where", default=None, help="Filter applied before the search, e.g. \"edit_type = 'local_add'\".")
@lake_option
def nearest(query_id: str, k: int, column: str, where: str | None, lake_uri: str) -> None:
    """The K quadruplets most similar to QUERY_ID (cosine on an embedding column)."""
    click.echo(format_table(open_lake(lake_uri).nearest(query_id, k=k, column=column, where=where)))


@cli.command()
@click.argument("table")
@lake_option
def versions(table: str, lake_uri: str) -> None:
    """Every version of TABLE with its time, row count and tags."""
    import pyarrow as pa

    rows = [dict(version=v.version, timestamp=v.timestamp.isoformat(timespec="seconds"), rows=v.rows,
                 tags=", ".join(v.tags)) for v in open_lake(lake_uri).versions(table)]
    click.echo(format_table(pa.Table.from_pylist(rows), max_rows=1000))


@cli.group(cls=FriendlyGroup)
def tag() -> None:
    """Name table versions that matter (e.g. refvie-v1) and read them back by name."""


@tag.command("create")
@click.argument("table")
@click.argument("name")
@click.option("--version", "version", default=None, help="Version to tag (default: the latest).")
@lake_option
def tag_create(table: str, name: str, version: str | None, lake_uri: str) -> None:
    """Tag a version of TABLE as NAME."""
    number = open_lake(lake_uri).tag(table, name, version)
    click.echo(f"tagged {table} version {number} as {name}")


@tag.command("list")
@click.argument("table", required=False)
@lake_option
def tag_list(table: str | None, lake_uri: str) -> None:
    """Tags of TABLE, or of every table."""
    import pyarrow as pa

    rows = [dict(table=t, tag=name, version=v) for t, name, v in open_lake(lake_uri).tags(table)]
    click.echo(format_table(pa.Table.from_pylist(rows)) if rows else "no tags")


@tag.command("delete")
@click.argument("table")
@click.argument("name")
@lake_option
def tag_delete(table: str, name: str, lake_uri: str) -> None:
    """Remove tag NAME from TABLE (the version itself stays)."""
    open_lake(lake_uri).delete_tag(table, name)
    click.echo(f"deleted tag {name} of {table}")


@cli.command()
@click.option("--table", default="quadruplets", show_default=True)
@click.option("--by", default="edit_type", show_default=True, help="Grouping column or SQL expression.")
@click.option("--strategy", type=click.Choice(["natural", "uniform", "temperature", "target", "cap"]),
              default="temperature", show_default=True)
@click.option("--alpha", type=float, default=None, help="temperature: p_c ∝ n_c^alpha.")
@click.option("--target", "target_mix", default=None, help="target: e.g. local_add=0.2,background_change=0.3,...")
@click.option("--max-repeats", type=float, default=None, help="cap: UniMax, no row repeated more than this.")
@click.option("--max-rows", type=int, default=None, help="cap: at most this many samples of a category.")
@click.option("--where", default=None, help="SQL filter on the table before balancing.")
@click.option("--version", "version", default=None, help="Table version or tag to pin (default: latest).")
@click.option("--epoch-size", type=int, default=None, help="Samples per epoch (default: rows available).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--name", default=None, help="Name to save the slice under.")
@click.option("--dry-run", is_flag=True, help="Print the before/after report only.")
@lake_option
def balance(table, by, strategy, alpha, target_mix, max_repeats, max_rows, where, version, epoch_size, seed, name,
            dry_run, lake_uri) -> None:
    """Rebalance a table's categories into a versioned slice; print the before/after report."""
    import pyarrow as pa

    from lake.balance import Strategy
    from lake.slices import build_slice, save_slice

    proportions = {}
    for item in (target_mix or "").split(","):
        if item.strip():
            key, _, value = item.partition("=")
            proportions[key.strip()] = float(value)
    needs = {"temperature": ("--alpha", alpha is not None), "target": ("--target", bool(proportions)),
             "cap": ("one of --max-repeats or --max-rows", (max_repeats is None) != (max_rows is None))}
    if strategy in needs and not needs[strategy][1]:
        raise click.UsageError(f"--strategy {strategy} needs {needs[strategy][0]}")
    chosen = Strategy(strategy, alpha=alpha if strategy == "temperature" else None, proportions=proportions,
                      max_repeats=max_repeats, max_rows=max_rows)
    db = open_lake(lake_uri)
    s = build_slice(db, table=table, by=by, strategy=chosen, where=where, version=version, seed=seed,
                    epoch_size=epoch_size, name=name)
    click.echo(f"{table}@{s.table_version} by {by}, {chosen.label}, epoch {s.epoch_size}")
    click.echo(format_table(pa.Table.from_pylist(s.report())))
    for warning in s.allocation.warnings:
        click.echo(f"warning: {warning}")
    if dry_run:
        click.echo("dry run: nothing saved")
    else:
        existing = db.read("slices", columns=["name"], where=f"slice_id = '{s.slice_id}'")["name"].to_pylist()
        if existing and existing[0] != s.name:  # the id is the definition's hash: one definition, one slice
            click.echo(f"slice {s.slice_id} already exists with this definition as {existing[0]!r}; not saved "
                       f"again as {s.name!r} (use {existing[0]!r} or the id)")
        else:
            click.echo(f"saved slice {save_slice(db, s)} as {s.name!r}")


@cli.group(cls=FriendlyGroup, name="slice")
def slice_group() -> None:
    """Saved slices: list, show, diff."""


@slice_group.command("list")
@lake_option
def slice_list(lake_uri: str) -> None:
    """Every saved slice with its table version and strategy."""
    from lake.slices import list_slices

    click.echo(format_table(list_slices(open_lake(lake_uri))))


@slice_group.command("show")
@click.argument("slice_ref")
@lake_option
def slice_show(slice_ref: str, lake_uri: str) -> None:
    """A slice's lineage and per-category report (by id, id prefix or name)."""
    import pyarrow as pa

    from lake.slices import load_slice

    s = load_slice(open_lake(lake_uri), slice_ref)
    click.echo(f"slice {s.slice_id} {s.name!r}: {s.table}@{s.table_version} by {s.by}"
               + (f" where {s.where}" if s.where else "")
               + f", {s.strategy.label}, seed {s.seed}, epoch {s.epoch_size}, "
               f"code {s.code_version}, created {s.created_at:%Y-%m-%d %H:%M}")
    click.echo(format_table(pa.Table.from_pylist(s.report())))


@slice_group.command("diff")
@click.argument("a")
@click.argument("b")
@lake_option
def slice_diff(a: str, b: str, lake_uri: str) -> None:
    """Per-category shares of two slices side by side."""
    import pyarrow as pa

    from lake.slices import diff_slices, load_slice

    db = open_lake(lake_uri)
    click.echo(format_table(pa.Table.from_pylist(diff_slices(load_slice(db, a), load_slice(db, b)))))


def _emit(result, out: str | None, max_rows: int) -> None:
    if out:
        write_table(result, out)
        click.echo(f"wrote {result.num_rows} rows to {out}")
    else:
        click.echo(format_table(result, max_rows=max_rows))


def main() -> None:
    cli(prog_name="lake")


if __name__ == "__main__":
    main()
