"""BatchByChunkV3 over real HTTP: chunking, order, halting, references, laziness, progress."""

from __future__ import annotations

import logging
import re
import sys
import tracemalloc
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

from b24batch import (
    AjaxError,
    AuthError,
    B24Hook,
    B24OAuth,
    BatchByChunkV3,
    BatchV3,
    ChunkedResult,
    Command,
    DecodeError,
    RateLimit,
    SdkError,
    SdkTypeError,
    ref,
    ref_array,
)
from b24batch._engine.call_options import CallOptions
from b24batch._engine.plan import plan
from b24batch._protocols.v3 import V3
from b24batch.testing import FakePortal, Fault


@pytest.fixture
def echo(portal: FakePortal) -> FakePortal:
    """The portal with ``test.echo`` (answers its ``n``) and ``test.fail`` (fails the batch)."""

    def fail(query: dict[str, Any]) -> Any:
        raise FakePortal.CommandError("boom", code="TEST_FAILURE", status=400)

    portal.register("test.echo", lambda query: {"item": {"n": query["n"]}})
    portal.register("test.fail", fail)
    return portal


def _list_calls(count: int) -> list[tuple[str, dict[str, int]]]:
    return [("test.echo", {"n": n}) for n in range(count)]


def _named_calls(count: int) -> dict[str, tuple[str, dict[str, int]]]:
    return {f"c{n}": ("test.echo", {"n": n}) for n in range(count)}


@pytest.mark.parametrize("count", [1, 50, 51, 120, 1000])
def test_list_calls_keep_order_across_chunks(echo: FakePortal, client: B24Hook, count: int) -> None:
    """Any number of list calls: results in call order, chunks of 50 covering every position."""
    result = BatchByChunkV3(client).make(_list_calls(count))
    assert result.is_success
    assert result.data == [{"item": {"n": n}} for n in range(count)]
    assert [chunk.positions for chunk in result.chunks] == [
        range(start, min(start + 50, count)) for start in range(0, count, 50)
    ]
    assert len(echo.requests) == -(-count // 50)
    assert all(len(request.body) <= 50 for request in echo.requests)


@pytest.mark.parametrize("count", [1, 50, 51, 120, 1000])
def test_named_calls_keep_their_names(echo: FakePortal, client: B24Hook, count: int) -> None:
    """Any number of named calls: a dict keyed by the caller's names, in input order."""
    result = BatchByChunkV3(client).make(_named_calls(count))
    assert result.is_success
    assert isinstance(result.data, dict)
    assert list(result.data) == [f"c{n}" for n in range(count)]
    assert result.data[f"c{count - 1}"] == {"item": {"n": count - 1}}
    assert [row["as"] for row in echo.requests[-1].body][-1] == f"c{count - 1}"


@pytest.mark.parametrize("calls", [[], {}, iter(())], ids=["list", "dict", "iterator"])
def test_zero_commands_are_refused(echo: FakePortal, client: B24Hook, calls: Any) -> None:
    """No commands raise SdkError, never an empty success; nothing is sent."""
    with pytest.raises(SdkError, match=r"^calls is empty: pass at least one command$"):
        BatchByChunkV3(client).make(calls)
    with pytest.raises(SdkError, match=r"^calls is empty: pass at least one command$"):
        list(BatchByChunkV3(client).iter([]))
    assert echo.requests == []


def test_a_duplicate_alias_in_a_chunked_call_names_both_rows(
    echo: FakePortal, client: B24Hook
) -> None:
    """The planner checks aliases as it reads the rows: the message names the row and the one
    it repeats, and nothing is sent."""
    calls = [*_list_calls(60), Command("test.echo", {"n": 0}, as_="x")]
    calls[3] = Command("test.echo", {"n": 3}, as_="x")
    with pytest.raises(SdkError) as info:
        BatchByChunkV3(client).make(calls)
    assert str(info.value) == (
        "calls[60] uses the alias 'x', as calls[3] does; each 'as' must be unique in a batch"
    )
    assert echo.requests == []


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"chunk_size": 0}, SdkError, "chunk_size=0: a batch takes 1 to 50 commands"),
        ({"chunk_size": 51}, SdkError, "chunk_size=51: a batch takes 1 to 50 commands"),
        ({"chunk_size": 2.0}, SdkTypeError, "chunk_size=2.0: pass a whole number from 1 to 50"),
        ({"halt_on_error": "no"}, SdkTypeError, "halt_on_error='no': pass True or False"),
        ({"isolate_errors": "yes"}, SdkTypeError, "isolate_errors='yes': pass True or False"),
        (
            {"progress": "yes"},
            SdkTypeError,
            "progress='yes': pass True, a callable (done, total), or None",
        ),
        (
            {"request_id": "x" * 250},
            SdkError,
            "request_id is 250 characters; chunked calls append '.<chunk>', so keep it to 245",
        ),
    ],
)
@pytest.mark.parametrize("how", ["make", "iter"])
def test_bad_options_fail_before_sending(
    echo: FakePortal,
    client: B24Hook,
    options: dict[str, Any],
    error: type[Exception],
    message: str,
    how: str,
) -> None:
    """Impossible options are refused before any request, naming the option and the fix."""
    call = getattr(BatchByChunkV3(client), how)  # iter() checks its options before it yields
    with pytest.raises(error) as info:
        call(_list_calls(3), **options)
    assert type(info.value) is error
    assert str(info.value) == message
    assert echo.requests == []


