"""The right batch for each method: a method sent to the protocol that does not serve it is
named, with the class to use (#24 item 2), over real HTTP against the FakePortal."""

from __future__ import annotations

import pytest

from b24batch import B24Hook, BatchV2, BatchV3, SdkError
from b24batch.testing import FakePortal


def test_a_crm_method_in_a_rest3_batch_names_the_classic_batch(
    portal: FakePortal, client: B24Hook
) -> None:
    """REST 3.0 does not find crm.deal.get: the error says it is classic, and which class."""
    task = portal.add_task(title="x")
    result = BatchV3(client).make([("tasks.task.get", {"id": task}), ("crm.deal.get", {"id": 1})])
    (error,) = result.errors
    assert error.hint == (
        "calls[1] (crm.deal.get) is not a REST 3.0 method: CRM, users, disk and most of the "
        "API are classic, so send it with BatchV2 (or BatchByChunkV2; run --v2 on the command "
        "line)"
    )
    assert str(error).endswith("; " + error.hint)
    assert "Method `crm.deal.get` not found" in str(error)


def test_a_rest3_method_in_a_classic_batch_names_batch_v3(
    portal: FakePortal, client: B24Hook
) -> None:
    """The classic batch does not find note.item.get: its error names BatchV3."""
    result = BatchV2(client).make([("user.current",), ("note.item.get", {"id": 1})])
    (error,) = result.errors
    assert error.key == 1
    assert (
        error.hint == "note.item.get is a REST 3.0 method: send it with BatchV3 (or BatchByChunkV3)"
    )
    assert str(error) == ("command 1: ERROR_METHOD_NOT_FOUND: Method not found!; " + error.hint)


def test_a_method_both_lack_gets_no_hint(portal: FakePortal, client: B24Hook) -> None:
    """A classic method the classic batch does not find either is not sent elsewhere."""
    result = BatchV2(client).make([("crm.nothing.here",)])
    (error,) = result.errors
    assert error.code == "ERROR_METHOD_NOT_FOUND"
    assert error.hint == ""


def test_other_errors_get_no_hint(portal: FakePortal, client: B24Hook) -> None:
    """A missing record is the caller's data, not the wrong class: no hint."""
    result = BatchV3(client).make([("tasks.task.get", {"id": 999})])
    assert result.errors[0].hint == ""


def test_sixty_commands_for_one_batch_name_the_chunker(portal: FakePortal, client: B24Hook) -> None:
    """More than 50 commands for BatchV3 are refused naming BatchByChunkV3; nothing is sent."""
    with pytest.raises(SdkError, match=r"let BatchByChunkV3 \(BatchByChunkV2 for classic\)"):
        BatchV3(client).make([("tasks.task.get", {"id": 1})] * 60)
    assert portal.requests == []
