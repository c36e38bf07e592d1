"""`lake`: look inside a lake from the shell — tables, SQL, named queries, versions and tags."""

from __future__ import annotations

import click

from lake.cli_common import FriendlyGroup, format_table, lake_option, open_lake, write_table
from lake.queries import list_queries, load_query, parse_value


@click.group(cls=FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option("--out", default=None, help="Write the full result to FILE.csv, .json or .parquet.")
@click.option("--max-rows", default=50, show_default=True)
@lake_option
def query(name: str | None, params: tuple[str, ...], version: str | None, out: str | None, max_rows: int,
          lake_uri: str) -> None:
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
    _emit(open_lake(lake_uri).query(name, version=version, **values), out, max_rows)


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