def test_a_progress_of_the_wrong_kind_says_what_to_pass(echo: FakePortal, client: B24Hook) -> None:
    """progress="yes" raises SdkTypeError with the whole fix, before anything is sent."""
    with pytest.raises(SdkTypeError) as info:
        BatchByChunkV3(client).make(_list_calls(3), progress="yes")  # type: ignore[arg-type]
    assert str(info.value) == "progress='yes': pass True, a callable (done, total), or None"
    assert echo.requests == []


def test_not_understood_input_is_refused(client: B24Hook) -> None:
    """A string or a number is not a list of calls."""
    with pytest.raises(SdkTypeError, match="calls is a str"):
        BatchByChunkV3(client).make("tasks.task.get")


def test_bad_row_anywhere_fails_before_the_first_request(echo: FakePortal, client: B24Hook) -> None:
    """make() checks every row and encodes every chunk before sending any."""
    calls: list[Any] = _list_calls(120)
    calls[110] = ("test.echo", {"n": float("nan")})
    with pytest.raises(SdkError, match=r"calls\[110\] params\['n'\] is nan"):
        BatchByChunkV3(client).make(calls)
    assert echo.requests == []


def _failing_middle(count: int = 120, bad: int = 70) -> list[Any]:
    calls: list[Any] = _list_calls(count)
    calls[bad] = ("test.fail",)
    return calls


def test_halt_stops_after_the_failed_chunk(echo: FakePortal, client: B24Hook) -> None:
    """halt_on_error=True: the failed chunk's commands share its error; later ones are listed."""
    result = BatchByChunkV3(client).make(_failing_middle(), halt_on_error=True)
    assert not result.is_success
    assert result.data == [{"item": {"n": n}} for n in range(50)]
    (error,) = result.errors
    assert error.chunk == 1
    assert error.keys == tuple(range(50, 100))
    assert isinstance(error.error, AjaxError)
    assert error.error.code == "TEST_FAILURE"
    assert result.not_executed == tuple(range(100, 120))
    assert len(result.chunks) == 2
    assert len(echo.requests) == 2
    assert all(row["parallel"] is False for row in echo.requests[0].body)
    assert result.error_messages == [f"chunk 1 (commands 50 to 99): {error.error}"]


def test_no_halt_sends_every_chunk_and_collects_errors(echo: FakePortal, client: B24Hook) -> None:
    """halt_on_error=False: every chunk goes; each error names its own chunk's commands."""
    calls = _failing_middle(bad=70)
    calls[110] = ("test.fail",)
    result = BatchByChunkV3(client).make(calls, halt_on_error=False)
    assert [(e.chunk, e.keys[0], e.keys[-1]) for e in result.errors] == [(1, 50, 99), (2, 100, 119)]
    assert result.data == [{"item": {"n": n}} for n in range(50)]
    assert result.not_executed == ()
    assert len(result.chunks) == 3
    assert all(row["parallel"] is True for row in echo.requests[0].body)


def test_named_errors_name_the_commands(echo: FakePortal, client: B24Hook) -> None:
    """In named calls the error and not_executed carry names."""
    calls: dict[str, Any] = _named_calls(120)
    calls["c60"] = ("test.fail",)
    result = BatchByChunkV3(client).make(calls)
    assert result.errors[0].keys[0] == "c50"
    assert result.not_executed[0] == "c100"
    assert "c0" in result.data
    assert "c50" not in result.data


