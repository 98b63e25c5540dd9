"""``_protocols.base``: ``Prepared.part`` and ``Answers.replaced``, the pure halves of a re-send.

``part`` cuts a prepared batch down to some of its commands under the same wire keys;
``replaced`` merges the answer to such a part back into the whole batch's answers.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from b24batch._protocols.base import Answers
from b24batch._protocols.v2 import V2
from b24batch.commands import normalize
from b24batch.errors import AjaxError
from b24batch.results import Time


def error(code: str) -> AjaxError:
    """A command's error with ``code``."""
    return AjaxError(code, code=code, status=200)


def whole(**fields: object) -> Answers:
    """Answers to a batch of three: the second refused, the third not run."""
    defaults: dict[str, object] = {
        "status": 200,
        "time": None,
        "entries": ["a", None, None],
        "errors": {1: error("QUERY_LIMIT_EXCEEDED")},
        "not_run": frozenset({2}),
    }
    defaults.update(fields)
    return Answers(**defaults)  # type: ignore[arg-type]


def test_a_part_holds_only_the_commands_at_its_positions() -> None:
    """``Prepared.part`` keeps the commands, wire keys and body of the chosen positions only."""
    calls = {"a": ("user.current",), "b": ("crm.deal.get", {"id": 2}), "c": ("app.x",)}
    prepared = V2.prepare(normalize(calls, what="classic"), halt=True)
    part = prepared.part([0, 2])
    assert part.commands.keys == ("a", "c")
    assert [command.method for command in part.commands.items] == ["user.current", "app.x"]
    assert part.wire_keys == ("a", "c")
    assert parse_qs(part.body.decode("ascii")) == {
        "halt": ["1"],
        "cmd[a]": ["user.current"],
        "cmd[c]": ["app.x"],
    }


def test_replaced_takes_the_parts_entries_errors_and_not_run_at_their_positions() -> None:
    """A part's answer replaces the entries at its positions; its errors and not-run commands
    move to those positions, and the old ones there are dropped."""
    still = error("QUERY_LIMIT_EXCEEDED")
    part = Answers(
        status=200,
        time=None,
        entries=[None, "c"],
        errors={0: still},
        not_run=frozenset({0}),
    )
    merged = whole().replaced([1, 2], part)
    assert merged.entries == ["a", None, "c"]
    assert dict(merged.errors) == {1: still}
    assert merged.not_run == frozenset({1})


def test_replaced_clears_what_the_part_answered_well() -> None:
    """A position the part ran without error loses its old error and its not-run mark."""
    part = Answers(status=200, time=None, entries=["b", "c"])
    merged = whole().replaced([1, 2], part)
    assert merged.entries == ["a", "b", "c"]
    assert dict(merged.errors) == {}
    assert merged.not_run == frozenset()


def test_replaced_takes_the_parts_times_totals_and_nexts() -> None:
    """Per-command times, totals and nexts are replaced at the part's positions, kept elsewhere."""
    old, new = Time(duration=1.0), Time(duration=2.0)
    answers = whole(times=[old, old, old], totals=[10, None, None], nexts=[50, None, None])
    part = Answers(
        status=200,
        time=None,
        entries=["b", "c"],
        times=[new, None],
        totals=[7, 8],
        nexts=[None, 100],
    )
    merged = answers.replaced([1, 2], part)
    assert merged.times == [old, new, None]
    assert merged.totals == [10, 7, 8]
    assert merged.nexts == [50, None, 100]


def test_replaced_keeps_per_command_blocks_the_part_lacks() -> None:
    """Where the part has no times, totals or nexts, the whole answer's are kept unchanged."""
    old = Time(duration=1.0)
    answers = whole(times=[old, old, old], totals=[1, 2, 3], nexts=[4, 5, 6])
    part = Answers(status=200, time=None, entries=["b", "c"])
    merged = answers.replaced([1, 2], part)
    assert merged.times == [old, old, old]
    assert merged.totals == [1, 2, 3]
    assert merged.nexts == [4, 5, 6]


def test_replaced_adds_no_per_command_blocks_the_whole_lacks() -> None:
    """Answers without times, totals or nexts stay without them, whatever the part has."""
    part = Answers(
        status=200,
        time=None,
        entries=["b", "c"],
        times=[Time(duration=2.0), None],
        totals=[7, 8],
        nexts=[None, 100],
    )
    merged = whole().replaced([1, 2], part)
    assert (merged.times, merged.totals, merged.nexts) == (None, None, None)
