"""Label maps: a dataset that carries its own edit taxonomy keeps its labels, translated onto ours.

A given label wins over any classifier, so it must be translated, not guessed. Shipped: OpenVE-3M's eight categories
(its subtitle, camera multi-shot and creative edits have no place among the balanced categories: `other`), ReCo's four
tasks, and Ditto-1M's subsets (only its style subsets say which of our categories they are: `local` and
`global_freeform` map to None, "no given label", and the classifier decides). Any other map comes from
`--label-map their=ours,...`, a YAML file of `their: ours` lines, or the name of a shipped map; on a source with a
shipped map of its own, the user's map is laid over it.
Labels are compared case- and separator-insensitively ("Background Change" = "background-change" =
"background_change"); our own category names always pass unchanged; anything else is unknown, and the row is
rejected with the reason `unknown_edit_type`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from lake.taxonomy import EDIT_TYPES
from refvie.sources.base import RowProblem

OPENVE = {
    "global_style": "global_style",
    "background_change": "background_change",
    "local_change": "local_change",
    "local_remove": "local_remove",
    "local_add": "local_add",
    "subtitles": "other",
    "subtitles_edit": "other",
    "subtitle_edit": "other",
    "camera_multi_shot": "other",
    "camera_multi_shot_edit": "other",
    "camera_multishot": "other",
    "creative": "other",
    "creative_edit": "other",
}
RECO = {"add": "local_add", "remove": "local_remove", "replace": "local_change", "style": "global_style"}
DITTO = {"global_style": "global_style", "local": None, "global_freeform": None}
SHIPPED = {"openve": OPENVE, "openve-3m": OPENVE, "reco": RECO, "ditto-1m": DITTO}


def normalise(label: str) -> str:
    return re.sub(r"[\s\-/]+", "_", str(label).strip().lower())


@dataclass(frozen=True)
class LabelMap:
    mapping: dict[str, str | None] = field(default_factory=dict)  # None: no given label, the classifier decides
    name: str = "identity"

    def __post_init__(self):
        bad = {k: v for k, v in self.mapping.items() if v is not None and v not in EDIT_TYPES}
        if bad:
            their, ours = next(iter(bad.items()))
            raise ValueError(f"label map {self.name}: {their!r} maps to {ours!r}, which is not one of "
                             f"{', '.join(EDIT_TYPES)}")
        object.__setattr__(self, "mapping", {normalise(k): v for k, v in self.mapping.items()})

    def apply(self, label: str | None) -> str | None:
        """Our category for a given label (None stays None); RowProblem('unknown_edit_type') when it has none."""
        if label is None or not str(label).strip():
            return None
        key = normalise(label)
        if key in self.mapping:
            return self.mapping[key]
        if key in EDIT_TYPES:
            return key
        known = sorted({*EDIT_TYPES, *self.mapping})
        raise RowProblem("unknown_edit_type", f"{label!r} is not a known category (label map {self.name}: "
                                              f"{', '.join(known)}); map it with --label-map")

    def under(self, own: LabelMap | None) -> LabelMap:
        """This map laid over a source's own: the user's entries win, the source's fill in the rest."""
        if own is None:
            return self
        if not self.mapping:
            return own
        return LabelMap({**own.mapping, **self.mapping}, name=f"{self.name} over {own.name}")


def parse_label_map(spec: str | None) -> LabelMap:
    """A shipped map's name, a YAML file, or `their=ours,their2=ours2`; None or '' is the identity."""
    if not spec:
        return LabelMap()
    if spec.lower() in SHIPPED:
        return LabelMap(SHIPPED[spec.lower()], name=spec.lower())
    path = Path(spec)
    if path.suffix.lower() in (".yaml", ".yml", ".json") or path.is_file():
        import yaml

        if not path.is_file():
            raise ValueError(f"{spec}: no such label-map file")
        data = yaml.safe_load(path.read_text())
        if not isinstance(data, dict) or not all(v is None or isinstance(v, str) for v in data.values()):
            raise ValueError(f"{spec}: a label map file holds 'their_label: our_category' lines")
        return LabelMap({str(k): v for k, v in data.items()}, name=path.name)
    mapping = {}
    for item in spec.split(","):
        their, sep, ours = item.partition("=")
        if not sep or not their.strip() or not ours.strip():
            raise ValueError(f"--label-map: {item!r} is not their=ours (or name a shipped map: "
                             f"{', '.join(SHIPPED)}, or a YAML file)")
        mapping[their.strip()] = ours.strip()
    return LabelMap(mapping, name="--label-map")