def test_raise_for_errors_raises_the_chunk_error(echo: FakePortal, client: B24Hook) -> None:
    """raise_for_errors raises the first chunk's error with this result as partial."""
    result = BatchByChunkV3(client).make(_failing_middle(), halt_on_error=False)
    with pytest.raises(AjaxError) as info:
        result.raise_for_errors()
    assert info.value.partial is result
    ok = BatchByChunkV3(client).make(_list_calls(3))
    assert ok.raise_for_errors() is ok


def test_raised_error_keeps_earlier_chunks_in_partial(echo: FakePortal, client: B24Hook) -> None:
    """A chunk that raises (OVERLOAD) carries the chunks before it: nothing fetched is lost."""
    echo.inject(Fault.delay(0))  # the first request goes through untouched
    echo.inject(Fault.overload())
    with pytest.raises(AjaxError, match="OVERLOAD_LIMIT") as info:
        BatchByChunkV3(client).make(_list_calls(120))
    partial = info.value.partial
    assert isinstance(partial, ChunkedResult)
    assert partial.data == [{"item": {"n": n}} for n in range(50)]
    assert len(partial.chunks) == 1
    assert partial.errors[0].keys == tuple(range(50, 100))
    assert partial.errors[0].chunk == 1
    assert partial.errors[0].error is info.value
    assert partial.not_executed == tuple(range(100, 120))


def test_request_ids_and_keys_get_chunk_suffixes(echo: FakePortal, client: B24Hook) -> None:
    """Chunk k is sent as request_id.k, with Idempotency-Key key.k."""
    result = BatchByChunkV3(client).make(_list_calls(60), request_id="job", idempotency_key="kk")
    assert [chunk.request_id for chunk in result.chunks] == ["job.0", "job.1"]
    assert [r.headers["Idempotency-Key"] for r in echo.requests] == ["kk.0", "kk.1"]


def test_actions_path(echo: FakePortal, client: B24Hook) -> None:
    """client.actions.v3.batch_by_chunk.make is BatchByChunkV3.make."""
    result = client.actions.v3.batch_by_chunk.make(_list_calls(51), chunk_size=10)
    assert len(result.chunks) == 6
    assert result.data[-1] == {"item": {"n": 50}}


# -- references --------------------------------------------------------------------------------


def test_ref_builders_validate_paths() -> None:
    """ref and ref_array build markers and refuse paths that are not dotted."""
    assert ref("t.item.id") == {"$ref": "t.item.id"}
    assert ref_array("tasks.id") == {"$refArray": "tasks.id"}
    for bad in ("", "alias", "a..b", ".a", "a."):
        with pytest.raises(SdkError, match="dot-separated"):
            ref(bad)
        with pytest.raises(SdkError, match="dot-separated"):
            ref_array(bad)
    with pytest.raises(SdkTypeError):
        ref(5)  # type: ignore[arg-type]


def _with_group(count: int, alias_at: int, ref_at: int) -> list[Any]:
    calls: list[Any] = _list_calls(count)
    calls[alias_at] = Command("tasks.task.add", {"fields": {"title": "Grouped"}}, as_="made")
    calls[ref_at] = Command(
        "tasks.task.get", {"id": ref("made.item.id"), "select": ["id", "title"]}
    )
    return calls


def test_reference_groups_move_the_boundary(echo: FakePortal, client: B24Hook) -> None:
    """A command and the alias it references stay in one batch: the chunk ends early."""
    result = BatchByChunkV3(client).make(_with_group(120, alias_at=48, ref_at=52))
    assert result.is_success
    assert [chunk.positions for chunk in result.chunks] == [
        range(0, 48),
        range(48, 98),
        range(98, 120),
    ]
    assert result.data[52] == {"item": {"id": 1, "title": "Grouped"}}


def test_ref_array_group(echo: FakePortal, client: B24Hook) -> None:
    """$refArray groups are kept together too."""
    echo.add_task(title="A")
    echo.add_task(title="B")
    calls: list[Any] = _list_calls(49)
    calls.append(Command("tasks.task.list", {"select": ["id"]}, as_="all"))
    calls.append(("tasks.task.list", {"filter": [["id", "in", ref_array("all.id")]]}))
    result = BatchByChunkV3(client).make(calls)
    assert [c.positions for c in result.chunks] == [range(0, 49), range(49, 51)]
    assert result.data[-1] == {"items": [{"id": 1}, {"id": 2}]}


