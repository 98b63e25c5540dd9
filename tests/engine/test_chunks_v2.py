"""BatchByChunkV2: any number of classic commands in chunks, over real HTTP."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import attrs
import pytest

from b24batch import B24Hook, BatchByChunkV2, SdkError, TransportError
from b24batch.testing import FakePortal, Fault


@attrs.frozen
class Deal:
    ID: str
    TITLE: str


def adds(count: int) -> list[Any]:
    return [("crm.deal.add", {"fields": {"TITLE": f"D{n}"}}) for n in range(count)]


def cmd_keys(raw: bytes) -> list[str]:
    return sorted(
        (key[4:-1] for key in parse_qs(raw.decode("ascii")) if key.startswith("cmd[")), key=int
    )


def test_many_commands_go_in_chunks_under_global_keys(portal: FakePortal, client: B24Hook) -> None:
    """120 adds: chunks of 50, 50, 20, each command sent under its global position."""
    result = BatchByChunkV2(client).make(adds(120))
    assert result.is_success
    assert result.data == list(range(1, 121))
    assert [chunk.positions for chunk in result.chunks] == [
        range(0, 50),
        range(50, 100),
        range(100, 120),
    ]
    assert cmd_keys(portal.requests[1].raw) == [str(n) for n in range(50, 100)]
    assert len(portal.deals) == 120


def test_a_reference_keeps_its_target_in_the_same_chunk(
    portal: FakePortal, client: B24Hook
) -> None:
    """A command referencing $result[2] never lands in a chunk without command 2."""
    calls = [*adds(3), ("crm.deal.get", {"id": "$result[2]"}), *adds(2)]
    result = BatchByChunkV2(client).make(calls, chunk_size=3)
    assert [chunk.positions for chunk in result.chunks] == [range(0, 2), range(2, 5), range(5, 6)]
    assert result.data[3]["TITLE"] == "D2"


def test_named_references_across_the_input(portal: FakePortal, client: B24Hook) -> None:
    """Named calls: references by name, data by name, every chunk merged."""
    calls = {}
    for n in range(30):
        calls[f"add{n}"] = ("crm.deal.add", {"fields": {"TITLE": f"D{n}"}})
        calls[f"get{n}"] = ("crm.deal.get", {"id": f"$result[add{n}]"})
    result = BatchByChunkV2(client).make(calls, chunk_size=10)
    assert len(result.chunks) == 6
    assert result.data["get29"]["TITLE"] == "D29"
    assert list(result.data) == list(calls)


def test_a_reference_too_far_back_is_refused(portal: FakePortal, client: B24Hook) -> None:
    """A reference to a command in an already planned chunk fails before anything is sent."""
    calls = [*adds(10), ("crm.deal.get", {"id": "$result[0]"})]
    with pytest.raises(SdkError, match="more than chunk_size=3 commands back"):
        BatchByChunkV2(client).make(calls, chunk_size=3)
    assert portal.requests == []


def test_a_reference_to_nothing_is_refused(portal: FakePortal, client: B24Hook) -> None:
    """A reference naming no earlier command is refused with the row."""
    with pytest.raises(SdkError, match=r"calls\[0\] references \$result\[nope\]"):
        BatchByChunkV2(client).make([("crm.deal.get", {"id": "$result[nope]"})])


def test_halt_stops_the_call_at_the_first_failed_command(
    portal: FakePortal, client: B24Hook
) -> None:
    """A failure at position 4 (chunk 1): its error, and 5 to 8 not executed, in order."""
    calls = adds(9)
    calls[4] = ("crm.deal.get", {"id": 999})
    result = BatchByChunkV2(client).make(calls, chunk_size=3)
    assert [(error.chunk, error.keys) for error in result.errors] == [(1, (4,))]
    assert result.not_executed == (5, 6, 7, 8)
    assert result.data == [1, 2, 3, 4, None, None]
    assert len(portal.requests) == 2
    assert result.maybe_executed == ()


def test_without_halt_every_failed_command_is_one_error(
    portal: FakePortal, client: B24Hook
) -> None:
    """halt_on_error=False: one ChunkError per failed command, by global key."""
    calls = adds(9)
    calls[1] = calls[7] = ("crm.deal.get", {"id": 999})
    result = BatchByChunkV2(client).make(calls, chunk_size=3, halt_on_error=False)
    assert [(error.chunk, error.keys) for error in result.errors] == [(0, (1,)), (2, (7,))]
    assert result.not_executed == ()
    assert [n for n, value in enumerate(result.data) if value is None] == [1, 7]


def test_iter_is_lazy_and_in_order(portal: FakePortal, client: B24Hook) -> None:
    """iter() yields chunk results as they come, reading rows as it goes."""
    read: list[int] = []

    def rows() -> Any:
        for n in range(7):
            read.append(n)
            yield ("crm.deal.add", {"fields": {"TITLE": f"D{n}"}})

    chunks = BatchByChunkV2(client).iter(rows(), chunk_size=3)
    first = next(chunks)
    assert first.data == [1, 2, 3]
    assert len(read) == 6  # two chunks ahead at most
    assert [chunk.data for chunk in chunks] == [[4, 5, 6], [7]]


def test_a_raised_error_keeps_the_chunks_before_it(portal: FakePortal, client: B24Hook) -> None:
    """A chunk that raises names its writes, and partial lists the chunks never sent."""
    portal.inject(Fault.drop_after())
    with pytest.raises(TransportError) as info:
        BatchByChunkV2(client).make(adds(4), chunk_size=2)
    assert info.value.maybe_executed == (0, 1)
    assert info.value.partial is not None
    assert info.value.partial.not_executed == (2, 3)


def test_options_are_checked(portal: FakePortal, client: B24Hook) -> None:
    """chunk_size out of range is refused before any request."""
    with pytest.raises(SdkError, match="chunk_size=51: a batch takes 1 to 50 commands"):
        BatchByChunkV2(client).make(adds(2), chunk_size=51)
    assert portal.requests == []


def test_make_honours_request_id_and_result_type(portal: FakePortal, client: B24Hook) -> None:
    """make(): chunk k is sent as request_id.k, and every chunk's results are typed."""
    ids = [portal.add_deal(TITLE=f"D{n}") for n in range(3)]
    calls = [("crm.deal.get", {"id": deal}) for deal in ids]
    result = BatchByChunkV2(client).make(calls, chunk_size=2, request_id="job", result_type=Deal)
    assert result.data == [Deal(ID=str(deal), TITLE=f"D{n}") for n, deal in enumerate(ids)]
    assert [chunk.request_id for chunk in result.chunks] == ["job.0", "job.1"]
    assert [r.query["bx24_request_id"] for r in portal.requests] == ["job.0", "job.1"]


