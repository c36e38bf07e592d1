"""What the `lake`, `refvie` and `kiwi` command lines share: the --lake option, one-line errors, table output."""

from __future__ import annotations

import os
from pathlib import Path

import click
import pyarrow as pa
from click.core import ParameterSource

from lake.errors import LakeError
from lake.progress import on_terminal  # noqa: F401 - re-exported: the commands ask it here


class FriendlyGroup(click.Group):
    """A click group whose user mistakes (LakeError, ValueError, missing files) print one line and exit 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (LakeError, ValueError, FileNotFoundError) as e:
            raise click.ClickException(str(e)) from None


def _default_lake() -> str:
    return os.environ.get("KIWI_LAKE") or "./data/lake"


def _lake_value(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A --lake given before the subcommand (`lake --lake PATH info`) counts as if given after it."""
    given = ctx.meta.get("kiwi_lake")
    if given and ctx.get_parameter_source(param.name) is not ParameterSource.COMMANDLINE:
        return given
    return value


lake_option = click.option(
    "--lake", "lake_uri", default=_default_lake, callback=_lake_value, show_default=_default_lake(),
    help="Lake URI: a folder or s3:// gs:// az:// (default: $KIWI_LAKE, else ./data/lake).",
)


def _remember_lake(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.meta["kiwi_lake"] = value


group_lake_option = click.option(
    "--lake", expose_value=False, is_eager=True, callback=_remember_lake,
    help="Lake URI for the subcommand (also accepted after it).",
)


def open_lake(uri: str, create: bool = False):
    """The lake at `uri`. Only commands that fill a lake (`refvie ingest`) create one: a mistyped --lake must not
    leave an empty lake behind and report that it holds nothing."""
    import lake

    if not create and not lake.exists(uri):
        raise LakeError(f"no lake at {uri} (from --lake or $KIWI_LAKE); check the path, or create one with "
                        f"`refvie ingest …` or `make demo`")
    return lake.open(uri)


def format_table(table: pa.Table, max_rows: int = 50) -> str:
    """A readable fixed-width rendering; long results are cut with a note of how many rows there were."""
    if table.num_columns == 0:
        return "(no result)"
    if table.num_rows == 0:
        return f"(no rows; columns: {', '.join(table.column_names)})"
    frame = table.slice(0, max_rows).to_pandas()
    text = frame.to_string(index=False, max_colwidth=60)
    if table.num_rows > max_rows:
        text += f"\n… {table.num_rows - max_rows} more rows ({table.num_rows} in all; use --out to save them)"
    return text


def write_table(table: pa.Table, path: str) -> None:
    """Save a result as CSV, JSON (records) or Parquet, chosen by the file's extension."""
    suffix = Path(path).suffix.lower()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, path)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    elif suffix == ".json":
        table.to_pandas().to_json(path, orient="records", indent=1, date_format="iso")
    else:
        raise ValueError(f"--out {path}: use a .csv, .json or .parquet file name")