@pytest.mark.parametrize(
    ("calls", "fragment"),
    [
        pytest.param(
            _with_group(20, alias_at=0, ref_at=6), "chain longer than chunk_size=5", id="too-long"
        ),
        pytest.param(
            [
                ("test.echo", {"n": ref("later.item.n")}),
                Command("test.echo", {"n": 1}, as_="later"),
            ],
            "no earlier command has the alias 'later'",
            id="defined-later",
        ),
        pytest.param(
            [("test.echo", {"n": ref("ghost.item.n")})],
            "no earlier command has the alias 'ghost'",
            id="nowhere",
        ),
        pytest.param(
            [("test.echo", {"n": 1}), ("test.echo", {"n": ref("0.item.n")})],
            "by position",
            id="positional",
        ),
    ],
)
def test_impossible_references_fail_before_any_request(
    echo: FakePortal, client: B24Hook, calls: list[Any], fragment: str
) -> None:
    """References that cannot share a batch with their alias are refused up front."""
    with pytest.raises(SdkError, match=fragment):
        BatchByChunkV3(client).make(calls, chunk_size=5)
    assert echo.requests == []


def test_batchv3_checks_references_too(echo: FakePortal, client: B24Hook) -> None:
    """A plain batch refuses unknown aliases and forward positions, but allows back positions."""
    with pytest.raises(SdkError, match="no earlier command has the alias 'x'"):
        BatchV3(client).make([("test.echo", {"n": ref("x.item.n")})])
    with pytest.raises(SdkError, match="does not run before it"):
        BatchV3(client).make([("test.echo", {"n": {"$ref": "0.item.n"}})])
    assert echo.requests == []
    result = BatchV3(client).make([("test.echo", {"n": 7}), ("test.echo", {"n": ref("0.item.n")})])
    assert result.data == [{"item": {"n": 7}}, {"item": {"n": 7}}]


# -- streaming -------------------------------------------------------------------------------


def test_iter_reads_a_generator_lazily(echo: FakePortal, client: B24Hook) -> None:
    """iter() yields chunk by chunk and never reads more than two chunks ahead of what it sent."""
    pulled: list[int] = []

    def rows() -> Iterator[tuple[str, dict[str, int]]]:
        for n in range(230):
            pulled.append(n)
            yield ("test.echo", {"n": n})

    chunks = BatchByChunkV3(client).iter(rows())
    assert pulled == []  # nothing is read before iteration starts
    seen = []
    for chunk in chunks:
        sent = chunk.positions.stop
        assert len(pulled) - sent <= 2 * 50
        seen.extend(item["item"]["n"] for item in chunk.data)
    assert seen == list(range(230))
    assert len(echo.requests) == 5


def test_iter_halts_after_a_failed_chunk(echo: FakePortal, client: B24Hook) -> None:
    """With halt_on_error, iteration ends after yielding the failed chunk."""
    results = list(BatchByChunkV3(client).iter(_failing_middle()))
    assert [r.is_success for r in results] == [True, False]
    results = list(BatchByChunkV3(client).iter(_failing_middle(), halt_on_error=False))
    assert [r.is_success for r in results] == [True, False, True]


def test_iter_bad_row_raises_when_reached(echo: FakePortal, client: B24Hook) -> None:
    """A bad row in a stream raises when its chunk is planned; earlier chunks were yielded."""
    calls: list[Any] = _list_calls(200)
    calls[180] = ("",)
    chunks = BatchByChunkV3(client).iter(iter(calls))
    assert [next(chunks).positions, next(chunks).positions] == [range(0, 50), range(50, 100)]
    with pytest.raises(SdkError, match=r"calls\[180\] has an empty method"):
        next(chunks)


def _planned_peak(count: int) -> int:
    options = CallOptions.checked(V3, chunk_size=50, halt_on_error=True, request_id="r")
    rows = ((n, ("test.echo", {"n": n})) for n in range(count))
    tracemalloc.start()
    try:
        for _ in plan(rows, named=False, options=options, protocol=V3):
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_planning_memory_is_flat() -> None:
    """Planning 100 000 streamed commands peaks within 1 MB of planning 1 000."""
    small, large = _planned_peak(1_000), _planned_peak(100_000)
    assert large - small < 1_000_000, (small, large)


# -- progress --------------------------------------------------------------------------------