def test_iter_over_named_calls_honours_every_option(portal: FakePortal, client: B24Hook) -> None:
    """iter() over named calls: typed dicts by name, sent under the names, request_id.k."""
    ids = [portal.add_deal(TITLE=f"D{n}") for n in range(3)]
    calls = {f"d{n}": ("crm.deal.get", {"id": deal}) for n, deal in enumerate(ids)}
    chunks = list(
        BatchByChunkV2(client).iter(calls, chunk_size=2, request_id="job", result_type=Deal)
    )
    assert [chunk.data for chunk in chunks] == [
        {"d0": Deal(ID=str(ids[0]), TITLE="D0"), "d1": Deal(ID=str(ids[1]), TITLE="D1")},
        {"d2": Deal(ID=str(ids[2]), TITLE="D2")},
    ]
    assert [chunk.request_id for chunk in chunks] == ["job.0", "job.1"]
    assert [r.query["bx24_request_id"] for r in portal.requests] == ["job.0", "job.1"]
    assert "cmd[d2]" in parse_qs(portal.requests[1].raw.decode("ascii"))


def test_iter_halts_by_default_after_the_chunk_with_a_failed_command(
    portal: FakePortal, client: B24Hook
) -> None:
    """iter() with the default halt_on_error yields the failed chunk and sends nothing after."""
    calls = adds(9)
    calls[4] = ("crm.deal.get", {"id": 999})
    chunks = list(BatchByChunkV2(client).iter(calls, chunk_size=3))
    assert [chunk.positions for chunk in chunks] == [range(0, 3), range(3, 6)]
    assert list(chunks[1].errors_by_key) == [4]
    assert chunks[1].not_executed == (5,)
    assert len(portal.requests) == 2


@pytest.mark.parametrize("how", ["make", "iter"])
def test_progress_callback_gets_done_and_total(
    portal: FakePortal, client: B24Hook, how: str
) -> None:
    """The callback gets (done, total) after every chunk; a list gives iter() its total."""
    seen: list[tuple[int, int | None]] = []
    chunker = BatchByChunkV2(client)
    options: dict[str, Any] = {"chunk_size": 3, "progress": lambda d, t: seen.append((d, t))}
    if how == "make":
        chunker.make(adds(7), **options)
    else:
        list(chunker.iter(adds(7), **options))
    assert seen == [(3, 7), (6, 7), (7, 7)]


@pytest.mark.parametrize("how", ["make", "iter"])
def test_max_in_flight_is_checked(portal: FakePortal, client: B24Hook, how: str) -> None:
    """max_in_flight out of range is refused, with the range, before any request."""
    call = getattr(BatchByChunkV2(client), how)  # iter() checks its options before it yields
    with pytest.raises(SdkError) as info:
        call(adds(2), max_in_flight=17)
    assert str(info.value) == "max_in_flight=17: pass 1 to 16 (1 sends one batch at a time)"
    assert portal.requests == []


def test_commands_keyed_by_record_id_in_chunks(portal: FakePortal, client: B24Hook) -> None:
    """Calls keyed by deal id (int) go in chunks as cmd[ID]; data, errors keep the int keys."""
    ids = [portal.add_deal(TITLE=f"D{n}") for n in range(5)]
    calls: dict[Any, Any] = {deal: ("crm.deal.get", {"id": deal}) for deal in ids[:4]}
    calls[999] = ("crm.deal.get", {"id": 999})
    calls[ids[4]] = ("crm.deal.get", {"id": ids[4]})
    calls["1000"] = ("crm.deal.get", {"id": f"$result[{ids[4]}][ID]"})
    result = BatchByChunkV2(client).make(calls, chunk_size=2, halt_on_error=False)
    assert list(result.data) == [*ids, "1000"]
    assert [result.data[deal]["TITLE"] for deal in ids] == [f"D{n}" for n in range(5)]
    assert result.data["1000"]["ID"] == str(ids[4])
    assert [(error.keys, error.error.key) for error in result.errors] == [((999,), 999)]
    sent = sorted((key for r in portal.requests for key in cmd_keys(r.raw)), key=int)
    assert sent == [*map(str, ids), "999", "1000"]
