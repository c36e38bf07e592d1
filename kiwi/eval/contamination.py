"""Did this model train on the bench it is about to be scored on? A model trained by `kiwi train` carries its run id
and slice ids (`lineage.json` beside its weights); a bench frozen from the lake names each item's origin row
(`table@version:id`). Any overlap makes the scores meaningless, so evaluation refuses unless told otherwise."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from lake import Lake

LINEAGE = "lineage.json"
LAKE_ORIGIN = re.compile(r"^[\w-]+@\d+:(?P<id>.+)$")  # table@version:id; imported benches name a file


@dataclass(frozen=True)
class Overlap:
    run_id: str
    slice_ids: tuple[str, ...]
    items: int  # bench items whose origin row the run trained on
    bench_items: int

    def message(self, model: str, bench: str) -> str:
        return (f"--model {model} trained on {self.items} of the {self.bench_items} items of bench {bench!r} (run "
                f"{self.run_id}, slices {', '.join(s[:12] for s in self.slice_ids)}): its scores would measure "
                "memory, not editing. Train on rows outside the bench (the default slices use split = 'train'; "
                "`kiwi bench freeze` reads the bench split), or pass --allow-overlap to score it anyway.")


def write_lineage(model_dir: str | Path, run_id: str, slice_ids: list[str]) -> None:
    Path(model_dir, LINEAGE).write_text(json.dumps({"run_id": run_id, "slice_ids": list(slice_ids)}, indent=1))


def read_lineage(model_dir: str | Path) -> dict | None:
    path = Path(model_dir, LINEAGE)
    return json.loads(path.read_text()) if path.exists() else None


def bench_overlap(db: Lake, model_dir: str | Path, bench: str) -> Overlap | None:
    """The overlap between the rows the model's run trained on and the bench's origin rows; None when there is none
    or the model has no recorded lineage (a fresh `kiwi init`, a model from elsewhere)."""
    lineage = read_lineage(model_dir)
    if not lineage or not lineage.get("slice_ids"):
        return None
    origins = db.read("bench_items", columns=["origin"], where=f"bench = '{bench}'")["origin"].to_pylist()
    bench_ids = {m["id"] for m in (LAKE_ORIGIN.match(o or "") for o in origins) if m}
    if not bench_ids:  # an imported bench: its items are not lake rows
        return None
    quoted = ", ".join(f"'{s}'" for s in lineage["slice_ids"])
    trained = set(db.read("slice_rows", columns=["id"], where=f"slice_id IN ({quoted})")["id"].to_pylist())
    shared = bench_ids & trained
    if not shared:
        return None
    return Overlap(lineage["run_id"], tuple(lineage["slice_ids"]), len(shared), len(origins))
