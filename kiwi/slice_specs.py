"""A slice named on `kiwi train`'s command line: a saved one (its name or id), or one built on the spot from
`STRATEGY WHERE SQL` — `"temperature:0.3 WHERE split = 'train'"`, `"WHERE task = 'ref_subject'"` (natural) — and
saved, so the run's lineage names it like any other slice. Strategies are the experiment's arms without the
adaptive one: natural, uniform, temperature:A, local-heavy, target:cat=share,…"""

from __future__ import annotations

import re

from lake import Lake, LakeError
from lake.slices import build_slice, load_slice, save_slice

SPEC = re.compile(r"^\s*(?P<strategy>[^\s]+)?\s*\bWHERE\b\s+(?P<where>.+)$", re.IGNORECASE | re.DOTALL)


def resolve_slice(db: Lake, text: str, name: str, seed: int = 0) -> str:
    """The slice id `text` names, building and saving it (as `name`) when it is a `STRATEGY WHERE SQL` spec."""
    from kiwi.eval.experiment import parse_arm

    match = SPEC.match(text)
    if match is None:
        try:
            return load_slice(db, text).slice_id
        except LakeError as e:
            raise ValueError(f"{e}; or build one here with 'STRATEGY WHERE SQL', e.g. "
                             "\"temperature:0.3 WHERE split = 'train'\"") from None
    arm = parse_arm(match["strategy"] or "natural")
    if arm.adaptive is not None:
        raise ValueError(f"{text!r}: an adaptive mix moves during training (--adaptive-every), it is not a slice")
    try:
        built = build_slice(db, where=match["where"], strategy=arm.strategy, seed=seed, name=name)
    except (LakeError, ValueError) as e:
        raise ValueError(f"{text!r}: {e}") from None
    if not len(built.ids):
        raise ValueError(f"{text!r}: no rows match")
    save_slice(db, built)
    return built.slice_id
