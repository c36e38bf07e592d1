"""The official judge rubrics, read from the user's copy of the upstream evaluation scripts.

The project ships no copy of upstream's prompt texts. `load_official_rubrics(paths)` parses each script with
Python's `ast` (the file is never imported or run), takes the module-level string constants by name — OpenVE-Bench's
one per category (the script's own `prompt_type` table says which, where it has one), RefVIE-Bench's subject and
background prompts — checks that each has exactly the placeholder upstream formats the instruction into and names
every dimension the score parser reads, and fingerprints it. A script that lacks a constant, or whose text does not
fit, is refused with an error naming the file and the constant."""

from __future__ import annotations

import ast
import string
from collections.abc import Sequence
from pathlib import Path

from kiwi.eval.rubrics import OPENVE_DIMENSIONS, REFVIE_DIMENSIONS, Rubric, RubricSet

# OpenVE-Bench categories (as `edited_type` spells them) -> the constant upstream keeps each rubric in
OPENVE_CONSTANTS = {
    "global_style": "GLOBAL_STYLE",
    "background_change": "BACKGROUND_CHANGE",
    "local_change": "LOCAL_CHANGE",
    "local_remove": "LOCAL_REMOVE",
    "local_add": "LOCAL_ADD",
}
# the categories the official script skips; their rubrics are used when the script has them
OPENVE_APART_CONSTANTS = {
    "subtitle_edit": "SUBTITLES_EDIT",
    "camera_edit": "CAMERA_MULTI_SHOT_EDIT",
    "creative_edit": "CREATIVE_EDIT",
}
REFVIE_CONSTANTS = {"ref_subject": "SUBJECT_REFERENCE_PROMPT", "ref_background": "BACKGROUND_REFERENCE_PROMPT"}
OPENVE_PLACEHOLDER, REFVIE_PLACEHOLDER = "edit_prompt", "prompt"
_REFVIE_SUBTASKS = {"subject": "ref_subject", "background": "ref_background"}


class RubricScriptError(ValueError):
    """An official script that cannot be used as given."""


def _module_values(path: Path) -> tuple[dict[str, str], dict[str, str], dict[str, tuple[str, ...]]]:
    """(string constants by name, the `prompt_type` table category -> constant name, `task_score_map`)."""
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError) as e:
        raise RubricScriptError(f"{path}: not a readable Python script ({e})") from None
    constants: dict[str, str] = {}
    table: dict[str, str] = {}
    dimensions: dict[str, tuple[str, ...]] = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        name, value = node.targets[0].id, node.value
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            constants[name] = value.value
        elif name == "prompt_type" and isinstance(value, ast.Dict):
            table = {k.value: v.id for k, v in zip(value.keys, value.values, strict=True)
                     if isinstance(k, ast.Constant) and isinstance(v, ast.Name)}
        elif name == "task_score_map":
            try:
                literal = ast.literal_eval(value)
            except ValueError:
                continue
            dimensions = {_REFVIE_SUBTASKS.get(k, k): tuple(v) for k, v in literal.items()}
    return constants, table, dimensions


def _rubric(path: Path, constant: str, text: str, key: str, placeholder: str, dimensions: tuple[str, ...],
            uses_reference: bool) -> Rubric:
    where = f"{path}::{constant}"
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError as e:
        raise RubricScriptError(f"{where}: not a format string ({e})") from None
    if fields != {placeholder}:
        raise RubricScriptError(f"{where}: expected exactly the placeholder {{{placeholder}}} for the instruction, "
                                f"found {sorted(fields) or 'none'}")
    missing = [d for d in dimensions if d not in text]
    if missing:
        raise RubricScriptError(f"{where}: never names the dimension {missing[0]!r} the scores are read by")
    return Rubric(f"official:{key}", dimensions, capped_by=dimensions[0], uses_reference=uses_reference,
                  template=text, placeholder=placeholder, source=where)


def _openve(path: Path, constants: dict[str, str], table: dict[str, str]) -> dict[str, Rubric]:
    names = {c: table.get(c, n) for c, n in OPENVE_CONSTANTS.items()}
    missing = [n for n in names.values() if n not in constants]
    if missing:
        raise RubricScriptError(f"{path}: an OpenVE-Bench script needs the constant {missing[0]} "
                                f"(found: {', '.join(sorted(constants)) or 'no string constants'})")
    names.update({c: n for c, n in OPENVE_APART_CONSTANTS.items() if n in constants})
    return {c: _rubric(path, n, constants[n], c, OPENVE_PLACEHOLDER, OPENVE_DIMENSIONS, False)
            for c, n in names.items()}


def _refvie(path: Path, constants: dict[str, str], dimensions: dict[str, tuple[str, ...]]) -> dict[str, Rubric]:
    missing = [n for n in REFVIE_CONSTANTS.values() if n not in constants]
    if missing:
        raise RubricScriptError(f"{path}: a RefVIE-Bench script needs the constant {missing[0]}")
    return {t: _rubric(path, n, constants[n], t, REFVIE_PLACEHOLDER, dimensions.get(t, REFVIE_DIMENSIONS[t]), True)
            for t, n in REFVIE_CONSTANTS.items()}


def load_official_rubrics(paths: Sequence[str | Path]) -> RubricSet:
    """The rubrics of each script given (eval_openve_gemini.py, eval_refvie_gemini.py, or both), merged."""
    merged = RubricSet(origin="")
    for path in map(Path, paths):
        constants, table, dimensions = _module_values(path)
        is_openve = any(n in constants for n in OPENVE_CONSTANTS.values()) or bool(table)
        is_refvie = any(n in constants for n in REFVIE_CONSTANTS.values())
        if not (is_openve or is_refvie):
            raise RubricScriptError(f"{path}: holds no OpenVE-Bench constants ({', '.join(OPENVE_CONSTANTS.values())})"
                                    f" nor RefVIE-Bench ones ({', '.join(REFVIE_CONSTANTS.values())})")
        part = RubricSet(by_category=_openve(path, constants, table) if is_openve else {},
                         by_task=_refvie(path, constants, dimensions) if is_refvie else {}, origin=str(path))
        merged = merged.merged(part)
    return merged
