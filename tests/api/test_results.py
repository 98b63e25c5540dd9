"""The result models and their converter (b24batch.results): Time, ChunkError, structuring."""

from __future__ import annotations

import dataclasses
import types

import attrs
import pytest

from b24batch import AjaxError, ChunkError, DecodeError, SdkTypeError, Time
from b24batch.results import check_type, structure, structure_quick


def test_time_from_json_reads_every_field() -> None:
    """Each of the eight fields is read from its own key: numbers as floats, dates as text."""
    time = Time.from_json(
        {
            "start": 1,
            "finish": 2,
            "duration": 3,
            "processing": 4,
            "date_start": "s",
            "date_finish": "f",
            "operating_reset_at": 5,
            "operating": 6,
        }
    )
    assert time == Time(
        start=1.0,
        finish=2.0,
        duration=3.0,
        processing=4.0,
        date_start="s",
        date_finish="f",
        operating_reset_at=5.0,
        operating=6.0,
    )


def test_time_fields_of_the_wrong_type_become_none() -> None:
    """A date that is not text and a number that is a bool or text are dropped, not kept."""
    time = Time.from_json(
        {"date_start": 1787219542, "date_finish": ["x"], "operating_reset_at": True, "start": "1"}
    )
    assert time == Time()


def test_time_takes_floats_as_they_are_and_checks_everything_else() -> None:
    """Exact floats and str (JSON's own) are kept; a float or str subclass, an int, a bool, a
    list are read as the checked path reads them, and a Mapping that is not a dict is read."""

    class Seconds(float):
        pass

    class Text(str):
        pass

    block = {
        "start": 1787219542.25,
        "finish": Seconds(2.5),
        "duration": 7,
        "processing": False,
        "date_start": Text("s"),
        "date_finish": ["x"],
        "operating": None,
    }
    time = Time.from_json(block)
    assert time == Time(start=1787219542.25, finish=2.5, duration=7.0, date_start="s")
    assert time is not None
    assert type(time.finish) is float
    assert type(time.duration) is float
    assert Time.from_json(types.MappingProxyType(block)) == time
    assert Time.from_json(["start", 1.0]) is None


def test_a_chunk_error_names_one_command_or_the_first_and_last() -> None:
    """One key is named alone; two or more as 'first to last'."""
    error = AjaxError("boom", code="X", status=400)
    assert str(ChunkError(3, (7,), error)) == "chunk 3 (commands 7): X (HTTP 400): boom"
    assert str(ChunkError(3, ("a", "b"), error)) == (
        "chunk 3 (commands 'a' to 'b'): X (HTTP 400): boom"
    )


@attrs.frozen
class _Item:
    id: int


def test_structure_quick_structures_the_value_it_is_given() -> None:
    """The fast path returns the typed value itself, even for a type that also accepts None."""
    assert structure_quick({"id": "7"}, _Item) == _Item(7)
    assert structure_quick(5, int | None) == 5


def test_structure_names_the_value_by_its_path_when_no_label_is_given() -> None:
    """Without a label the message starts with the path, '$' by default."""
    with pytest.raises(DecodeError) as info:
        structure({"id": "x"}, _Item)
    assert str(info.value) == "$ does not fit _Item: invalid value for type, expected int @ $.id"


def test_structure_lists_every_failing_path_and_names_a_generic_type_in_full() -> None:
    """Each failing path is given, separated by '; '; list[int] is named so, not 'list'."""
    with pytest.raises(DecodeError) as info:
        structure([1, "a", "b"], list[int], path="$.result[2]", label="the result", request_id="r")
    assert str(info.value) == (
        "the result does not fit list[int]: invalid value for type, expected int @ "
        "$.result[2][1]; invalid value for type, expected int @ $.result[2][2]"
    )
    assert info.value.request_id == "r"


def test_structure_names_a_union_type_that_has_no_qualname() -> None:
    """int | None has no __qualname__: the message uses its repr, and is still a DecodeError."""
    with pytest.raises(DecodeError) as info:
        structure("x", int | None, label="the result")
    assert str(info.value) == "the result does not fit int | None: invalid value @ $"


@dataclasses.dataclass
class _Unresolvable:
    x: Nope  # type: ignore[name-defined]  # noqa: F821


def test_check_type_says_which_exception_cattrs_raised_and_the_fix() -> None:
    """The whole message: where, the type, cattrs' exception by name, and what to pass instead."""
    with pytest.raises(SdkTypeError) as info:
        check_type(_Unresolvable, "result_type")
    assert str(info.value) == (
        "result_type=_Unresolvable cannot be used: cattrs cannot structure it (NameError: name "
        "'Nope' is not defined); pass an attrs class, dataclass or typing type whose "
        "annotations resolve at module level"
    )


def test_check_type_names_a_value_that_is_not_a_class_by_its_repr() -> None:
    """A string passed as a type is shown quoted, as its repr."""
    with pytest.raises(SdkTypeError, match=r"^result_type='Foo' cannot be used: "):
        check_type("Foo", "result_type")
