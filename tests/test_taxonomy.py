import pytest

from lake.taxonomy import EDIT_TYPES, EditScope, EditType, Task, edit_scope, parse_edit_type


def test_every_edit_type_has_a_scope():
    assert {edit_scope(t) for t in EDIT_TYPES} == set(EditScope)
    assert EditType.LOCAL_REMOVE.scope is EditScope.LOCAL
    assert edit_scope("background_change") is EditScope.BACKGROUND


def test_reference_tasks_follow_the_paper():
    assert EditType.LOCAL_ADD.reference_task is Task.REF_SUBJECT
    assert EditType.LOCAL_CHANGE.reference_task is Task.REF_SUBJECT
    assert EditType.BACKGROUND_CHANGE.reference_task is Task.REF_BACKGROUND
    assert EditType.GLOBAL_STYLE.reference_task is None
    assert EditType.LOCAL_REMOVE.reference_task is None


def test_unknown_edit_type_names_the_value_and_the_choices():
    with pytest.raises(ValueError, match=r"unknown edit_type 'zoom'.*local_add"):
        parse_edit_type("zoom")