def test_progress_callback_gets_done_and_total(echo: FakePortal, client: B24Hook) -> None:
    """The callback is called after every chunk with (done, total)."""
    calls: list[tuple[int, int | None]] = []
    BatchByChunkV3(client).make(_list_calls(120), progress=lambda d, t: calls.append((d, t)))
    assert calls == [(50, 120), (100, 120), (120, 120)]
    calls.clear()
    list(
        BatchByChunkV3(client).iter(
            iter(_list_calls(60)), progress=lambda d, t: calls.append((d, t))
        )
    )
    assert calls == [(50, None), (60, None)]
    calls.clear()
    list(BatchByChunkV3(client).iter(_list_calls(60), progress=lambda d, t: calls.append((d, t))))
    assert calls == [(50, 60), (60, 60)]  # a list has a length: iter() reports the total


def test_progress_true_uses_tqdm(
    echo: FakePortal, client: B24Hook, capsys: pytest.CaptureFixture[str]
) -> None:
    """progress=True draws a tqdm bar when tqdm is installed."""
    pytest.importorskip("tqdm")
    BatchByChunkV3(client).make(_list_calls(60), progress=True)
    assert "60/60" in capsys.readouterr().err


def test_progress_true_without_tqdm_says_how_once(
    echo: FakePortal,
    client: B24Hook,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without tqdm it runs without a bar and says once how to get one."""
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    monkeypatch.setattr("b24batch.progress._tqdm_hint_given", False)
    caplog.set_level(logging.WARNING, logger="b24batch")
    for _ in range(2):
        assert BatchByChunkV3(client).make(_list_calls(3), progress=True).is_success
    hints = [r.getMessage() for r in caplog.records if "b24batch[progress]" in r.getMessage()]
    assert hints == [
        "progress=True needs tqdm: pip install 'b24batch[progress]' "
        "(running without a progress bar)"
    ]


def test_js_style_object_is_refused_by_the_chunker_too(echo: FakePortal, client: B24Hook) -> None:
    """{calls, options} is not a dict of named commands, chunked or not."""
    with pytest.raises(SdkTypeError, match="JS SDK"):
        BatchByChunkV3(client).make({"calls": _list_calls(3), "options": {}})


def test_failing_progress_callback_keeps_what_was_fetched(
    echo: FakePortal, client: B24Hook
) -> None:
    """An exception from the caller's callback still carries the chunks already fetched."""

    def progress(done: int, total: int | None) -> None:
        if done > 50:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as info:
        BatchByChunkV3(client).make(_list_calls(120), progress=progress)
    partial = info.value.partial  # type: ignore[attr-defined]
    assert isinstance(partial, ChunkedResult)
    assert len(partial.data) == 100
    assert partial.not_executed == tuple(range(100, 120))


class _CountingKeys(tuple[Any, ...]):
    """A chunk's keys that count how often anything walks them."""

    walks = 0

    def __iter__(self) -> Iterator[Any]:
        type(self).walks += 1
        return super().__iter__()


def test_make_walks_each_chunks_keys_a_bounded_number_of_times(
    echo: FakePortal, client: B24Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    """make() touches each chunk's keys a few times, not once per earlier chunk (quadratic)."""
    import b24batch._engine.plan as planning

    real = planning.Commands

    def counting(**fields: Any) -> Any:
        return real(**{**fields, "keys": _CountingKeys(fields["keys"])})

    monkeypatch.setattr(planning, "Commands", counting)
    _CountingKeys.walks = 0
    count = 300
    result = BatchByChunkV3(client).make(_list_calls(count), chunk_size=1)
    assert result.data == [{"item": {"n": n}} for n in range(count)]
    assert len(echo.requests) == count
    # Gathering not_executed for every chunk walked all later chunks: 300 * 299 / 2 = 44 850.
    assert _CountingKeys.walks <= 10 * count


def test_not_executed_after_a_halt_lists_every_later_chunk_once(
    echo: FakePortal, client: B24Hook
) -> None:
    """A halt in chunk 2 of 6 (chunk_size=10) lists commands 30 to 59 as not executed, in order."""
    calls: list[Any] = _list_calls(60)
    calls[25] = ("test.fail",)
    result = BatchByChunkV3(client).make(calls, chunk_size=10)
    assert result.not_executed == tuple(range(30, 60))
    assert [error.keys for error in result.errors] == [tuple(range(20, 30))]
    assert len(echo.requests) == 3


def _deep(depth: int) -> dict[str, Any]:
    params: dict[str, Any] = {}
    inner = params
    for _ in range(depth):
        inner["a"] = {}
        inner = inner["a"]
    return params


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        pytest.param(_deep(5000), "params['a']['a']", id="5000-deep"),
        pytest.param({"filter": {1: "x", "1": "y"}}, "params['filter'] has the keys 1", id="keys"),
    ],
)
def test_deep_or_colliding_params_send_nothing(
    echo: FakePortal, client: B24Hook, params: dict[str, Any], fragment: str
) -> None:
    """BatchV3 and the chunker refuse them with an SdkError before the first request."""
    calls: list[Any] = [*_list_calls(60), ("test.echo", params)]
    with pytest.raises(SdkError, match=re.escape(f"calls[60] {fragment}")):
        BatchByChunkV3(client).make(calls)
    with pytest.raises(SdkError, match=re.escape(f"calls[1] {fragment}")):
        BatchV3(client).make([("test.echo", {"n": 0}), ("test.echo", params)])
    assert echo.requests == []


