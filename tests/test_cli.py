"""The `lake` command line: readable output, files, one-line errors with a non-zero exit."""

import json

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import lake
from lake.cli import cli
from tests.conftest import quadruplet_rows


@pytest.fixture
def lake_uri(tmp_path):
    db = lake.open(tmp_path / "lake")
    db.upsert("quadruplets", quadruplet_rows(12, videos=False))
    return str(tmp_path / "lake")


def run(*args, env=None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_info_lists_tables_rows_and_versions(lake_uri):
    result = run("info", "--lake", lake_uri)
    assert result.exit_code == 0
    line = next(ln for ln in result.output.splitlines() if ln.strip().startswith("quadruplets"))
    assert line.split()[:4] == ["quadruplets", "12", "2", "2"]


def test_lake_uri_comes_from_the_environment(lake_uri):
    result = run("sql", "SELECT count(*) AS n FROM quadruplets", env={"KIWI_LAKE": lake_uri})
    assert result.exit_code == 0 and result.output.split() == ["n", "12"]


def test_lake_is_accepted_before_the_subcommand_and_wins_over_the_environment(lake_uri, tmp_path):
    before = run("--lake", lake_uri, "sql", "SELECT count(*) AS n FROM quadruplets",
                 env={"KIWI_LAKE": str(tmp_path / "elsewhere")})
    assert before.exit_code == 0 and before.output.split() == ["n", "12"]
    nested = run("--lake", lake_uri, "slice", "list")
    assert nested.exit_code == 0, nested.output
    shown = " ".join(run("info", "--help").output.split())
    assert "(default: $KIWI_LAKE, else ./data/lake)" in shown and "[default: (" in shown  # the effective one


def test_sql_prints_a_table_and_writes_files(lake_uri, tmp_path):
    query = "SELECT edit_type, count(*) AS n FROM quadruplets GROUP BY 1 ORDER BY 1"
    printed = run("sql", query, "--lake", lake_uri)
    assert printed.exit_code == 0 and printed.output.splitlines()[0].split() == ["edit_type", "n"]
    for suffix in ("csv", "json", "parquet"):
        out = tmp_path / f"dist.{suffix}"
        result = run("sql", query, "--lake", lake_uri, "--out", str(out))
        assert result.exit_code == 0 and f"wrote 5 rows to {out}" in result.output
    assert json.loads((tmp_path / "dist.json").read_text())[0].keys() == {"edit_type", "n"}
    assert pq.read_table(tmp_path / "dist.parquet").num_rows == 5
    assert (tmp_path / "dist.csv").read_text().splitlines()[0] == '"edit_type","n"'


def test_named_queries_list_and_run_with_params(lake_uri):
    listing = run("query")
    assert "edit_type_distribution" in listing.output and "[table=quadruplets]" in listing.output
    result = run("query", "pairs_by_dataset", "--param", "min_frames=5", "--lake", lake_uri)
    assert result.exit_code == 0, result.output
    result = run("query", "edit_type_distribution", "-p", "table=quadruplets", "--lake", lake_uri)
    assert result.exit_code == 0 and "background_change" in result.output


def test_tags_from_the_command_line(lake_uri):
    assert run("tag", "create", "quadruplets", "first", "--lake", lake_uri).output.strip() == (
        "tagged quadruplets version 2 as first")
    assert "first" in run("tag", "list", "--lake", lake_uri).output
    result = run("sql", "SELECT count(*) AS n FROM quadruplets", "--version", "first", "--lake", lake_uri)
    assert result.output.split() == ["n", "12"]
    assert "first" in run("versions", "quadruplets", "--lake", lake_uri).output
    assert run("tag", "delete", "quadruplets", "first", "--lake", lake_uri).exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("sql", "SELECT * FROM nowhere"), "Error: SQL failed: Catalog Error: Table with name nowhere does not exist!"),
        (("query", "nope"), "Error: no named query 'nope'"),
        (("query", "pairs_by_dataset", "-p", "oops"), "is not KEY=VALUE"),
        (("sql", "SELECT 1 FROM quadruplets", "--version", "v9"), "Error: table 'quadruplets' has no tag 'v9'"),
        (("sql", "SELECT 1", "--out", "x.xlsx"), "use a .csv, .json or .parquet"),
        (("versions", "quads"), "Error: unknown table 'quads'"),
        (("sql", "SELECT source_video FROM quadruplets"), "quadruplets.source_video holds media bytes and is hidden "
                                                          "from SQL; select id here and read the media with db."),
        (("balance", "--strategy", "temperature"), "--strategy temperature needs --alpha"),
        (("balance", "--strategy", "cap"), "--strategy cap needs one of --max-repeats or --max-rows"),
        (("balance", "--strategy", "target"), "--strategy target needs --target"),
    ],
)
def test_user_mistakes_print_one_line_and_exit_non_zero(lake_uri, args, message):
    result = CliRunner().invoke(cli, [*args, "--lake", lake_uri])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert len([ln for ln in result.output.splitlines() if ln.startswith("Error")]) == 1


@pytest.mark.parametrize("command", [[], ["info"], ["sql"], ["query"], ["versions"], ["tag"], ["tag", "create"],
                                     ["tag", "list"], ["tag", "delete"]])
def test_every_command_has_help(command):
    result = run(*command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output
