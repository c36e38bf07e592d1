"""The edit taxonomy: one enum for every edit category, shared by refvie (which labels) and kiwi (which trains
and evaluates per category). Categories follow the Kiwi-Edit paper's split of local, background and global edits."""

from __future__ import annotations

from enum import StrEnum


class EditType(StrEnum):
    LOCAL_ADD = "local_add"
    LOCAL_REMOVE = "local_remove"
    LOCAL_CHANGE = "local_change"  # replace an object, or change one of its attributes
    BACKGROUND_CHANGE = "background_change"
    GLOBAL_STYLE = "global_style"
    OTHER = "other"  # camera, subtitle, creative: kept, but outside the balanced categories

    @property
    def scope(self) -> EditScope:
        return edit_scope(self)

    @property
    def reference_task(self) -> Task | None:
        """The reference-guided task this edit supports, or None when only instruction editing makes sense."""
        return _REFERENCE_TASK.get(self)


class EditScope(StrEnum):
    LOCAL = "local"
    BACKGROUND = "background"
    GLOBAL = "global"
    OTHER = "other"


class Task(StrEnum):
    INSTRUCT = "instruct"
    REF_SUBJECT = "ref_subject"
    REF_BACKGROUND = "ref_background"


class Split(StrEnum):
    TRAIN = "train"
    VAL = "val"
    BENCH = "bench"


_SCOPE = {
    EditType.LOCAL_ADD: EditScope.LOCAL,
    EditType.LOCAL_REMOVE: EditScope.LOCAL,
    EditType.LOCAL_CHANGE: EditScope.LOCAL,
    EditType.BACKGROUND_CHANGE: EditScope.BACKGROUND,
    EditType.GLOBAL_STYLE: EditScope.GLOBAL,
    EditType.OTHER: EditScope.OTHER,
}

_REFERENCE_TASK = {
    EditType.LOCAL_ADD: Task.REF_SUBJECT,
    EditType.LOCAL_CHANGE: Task.REF_SUBJECT,
    EditType.BACKGROUND_CHANGE: Task.REF_BACKGROUND,
}

EDIT_TYPES: tuple[str, ...] = tuple(e.value for e in EditType)
TASKS: tuple[str, ...] = tuple(t.value for t in Task)
SPLITS: tuple[str, ...] = tuple(s.value for s in Split)


def edit_scope(edit_type: str | EditType) -> EditScope:
    """Derived scope of an edit type; raises ValueError naming the value when it is not in the taxonomy."""
    return _SCOPE[parse_edit_type(edit_type)]


def parse_edit_type(value: str | EditType) -> EditType:
    try:
        return EditType(value)
    except ValueError:
        raise ValueError(f"unknown edit_type {value!r}; expected one of {', '.join(EDIT_TYPES)}") from None