# -- gaps a mutant showed (issue 12) -------------------------------------------------------------


@attrs.frozen
class Echoed:
    n: int


@attrs.frozen
class EchoedItem:
    item: Echoed


def test_make_structures_every_chunk_into_result_type(echo: FakePortal, client: B24Hook) -> None:
    """make(result_type=T) gives T objects in every chunk, not plain dicts."""
    result = BatchByChunkV3(client).make(_list_calls(60), result_type=EchoedItem)
    assert result.data == [EchoedItem(Echoed(n)) for n in range(60)]
    assert [chunk.data for chunk in result.chunks] == [
        [EchoedItem(Echoed(n)) for n in range(50)],
        [EchoedItem(Echoed(n)) for n in range(50, 60)],
    ]


def test_iter_over_named_calls_honours_every_option(echo: FakePortal, client: B24Hook) -> None:
    """iter() over named calls: typed dicts by name, request_id.k and key.k per chunk."""
    chunks = list(
        BatchByChunkV3(client).iter(
            _named_calls(60), request_id="job", idempotency_key="kk", result_type=EchoedItem
        )
    )
    assert [chunk.data for chunk in chunks] == [
        {f"c{n}": EchoedItem(Echoed(n)) for n in range(50)},
        {f"c{n}": EchoedItem(Echoed(n)) for n in range(50, 60)},
    ]
    assert [chunk.request_id for chunk in chunks] == ["job.0", "job.1"]
    assert [r.query["bx24_request_id"] for r in echo.requests] == ["job.0", "job.1"]
    assert [r.headers["Idempotency-Key"] for r in echo.requests] == ["kk.0", "kk.1"]
    assert [row["as"] for row in echo.requests[1].body] == [f"c{n}" for n in range(50, 60)]


def _unusable_type() -> type:
    @attrs.frozen
    class Wrapper:
        item: _Unresolvable  # noqa: F821  # never defined: cattrs cannot resolve it

    return Wrapper


@pytest.mark.parametrize("how", ["make", "iter"])
def test_unusable_result_type_fails_before_any_chunk_is_sent(
    echo: FakePortal, client: B24Hook, how: str
) -> None:
    """A result_type cattrs cannot resolve raises SdkTypeError before the first chunk."""
    chunker = BatchByChunkV3(client)

    def run() -> object:
        if how == "make":
            return chunker.make(_list_calls(60), result_type=_unusable_type())
        return next(chunker.iter(_list_calls(60), result_type=_unusable_type()))

    with pytest.raises(SdkTypeError) as info:
        run()
    assert str(info.value).startswith("result_type=")
    assert "Wrapper cannot be used: cattrs cannot structure it (" in str(info.value)
    assert str(info.value).endswith(
        "); pass an attrs class, dataclass or typing type whose annotations resolve at module level"
    )
    assert echo.requests == []


@pytest.mark.parametrize("how", ["make", "iter"])
def test_every_chunk_gets_its_own_number(echo: FakePortal, client: B24Hook, how: str) -> None:
    """Six chunks (four cut while reading, two at the end) are numbered 0 to 5, none repeated."""
    chunker = BatchByChunkV3(client)
    options: dict[str, Any] = {"chunk_size": 2, "request_id": "job", "idempotency_key": "kk"}
    if how == "make":
        chunks = list(chunker.make(_list_calls(11), **options).chunks)
    else:
        chunks = list(chunker.iter(iter(_list_calls(11)), **options))
    numbers = [f"job.{k}" for k in range(6)]
    assert [chunk.request_id for chunk in chunks] == numbers
    assert [r.query["bx24_request_id"] for r in echo.requests] == numbers
    assert [r.headers["Idempotency-Key"] for r in echo.requests] == [f"kk.{k}" for k in range(6)]
    assert [chunk.positions for chunk in chunks] == [
        range(0, 2), range(2, 4), range(4, 6), range(6, 8), range(8, 10), range(10, 11)
    ]  # fmt: skip


