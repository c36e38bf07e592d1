"""Edited videos as files named the way upstream's benchmark scripts name them, both ways.

`folder_editor(DIR)` scores a folder of another model's outputs (Runway Aleph's, OpenVE-Edit's, ...) without
running ours: each bench item's video is read from `DIR/<output name>` (OpenVE-Bench: `<original>_edited.mp4`;
RefVIE-Bench: `<n>_<instruction[:10]>_<source file name>`; a bench frozen from the lake: `<item id>.mp4`).
`export_outputs` writes an evaluation's stored outputs under the same names, so upstream's own scripts can score
them too."""

from __future__ import annotations

from pathlib import Path

from kiwi.eval.bench import BenchItem, ItemMedia
from lake import Lake
from lake.sql import literal


def output_name(item: BenchItem) -> str:
    return item.output_name or f"{item.item_id.replace('/', '_')}.mp4"


class MissingOutput(FileNotFoundError):
    pass


def folder_editor(folder: str | Path):
    """An editor (see `kiwi.eval.runner.evaluate`) that returns each item's file from `folder`, as it is."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"--outputs {folder}: no such folder")

    def read(item: BenchItem, pixels: ItemMedia, config) -> bytes:
        path = folder / output_name(item)
        if not path.is_file():
            raise MissingOutput(f"{folder}: no output for item {item.item_id} (expected {path.name})")
        return path.read_bytes()

    return read


def missing_outputs(folder: str | Path, items: list[BenchItem]) -> list[str]:
    """The file names a folder of outputs lacks for these items (checked before anything runs)."""
    return [output_name(i) for i in items if not (Path(folder) / output_name(i)).is_file()]


def export_outputs(db: Lake, run_id: str, folder: str | Path, items: list[BenchItem]) -> int:
    """Write run `run_id`'s stored outputs into `folder` under upstream's names; returns the files written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stored = db.read("eval_outputs", columns=["item_id"], where=f"run_id = {literal(run_id)}")["item_id"].to_pylist()
    by_id = {i.item_id: i for i in items}
    wanted = [i for i in stored if i in by_id]
    videos = db.read_blobs("eval_outputs", "video", [f"{run_id}/{i}" for i in wanted])
    for item_id, video in zip(wanted, videos, strict=True):
        (folder / output_name(by_id[item_id])).write_bytes(video)
    return len(wanted)