def test_reference_beyond_the_first_cut_is_kept_together(echo: FakePortal, client: B24Hook) -> None:
    """A ref() 120 rows in (past 2 x chunk_size) is planned and answered like the first ones."""
    result = BatchByChunkV3(client).make(_with_group(150, alias_at=120, ref_at=121))
    assert [chunk.positions for chunk in result.chunks] == [
        range(0, 50),
        range(50, 100),
        range(100, 150),
    ]
    assert result.data[121] == {"item": {"id": 1, "title": "Grouped"}}
    streamed = [c.data for c in BatchByChunkV3(client).iter(_with_group(150, 140, 141))]
    assert streamed[2][41] == {"item": {"id": 2, "title": "Grouped"}}


def test_reference_into_an_already_planned_chunk_is_refused(
    echo: FakePortal, client: B24Hook
) -> None:
    """A ref() to an alias more than chunk_size rows back, in a planned chunk, is an SdkError."""
    with pytest.raises(SdkError) as info:
        BatchByChunkV3(client).make(_with_group(20, alias_at=0, ref_at=12), chunk_size=5)
    assert str(info.value) == (
        "calls[12] references 'made.item.id', defined by a command more than chunk_size=5 "
        "commands back, in a batch already planned; a command must share a batch with the "
        "command it references"
    )
    assert echo.requests == []


@pytest.mark.parametrize("name", ["request_id", "idempotency_key"])
def test_chunked_ids_leave_room_for_the_chunk_suffix(
    echo: FakePortal, client: B24Hook, name: str
) -> None:
    """A base request_id or idempotency_key of 245 characters is sent; 246 is refused."""
    result = BatchByChunkV3(client).make(_list_calls(3), **{name: "x" * 245})
    assert result.is_success
    with pytest.raises(SdkError) as info:
        BatchByChunkV3(client).make(_list_calls(3), **{name: "x" * 246})
    assert str(info.value) == (
        f"{name} is 246 characters; chunked calls append '.<chunk>', so keep it to 245"
    )
    assert len(echo.requests) == 1


def test_a_chunk_that_does_not_fit_result_type_keeps_its_positions(
    echo: FakePortal, client: B24Hook
) -> None:
    """A type mismatch in chunk 1: error.result is that chunk's untyped result, positions kept."""
    echo.register("test.odd", lambda query: {"item": {"n": "not a number"}})
    calls: list[Any] = _list_calls(60)
    calls[55] = ("test.odd", {})
    with pytest.raises(DecodeError) as info:
        BatchByChunkV3(client).make(calls, result_type=EchoedItem)
    kept = info.value.result
    assert kept is not None
    assert (kept.positions, kept.request_id.endswith(".1")) == (range(50, 60), True)
    assert kept.data[5] == {"item": {"n": "not a number"}}
    assert info.value.partial is not None
    assert len(info.value.partial.chunks) == 1


def test_a_failing_on_token_keeps_the_chunks_fetched(echo: FakePortal) -> None:
    """An on_token callback that raises in chunk 1: an AuthError (its exception as
    refresh_error) that carries chunk 0's results on .partial."""

    def refuse(token: str) -> None:
        raise RuntimeError("cannot store the token")

    def expire_after_the_first(done: int, total: int | None) -> None:
        if done == 50:
            echo.expire_token()

    with (
        B24OAuth(
            echo.oauth_endpoint,
            echo.access_token,
            refresh=echo.refresh_token,
            on_token=refuse,
            rate_limit=None,
        ) as oauth,
        pytest.raises(AuthError, match="on_token failed with RuntimeError") as info,
    ):
        BatchByChunkV3(oauth).make(_list_calls(60), progress=expire_after_the_first)
    assert isinstance(info.value.refresh_error, RuntimeError)
    partial = info.value.partial
    assert isinstance(partial, ChunkedResult)
    assert partial.data == [{"item": {"n": n}} for n in range(50)]
    assert [chunk.positions for chunk in partial.chunks] == [range(0, 50)]


# -- what lands after iter() raises --------------------------------------------------------


def _odd_calls(named: bool) -> Any:
    """Six echo calls, the second of which does not fit ``EchoedItem`` (its chunk raises)."""
    calls: list[Any] = _list_calls(6)
    calls[1] = ("test.odd", {})
    return {f"c{n}": call for n, call in enumerate(calls)} if named else calls


@pytest.mark.parametrize("named", [False, True], ids=["list", "named"])
def test_iter_error_carries_the_chunks_in_flight_with_it(
    echo: FakePortal, client: B24Hook, named: bool
) -> None:
    """Chunk 0 raises with chunks 1 and 2 in flight: they land on error.partial, merged."""
    echo.register("test.odd", lambda query: {"item": {"n": "not a number"}})
    chunks = BatchByChunkV3(client).iter(
        _odd_calls(named), chunk_size=2, max_in_flight=3, result_type=EchoedItem
    )
    with pytest.raises(DecodeError) as info:
        next(chunks)
    partial = info.value.partial
    assert partial is not None
    typed = {n: EchoedItem(Echoed(n)) for n in range(2, 6)}
    expected = {f"c{n}": item for n, item in typed.items()} if named else list(typed.values())
    assert partial.data == expected
    assert [chunk.positions for chunk in partial.chunks] == [range(2, 4), range(4, 6)]
    assert len(echo.requests) == 3


@pytest.mark.parametrize("named", [False, True], ids=["list", "named"])
def test_iter_error_with_nothing_in_flight_has_an_empty_partial(
    echo: FakePortal, client: B24Hook, named: bool
) -> None:
    """One batch at a time: error.partial holds no chunk, and data of the call's kind."""
    echo.register("test.odd", lambda query: {"item": {"n": "not a number"}})
    chunks = BatchByChunkV3(client).iter(
        _odd_calls(named), chunk_size=2, max_in_flight=1, result_type=EchoedItem
    )
    with pytest.raises(DecodeError) as info:
        next(chunks)
    partial = info.value.partial
    assert partial is not None
    assert (partial.data, partial.chunks) == (({} if named else []), ())
    assert len(echo.requests) == 1


class _Sealed(Exception):
    """An exception that cannot take a ``partial`` attribute: it has its own, read-only."""

    @property
    def partial(self) -> str:
        return "its own"


def test_an_exception_that_cannot_hold_partial_is_raised_unchanged(
    echo: FakePortal, client: B24Hook
) -> None:
    """A callback's exception with a read-only partial is re-raised as it is, not a TypeError."""

    def progress(done: int, total: int | None) -> None:
        raise _Sealed

    with pytest.raises(_Sealed) as info:
        BatchByChunkV3(client).make(_list_calls(60), progress=progress)
    assert info.value.partial == "its own"


# -- the window's size under "auto" -------------------------------------------------------


def _reads(methods: list[str]) -> list[Command]:
    return [Command(method, {"n": n}, read_only=True) for n, method in enumerate(methods)]


def test_auto_window_without_a_rate_limit_widens_after_a_slow_batch(
    echo: FakePortal, client: B24Hook
) -> None:
    """No client-side bucket: a batch slower than the default drain widens the window, and
    every chunk still lands, in order."""
    echo.inject(Fault.delay(0.5))  # 0.5 s at the default 2 requests/s: two batches in flight
    result = BatchByChunkV3(client).make(_reads(["test.echo"] * 4), chunk_size=1)
    assert result.data == [{"item": {"n": n}} for n in range(4)]
    assert [chunk.positions for chunk in result.chunks] == [range(n, n + 1) for n in range(4)]


def test_auto_window_spends_what_is_left_of_the_burst(echo: FakePortal) -> None:
    """An "auto" window opens with as many reads at once as the bucket lets out (8 of a burst
    of 10, headroom 2): a failure in the second chunk finds all 8 already on the wire, and
    nothing more is sent."""
    echo.inject(Fault.delay(0.5))  # chunk 0 is slow: the failure of chunk 1 is known first
    with B24Hook.from_webhook_url(
        echo.webhook_url, retry=None, rate_limit=RateLimit(burst=10)
    ) as hook:
        result = BatchByChunkV3(hook).make(
            _reads(["test.echo", "test.fail"] + ["test.echo"] * 10), chunk_size=1
        )
    assert len(echo.requests) == 8  # chunks 0 to 7 together
    assert [chunk.positions for chunk in result.chunks] == [range(n, n + 1) for n in range(8)]
    assert [error.chunk for error in result.errors] == [1]
    assert result.not_executed == (8, 9, 10, 11)
